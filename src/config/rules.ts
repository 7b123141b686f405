import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, type Document as YamlDocument } from 'yaml';
import { type RuleSpec, validateRules } from '../model/rule.js';
import { ConfigError, type ConfigProblem, locate } from './problems.js';

/**
 * Rules from a rules file (a YAML list; JSON works too) or inline in the gateway config. Problems
 * name the file, line and path of each rule field (SPEC §2: invalid rules are refused, every
 * problem with its path).
 */
export function loadRulesFile(file: string): RuleSpec[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      { file, path: [], message: `cannot read the rules file: ${(err as Error).message}` },
    ]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        return {
          file,
          path: [],
          line: pos.line,
          column: pos.col,
          message: `YAML: ${e.message.split('\n')[0]}`,
        };
      }),
    );
  }
  // An empty file is no rules.
  const data = doc.toJS() ?? [];
  return checkRules(data, file, [], doc, lines);
}

/** Validates a list of rules already parsed; `prefix` is where they sit in `doc` (e.g. ['rules']). */
export function checkRules(
  data: unknown,
  file: string,
  prefix: (string | number)[],
  doc?: YamlDocument,
  lines?: LineCounter,
): RuleSpec[] {
  const result = validateRules(data);
  if (result.ok) return result.rules;
  const problems: ConfigProblem[] = result.problems.map((p) => {
    const path = [...prefix, ...p.path];
    return { file, path, message: p.message, ...locate(doc, lines, path, false) };
  });
  throw new ConfigError(problems);
}
