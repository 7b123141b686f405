/**
 * config/ — the gateway's configuration (SPEC §6): the one schema (config/schema.ts, assembled
 * from the schemas each part owns: sources/, upstreams/), YAML loading with `${VAR}` and TIDEGATE_*
 * overrides, rule files, device profiles, cross-section checks. May import model/, schema/, runtime/,
 * and the config schemas and profile loader of sources/ and upstreams/; no stage imports config/
 * except for types (api/server.ts, gateway.ts, cli.ts).
 */
import type { RuleSpec } from '../model/rule.js';
import { ConfigError, type ConfigProblem, issuesToProblems, locate } from '../schema/problems.js';
import { parseYaml, readYaml, type YamlSource } from '../schema/yaml-file.js';
import { checkModbusProfiles } from '../sources/modbus/config.js';
import { loadProfiles, type Profile } from '../sources/modbus/profile.js';
import { checkRules, loadRulesFile } from './rules.js';
import { configSchema, type GatewayConfig } from './schema.js';
import { checkFilesReadAtStart } from './start-files.js';

export const DEFAULT_CONFIG_FILE = 'config/gateway.yaml';

type Env = Record<string, string | undefined>;
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Reads, substitutes, overrides and validates a configuration file; throws ConfigError with every problem. */
export function loadConfig(file: string, env: Env = process.env): GatewayConfig {
  return configFromYaml(readYaml(file), env);
}

/** Like loadConfig, for text already in hand (tests, stdin). */
export function parseConfigText(text: string, file: string, env: Env = process.env): GatewayConfig {
  return configFromYaml(parseYaml(text, file), env);
}

function configFromYaml({ file, doc, lines, data: parsed }: YamlSource, env: Env): GatewayConfig {
  const raw = (parsed ?? {}) as Json;
  if (typeof raw !== 'object' || Array.isArray(raw) || raw === null) {
    throw new ConfigError([
      { file, path: [], message: 'expected a mapping of sections (gateway, api, broker, …)' },
    ]);
  }
  const problems: ConfigProblem[] = [];
  const data = substituteEnv(raw, env) as { [k: string]: Json };
  const envOrigins = applyEnvOverrides(data, env, file, problems);
  const result = configSchema.safeParse(data, { reportInput: true });
  if (!result.success) problems.push(...issuesToProblems(result.error.issues, file, doc, lines, envOrigins));
  problems.push(...checkFilesReadAtStart(data, file, doc, lines, envOrigins));
  let rules: RuleSpec[] = [];
  const rawRules = data['rules'];
  try {
    if (typeof rawRules === 'string' && rawRules !== '') rules = loadRulesFile(rawRules);
    else if (Array.isArray(rawRules)) rules = checkRules(rawRules, file, ['rules'], doc, lines);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  // Device profiles are read only when a Modbus source needs them (a missing devices/ is fine otherwise).
  let profiles = new Map<string, Profile>();
  const rawSources = Array.isArray(data['sources']) ? data['sources'] : [];
  if (
    rawSources.some((s) => typeof s === 'object' && s !== null && (s as { type?: unknown }).type === 'modbus')
  ) {
    const dir = typeof data['devicesDir'] === 'string' ? data['devicesDir'] : 'devices';
    try {
      profiles = loadProfiles(dir);
      for (const p of checkModbusProfiles(rawSources, profiles)) {
        const path = ['sources', p.source, ...p.path];
        problems.push({ file, path, message: p.message, ...locate(doc, lines, path, false) });
      }
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return { ...result.data, rules, profiles };
}

/** `${VAR}` and `${VAR:-default}` inside string values; an unset variable is empty. */
export function substituteEnv(value: Json, env: Env): Json {
  if (typeof value === 'string') {
    return value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_, name: string, fallback?: string) => {
        const v = env[name];
        return v !== undefined && v !== '' ? v : (fallback ?? '');
      },
    );
  }
  if (Array.isArray(value)) return value.map((v) => substituteEnv(v, env));
  if (value && typeof value === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env);
    return out;
  }
  return value;
}

/** Every key the schema knows, lower-cased → as spelled, so `FLUSHINTERVAL` finds `flushInterval`. */
function knownKeys(): Map<string, string> {
  const keys = new Map<string, string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, inner] of Object.entries(v)) {
        keys.set(k.toLowerCase(), k);
        walk(inner);
      }
    }
  };
  // One of every kind of list item, so that keys inside sources, topics and users are known too.
  walk(
    configSchema.parse({
      sources: [
        { id: 'm', type: 'mqtt', topics: [{ filter: 'a/{device}' }] },
        { id: 's', type: 'simulator' },
      ],
      broker: { users: [{ username: 'u', passwordHash: `scrypt$2$1$1$AA==$${'A'.repeat(43)}=` }] },
    }),
  );
  return keys;
}

/**
 * `TIDEGATE_<SECTION>__<KEY>[__<KEY>…]` overrides one scalar (`TIDEGATE_API__TOKEN`,
 * `TIDEGATE_STORE__FLUSHINTERVAL=1s`, `TIDEGATE_SOURCES__0__INTERVAL=5s`). Values stay text (a
 * token of digits is still a string); number and boolean fields accept their text form. Returns
 * which paths came from which variable.
 */
export function applyEnvOverrides(
  data: { [k: string]: Json },
  env: Env,
  file: string,
  problems: ConfigProblem[],
): Map<string, string> {
  const origins = new Map<string, string>();
  const names = Object.keys(env)
    .filter((n) => n.startsWith('TIDEGATE_') && n.includes('__'))
    .sort();
  if (names.length === 0) return origins;
  const keys = knownKeys();
  for (const envName of names) {
    const segments = envName.slice('TIDEGATE_'.length).split('__');
    if (segments.some((s) => s === '')) continue;
    const path: (string | number)[] = [];
    // biome-ignore lint/suspicious/noExplicitAny: walking untyped config data
    let node: any = data;
    let ok = true;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i] as string;
      const last = i === segments.length - 1;
      if (Array.isArray(node)) {
        const index = Number(seg);
        if (!Number.isInteger(index) || index < 0 || index >= node.length) {
          problems.push({ file, path, env: envName, message: `no list item ${seg} to override` });
          ok = false;
          break;
        }
        path.push(index);
        if (!last) node = node[index];
        continue;
      }
      const existing = Object.keys(node).find((k) => k.toLowerCase() === seg.toLowerCase());
      const key = existing ?? keys.get(seg.toLowerCase()) ?? seg.toLowerCase();
      path.push(key);
      if (!last) {
        if (node[key] === undefined || node[key] === null) node[key] = {};
        if (typeof node[key] !== 'object') {
          problems.push({
            file,
            path,
            env: envName,
            message: 'is a scalar; cannot override a key inside it',
          });
          ok = false;
          break;
        }
        node = node[key];
      }
    }
    if (!ok) continue;
    const target = path[path.length - 1] as string | number;
    const current = node[target];
    if (current !== null && typeof current === 'object') {
      problems.push({
        file,
        path,
        env: envName,
        message: 'names a section or list; only scalars can be overridden',
      });
      continue;
    }
    node[target] = env[envName] ?? '';
    origins.set(JSON.stringify(path), envName);
  }
  return origins;
}
