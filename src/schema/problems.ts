/**
 * schema/ — building blocks of every schema and file reader: zod fields (sizes, names, numbers and
 * booleans as text), YAML files read with their positions, and problems located by file, line,
 * column and path. Neutral ground for config/ and the device profiles in sources/; imports only
 * model/.
 */
import { isMap, isSeq, type LineCounter, type Document as YamlDocument } from 'yaml';
import type { z } from 'zod';

/** One thing wrong with a configuration: where (file, line, path) and what. */
export interface ConfigProblem {
  file: string;
  path: (string | number)[];
  message: string;
  line?: number;
  column?: number;
  /** The environment variable the value came from, when it did. */
  env?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || '(top level)';
}

/** `config/gateway.yaml:12:5: api.port: expected …` */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line ? `${p.file}:${p.line}:${p.column ?? 1}` : p.file;
  const env = p.env ? ` (from ${p.env})` : '';
  return `${where}: ${formatPath(p.path)}${env}: ${p.message}`;
}

function describe(x: unknown): string {
  if (x === undefined) return 'nothing';
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'a mapping';
  if (typeof x === 'string') return JSON.stringify(x.length > 60 ? `${x.slice(0, 60)}…` : x);
  return `${typeof x} ${String(x)}`;
}

const TYPE_NAMES: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  int: 'an integer',
};

/** A message that says what was expected and what was found. */
export function issueMessage(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case 'invalid_type':
      if (input === undefined) return `required: expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, found ${describe(input)}`;
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, found ${describe(input)}`;
    case 'too_small':
      return `expected ${issue.origin === 'array' ? 'at least ' + issue.minimum + ' item(s)' : issue.origin === 'string' ? 'at least ' + issue.minimum + ' character(s)' : `a value ≥ ${issue.minimum}`}, found ${describe(input)}`;
    case 'too_big':
      return `expected ${issue.origin === 'array' ? 'at most ' + issue.maximum + ' item(s)' : issue.origin === 'string' ? 'at most ' + issue.maximum + ' character(s)' : `a value ≤ ${issue.maximum}`}, found ${describe(input)}`;
    case 'invalid_union': {
      const u = issue as { discriminator?: string; options?: unknown[]; errors?: z.core.$ZodIssue[][] };
      if (u.discriminator) {
        const found =
          typeof input === 'object' && input !== null
            ? (input as Record<string, unknown>)[u.discriminator]
            : input;
        return `expected one of ${(u.options ?? []).map((o) => JSON.stringify(o)).join(', ')}, found ${describe(found)}`;
      }
      const expected = (u.errors ?? [])
        .map((branch) => branch[0])
        .map((i) =>
          i?.code === 'invalid_type'
            ? (TYPE_NAMES[i.expected] ?? i.expected)
            : i?.code === 'invalid_value'
              ? i.values.map((v) => JSON.stringify(v)).join(' or ')
              : undefined,
        )
        .filter((x) => x !== undefined);
      return expected.length > 0
        ? `expected ${expected.join(', or ')}, found ${describe(input)}`
        : `${issue.message}, found ${describe(input)}`;
    }
    case 'invalid_format':
    case 'custom':
      // Cross-field checks carry the whole object as input: "found a mapping" would not help.
      return input === undefined || typeof input === 'object' || issue.message.includes('found')
        ? issue.message
        : `${issue.message}, found ${describe(input)}`;
    default:
      return `${issue.message}${input === undefined ? '' : `, found ${describe(input)}`}`;
  }
}

/** Converts zod issues into problems located in the YAML source where the path exists there. */
export function issuesToProblems(
  issues: readonly z.core.$ZodIssue[],
  file: string,
  doc?: YamlDocument,
  lines?: LineCounter,
  envOrigins?: Map<string, string>,
): ConfigProblem[] {
  return issues.map((issue) => {
    let path: (string | number)[] = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    // A wrong discriminator is about the `type` key (zod 4 puts it in the path; older versions did not).
    const disc =
      issue.code === 'invalid_union' ? (issue as { discriminator?: string }).discriminator : undefined;
    if (disc && path.at(-1) !== disc) path = [...path, disc];
    const problem: ConfigProblem = { file, path, message: issueMessage(issue) };
    if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) {
      problem.path = [...path, issue.keys[0] as string];
      problem.message = 'unknown key';
      Object.assign(problem, locate(doc, lines, problem.path, true));
    } else {
      Object.assign(problem, locate(doc, lines, path, false));
    }
    const env = envOrigins?.get(JSON.stringify(problem.path));
    if (env) problem.env = env;
    return problem;
  });
}

/** Line and column of the deepest node of `path` that exists in the document. */
export function locate(
  doc: YamlDocument | undefined,
  lines: LineCounter | undefined,
  path: readonly (string | number)[],
  atKey: boolean,
): { line?: number; column?: number } {
  if (!doc || !lines) return {};
  // biome-ignore lint/suspicious/noExplicitAny: walking untyped YAML nodes
  let node: any = doc.contents;
  let offset: number | undefined = node?.range?.[0];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      // biome-ignore lint/suspicious/noExplicitAny: YAML pair keys are scalars here
      const pair: any = node.items.find((it: any) => String(it.key?.value ?? it.key) === String(seg));
      if (!pair) break;
      offset = (i === path.length - 1 && atKey ? pair.key?.range?.[0] : pair.value?.range?.[0]) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (!item) break;
      // biome-ignore lint/suspicious/noExplicitAny: sequence items are nodes
      offset = (item as any).range?.[0] ?? offset;
      node = item;
    } else break;
  }
  if (offset === undefined) return {};
  const pos = lines.linePos(offset);
  return { line: pos.line, column: pos.col };
}
