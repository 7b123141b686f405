import type { LineCounter, Document as YamlDocument } from 'yaml';
import { type RuleSpec, validateRules } from '../model/rule.js';
import { ConfigError, type ConfigProblem, locate } from '../schema/problems.js';
import { readYaml } from '../schema/yaml-file.js';

/** Each config rule as the user wrote it (the API lists rules that way), by its validated spec. */
const written = new WeakMap<RuleSpec, unknown>();

/**
 * Rules from a rules file (a YAML list; JSON works too) or inline in the gateway config. Problems
 * name the file, line and path of each rule field (SPEC §2: invalid rules are refused, every
 * problem with its path).
 */
export function loadRulesFile(file: string): RuleSpec[] {
  const { doc, lines, data } = readYaml(file, 'rules file');
  // An empty file is no rules.
  return checkRules(data ?? [], file, [], doc, lines);
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
  if (result.ok) {
    result.rules.forEach((spec, i) => {
      written.set(spec, (data as unknown[])[i]);
    });
    return result.rules;
  }
  const problems: ConfigProblem[] = result.problems.map((p) => {
    const path = [...prefix, ...p.path];
    return { file, path, message: p.message, ...locate(doc, lines, path, false) };
  });
  throw new ConfigError(problems);
}

/** The rule as written in the config file; the validated spec itself for rules built in code. */
export function writtenRule(spec: RuleSpec): unknown {
  return written.get(spec) ?? spec;
}
