/**
 * Rules (SPEC §2): the schema, its TypeScript types (inferred from the schema), and validation that
 * reports every problem with its path — structural ones from the schema, semantic ones (duplicate
 * ids, expressions and the names they use) from a second pass over the same input.
 */
import { z } from 'zod';
import { checkCondition, RESERVED_NAMES } from '../engine/expression.js';
import { durationSchema } from './duration.js';
import { describeFound } from './found.js';
import { NAME_RE } from './reading.js';

export const RULE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const ALIAS_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const WINDOW_TYPES = ['tumbling', 'sliding', 'session', 'count'] as const;
export const FORWARD_KINDS = ['results', 'decisions', 'late'] as const;
export const AGGREGATE_FUNCTIONS = [
  'count',
  'sum',
  'avg',
  'min',
  'max',
  'first',
  'last',
  'stddev',
  'spread',
  'delta',
  'rate',
  'median',
] as const;

/** A whole number ≥ 1 (count windows, `for`). */
function positiveInt(what: string) {
  return z.unknown().transform((input, ctx): number => {
    if (typeof input !== 'number' || !Number.isSafeInteger(input) || input < 1) {
      ctx.addIssue({
        code: 'custom',
        message: `expected ${what} (a whole number ≥ 1), found ${describeFound(input)}`,
      });
      return z.NEVER;
    }
    return input;
  });
}

const globList = z.unknown().transform((input, ctx): string[] => {
  const list = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(list) || list.length === 0) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a glob (e.g. "boiler-*") or a non-empty list of globs, found ${describeFound(input)}`,
    });
    return z.NEVER;
  }
  list.forEach((g, i) => {
    if (typeof g !== 'string' || g.length === 0 || g.length > 256) {
      ctx.addIssue({
        code: 'custom',
        path: typeof input === 'string' ? [] : [i],
        message: `expected a non-empty glob of at most 256 characters, found ${describeFound(g)}`,
      });
    }
  });
  return list as string[];
});

const matchSchema = z.strictObject({ device: globList.optional(), metric: globList.optional() });

const whereSchema = z.unknown().transform((input, ctx): string => {
  if (typeof input !== 'string') {
    ctx.addIssue({ code: 'custom', message: `expected an expression string, found ${describeFound(input)}` });
    return z.NEVER;
  }
  const problem = checkCondition(input, ['value']);
  if (problem !== null) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return input;
});

const groupBySchema = z.unknown().transform((input, ctx): string[] => {
  if (!Array.isArray(input)) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a list of device, metric or tag names (e.g. [device]), found ${describeFound(input)}`,
    });
    return z.NEVER;
  }
  const seen = new Set<string>();
  input.forEach((f, i) => {
    if (typeof f !== 'string' || !NAME_RE.test(f)) {
      ctx.addIssue({
        code: 'custom',
        path: [i],
        message: `expected device, metric or a tag name (1–128 of [A-Za-z0-9_.:-]), found ${describeFound(f)}`,
      });
    } else if (seen.has(f)) {
      ctx.addIssue({ code: 'custom', path: [i], message: `"${f}" appears twice in groupBy` });
    } else seen.add(f);
  });
  return input as string[];
});

const tumblingSchema = z.strictObject({ type: z.literal('tumbling'), size: durationSchema({ min: 1 }) });
const slidingSchema = z.strictObject({
  type: z.literal('sliding'),
  size: durationSchema({ min: 1 }),
  slide: durationSchema({ min: 1 }),
});
const sessionSchema = z.strictObject({ type: z.literal('session'), gap: durationSchema({ min: 1 }) });
const countSchema = z.strictObject({
  type: z.literal('count'),
  size: positiveInt('a number of readings'),
  slide: positiveInt('a number of readings').optional(),
});

export const windowSchema = z.discriminatedUnion('type', [
  tumblingSchema,
  slidingSchema,
  sessionSchema,
  countSchema,
]);
export type WindowSpec = z.output<typeof windowSchema>;

/** The event time one window spans: its size, or a session's gap; count windows have none. */
export function windowExtent(w: WindowSpec): number {
  return w.type === 'session' ? w.gap : w.type === 'count' ? 0 : w.size;
}

const watermarkSchema = z.strictObject({
  maxOutOfOrder: durationSchema({ min: 0 }).optional(),
  idleTimeout: durationSchema({ min: 1 }).optional(),
});

/** One parsed aggregate: `alias: fn` or `alias: fn(metric)`; `median` is the 50th percentile. */
export interface AggregateSpec {
  alias: string;
  fn: Exclude<(typeof AGGREGATE_FUNCTIONS)[number], 'median'> | 'quantile';
  metric: string | null;
  /** The percentile (0–100) for `quantile`, else null. */
  q: number | null;
}

const AGGREGATE_RE = /^\s*([A-Za-z][A-Za-z0-9.]*)\s*(?:\(\s*([^()]*?)\s*\))?\s*$/;
const QUANTILE_RE = /^p(\d{1,3}(?:\.\d+)?)$/;
const AGGREGATE_HELP = `${AGGREGATE_FUNCTIONS.join(', ')}, pNN or pNN.N (0–100)`;

/** Parses `fn` or `fn(metric)`; a message on failure. */
export function parseAggregate(alias: string, text: string): AggregateSpec | string {
  const m = AGGREGATE_RE.exec(text);
  if (!m) return `expected fn or fn(metric), e.g. avg or avg(humidity), found ${describeFound(text)}`;
  const name = m[1] as string;
  const metric = m[2];
  if (metric !== undefined && !NAME_RE.test(metric)) {
    return `expected a metric name (1–128 of [A-Za-z0-9_.:-]) inside ${name}(…), found ${describeFound(metric)}`;
  }
  const base = { alias, metric: metric ?? null };
  const qm = QUANTILE_RE.exec(name);
  if (qm) {
    const q = Number(qm[1]);
    if (q > 100)
      return `percentile ${name} is out of range: expected p0 to p100, found ${describeFound(text)}`;
    return { ...base, fn: 'quantile', q };
  }
  if (name === 'median') return { ...base, fn: 'quantile', q: 50 };
  if ((AGGREGATE_FUNCTIONS as readonly string[]).includes(name)) {
    return { ...base, fn: name as Exclude<AggregateSpec['fn'], 'quantile'>, q: null };
  }
  return `unknown aggregate function ${describeFound(name)}; expected one of ${AGGREGATE_HELP}`;
}

const aggregatesSchema = z.unknown().transform((input, ctx): AggregateSpec[] => {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a map of alias: fn or alias: fn(metric), found ${describeFound(input)}`,
    });
    return z.NEVER;
  }
  const specs: AggregateSpec[] = [];
  for (const [alias, fn] of Object.entries(input)) {
    if (!ALIAS_RE.test(alias) || RESERVED_NAMES.has(alias)) {
      ctx.addIssue({
        code: 'custom',
        path: [alias],
        message: `alias ${describeFound(alias)} must be a name usable in expressions ([A-Za-z_][A-Za-z0-9_]*, at most 64, not and/or/not)`,
      });
    }
    if (typeof fn !== 'string') {
      ctx.addIssue({
        code: 'custom',
        path: [alias],
        message: `expected fn or fn(metric), e.g. avg or p95(temperature), found ${describeFound(fn)}`,
      });
      continue;
    }
    const parsed = parseAggregate(alias, fn);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', path: [alias], message: parsed });
    else specs.push(parsed);
  }
  return specs;
});

const forwardSchema = z.unknown().transform((input, ctx): (typeof FORWARD_KINDS)[number][] => {
  if (!Array.isArray(input)) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a list of ${FORWARD_KINDS.join(', ')}, found ${describeFound(input)}`,
    });
    return z.NEVER;
  }
  const out: (typeof FORWARD_KINDS)[number][] = [];
  input.forEach((k, i) => {
    if (!(FORWARD_KINDS as readonly unknown[]).includes(k)) {
      ctx.addIssue({
        code: 'custom',
        path: [i],
        message: `expected one of ${FORWARD_KINDS.join(', ')}, found ${describeFound(k)}`,
      });
    } else if (!out.includes(k)) out.push(k);
  });
  return out;
});

const ruleObjectSchema = z.strictObject({
  id: z.unknown().transform((input, ctx): string => {
    if (typeof input !== 'string' || !RULE_ID_RE.test(input)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected an id of 1–64 characters [a-z0-9_-] starting with a letter or digit, found ${describeFound(input)}`,
      });
      return z.NEVER;
    }
    return input;
  }),
  description: z.string({ error: (i) => `expected a string, found ${describeFound(i.input)}` }).optional(),
  match: matchSchema.optional(),
  where: whereSchema.optional(),
  groupBy: groupBySchema.optional(),
  window: windowSchema,
  watermark: watermarkSchema.optional(),
  lateness: durationSchema({ min: 0 }).optional(),
  aggregates: aggregatesSchema.optional(),
  when: z
    .string({ error: (i) => `expected an expression string, found ${describeFound(i.input)}` })
    .optional(),
  clear: z
    .string({ error: (i) => `expected an expression string, found ${describeFound(i.input)}` })
    .optional(),
  for: positiveInt('a number of consecutive windows').optional(),
  forward: forwardSchema.optional(),
});

/** The rule schema: input as written in YAML/JSON, output with defaults applied and durations in ms. */
export const ruleSchema = ruleObjectSchema.transform((r) => {
  const w = r.window;
  const defaultIdle = 2 * windowExtent(w);
  return {
    id: r.id,
    description: r.description ?? '',
    match: { device: r.match?.device ?? null, metric: r.match?.metric ?? null },
    where: r.where ?? null,
    groupBy: r.groupBy ?? ['device'],
    window: w,
    watermark: {
      maxOutOfOrder: r.watermark?.maxOutOfOrder ?? 0,
      idleTimeout: r.watermark?.idleTimeout ?? defaultIdle,
    },
    lateness: r.lateness ?? 0,
    aggregates: r.aggregates ?? [],
    when: r.when ?? null,
    clear: r.clear ?? null,
    for: r.for ?? 1,
    forward: r.forward ?? ['decisions'],
  };
});

/** A rule as written (YAML/JSON). */
export type RuleInput = z.input<typeof ruleSchema>;
/** A validated rule with defaults applied; durations in milliseconds. */
export type RuleSpec = z.output<typeof ruleSchema>;

export interface RuleProblem {
  path: (string | number)[];
  message: string;
}

export type RuleValidation = { ok: true; rules: RuleSpec[] } | { ok: false; problems: RuleProblem[] };

const ALLOWED_KEYS: Record<string, readonly string[]> = {
  rule: Object.keys(ruleObjectSchema.shape),
  match: ['device', 'metric'],
  watermark: ['maxOutOfOrder', 'idleTimeout'],
  tumbling: ['type', 'size'],
  sliding: ['type', 'size', 'slide'],
  session: ['type', 'gap'],
  count: ['type', 'size', 'slide'],
};

function allowedKeysAt(path: readonly PropertyKey[], raw: unknown): readonly string[] | undefined {
  const last = path[path.length - 1];
  if (last === undefined || typeof last === 'number') return ALLOWED_KEYS.rule;
  if (last === 'match' || last === 'watermark') return ALLOWED_KEYS[last];
  if (last === 'window') {
    const type = (raw as { window?: { type?: unknown } } | undefined)?.window?.type;
    return typeof type === 'string' ? ALLOWED_KEYS[type] : undefined;
  }
  return undefined;
}

function toProblem(issue: z.core.$ZodIssue, prefix: (string | number)[], raw: unknown): RuleProblem {
  const path = [...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeysAt(issue.path, raw);
    const keys = issue.keys.map((k) => `"${k}"`).join(', ');
    message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${keys}${allowed ? `; expected one of ${allowed.join(', ')}` : ''}`;
  } else if (issue.code === 'invalid_union' && issue.path[issue.path.length - 1] === 'type') {
    const type = (raw as { window?: { type?: unknown } } | undefined)?.window?.type;
    message = `expected a window type of ${WINDOW_TYPES.join(', ')}, found ${describeFound(type)}`;
  } else if (issue.code === 'invalid_type') {
    const field = issue.path[issue.path.length - 1];
    const found = 'input' in issue ? describeFound(issue.input) : 'something else';
    message =
      found === 'nothing' && field !== undefined
        ? `${String(field)} is required (expected ${issue.expected})`
        : `expected ${issue.expected}, found ${found}`;
  }
  return { path, message };
}

function checkRule(
  input: unknown,
  prefix: (string | number)[],
): { spec?: RuleSpec; problems: RuleProblem[] } {
  const problems: RuleProblem[] = [];
  const parsed = ruleSchema.safeParse(input, { reportInput: true });
  if (!parsed.success)
    for (const issue of parsed.error.issues) problems.push(toProblem(issue, prefix, input));
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    problems.push(...checkDecisionExpressions(input as Record<string, unknown>, prefix));
  }
  return parsed.success && problems.length === 0 ? { spec: parsed.data, problems } : { problems };
}

/** `when` and `clear` see the aliases and `count` (an alias named `count` wins), fine print 14. */
function checkDecisionExpressions(raw: Record<string, unknown>, prefix: (string | number)[]): RuleProblem[] {
  const problems: RuleProblem[] = [];
  const aggregates = raw.aggregates;
  const aliases =
    typeof aggregates === 'object' && aggregates !== null && !Array.isArray(aggregates)
      ? Object.keys(aggregates).filter((a) => ALIAS_RE.test(a) && !RESERVED_NAMES.has(a))
      : [];
  const names = decisionNames(aliases);
  for (const field of ['when', 'clear'] as const) {
    const text = raw[field];
    if (typeof text !== 'string') continue;
    const problem = checkCondition(text, names);
    if (problem !== null) problems.push({ path: [...prefix, field], message: problem });
  }
  if (raw.clear !== undefined && raw.when === undefined) {
    problems.push({
      path: [...prefix, 'clear'],
      message: 'clear needs a when: there is no decision to clear',
    });
  }
  return problems;
}

/** The names `when`/`clear` may use, in environment slot order: the aliases, then `count` unless an alias took it. */
export function decisionNames(aliases: readonly string[]): string[] {
  return aliases.includes('count') ? [...aliases] : [...aliases, 'count'];
}

/** Validates one rule. */
export function validateRule(
  input: unknown,
): { ok: true; rule: RuleSpec } | { ok: false; problems: RuleProblem[] } {
  const r = checkRule(input, []);
  return r.spec ? { ok: true, rule: r.spec } : { ok: false, problems: r.problems };
}

/** Validates a list of rules (a rules file): every problem of every rule, and duplicate ids. */
export function validateRules(input: unknown): RuleValidation {
  if (!Array.isArray(input)) {
    return {
      ok: false,
      problems: [{ path: [], message: `expected a list of rules, found ${describeFound(input)}` }],
    };
  }
  const problems: RuleProblem[] = [];
  const rules: RuleSpec[] = [];
  const firstIndex = new Map<string, number>();
  input.forEach((item, i) => {
    const r = checkRule(item, [i]);
    problems.push(...r.problems);
    if (r.spec) rules.push(r.spec);
    const id = (item as { id?: unknown } | null)?.id;
    if (typeof id === 'string') {
      const first = firstIndex.get(id);
      if (first !== undefined) {
        problems.push({ path: [i, 'id'], message: `duplicate id "${id}": rule ${first} already uses it` });
      } else firstIndex.set(id, i);
    }
  });
  return problems.length === 0 ? { ok: true, rules } : { ok: false, problems };
}
