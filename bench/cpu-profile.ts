import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Reads a V8 .cpuprofile (`node --cpu-prof`) and tells where the time went: self time by part of
 * the gateway (aedes and mqtt-packet, our sources, ingest, engine, rules, store, better-sqlite3's
 * native code, node core, GC, idle, …) and the functions with the most self time, in ns per
 * reading when the number of readings is known. bench/e2e.ts `--profile` runs it on the gateway's
 * profiles; it also runs on a file:
 *
 *   node build/bench/cpu-profile.js FILE.cpuprofile [--readings N] [--from US --to US] [--top 20]
 *
 * `--from`/`--to` keep only the samples in that window of the profile's clock (µs of
 * CLOCK_MONOTONIC on Linux, the clock of `process.hrtime`), so that start-up and shut-down are
 * left out.
 */

/** The parts of a .cpuprofile read here (V8's Profiler.Profile). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
  /** Samples by source line (1-based) of the function itself. */
  positionTicks?: { line: number; ticks: number }[];
}

export interface ProfileSummary {
  /** Self time in the window, µs. */
  totalUs: number;
  /** Self time per part, µs, largest first. */
  parts: { part: string; us: number }[];
  /** Self time per function (name, file:line, part), µs, largest first. */
  functions: { name: string; where: string; part: string; us: number }[];
}

/** The package a node_modules path belongs to (`@scope/name` or `name`). */
function packageOf(url: string): string | null {
  const at = url.lastIndexOf('/node_modules/');
  if (at < 0) return null;
  const rest = url.slice(at + '/node_modules/'.length).split('/');
  return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? null);
}

/** aedes and the packages it runs on for every packet. */
const BROKER_PACKAGES = new Set([
  'aedes',
  'aedes-packet',
  'aedes-persistence',
  'mqtt-packet',
  'mqemitter',
  'bl',
  'fastfall',
  'fastparallel',
  'fastseries',
  'reusify',
  'retimer',
  'hyperid',
  'uuid-parse',
  'end-of-stream',
  'readable-stream',
  'process-nextick-args',
  'safe-buffer',
  'string_decoder',
]);

/** The part of the gateway a script belongs to; null for frames without a script (native, V8). */
export function partOf(url: string): string | null {
  if (url === '') return null;
  const pkg = packageOf(url);
  if (pkg !== null) {
    if (BROKER_PACKAGES.has(pkg)) return 'aedes/mqtt-packet';
    if (pkg === 'better-sqlite3') return 'better-sqlite3 (js)';
    return pkg;
  }
  if (url.startsWith('node:')) return 'node core';
  // The gateway's own modules, built (dist/ or build/src/): by their folder of src/.
  const dist = /\/(?:dist|build\/src)\/(.+)$/.exec(url);
  if (dist) {
    const rest = dist[1] as string;
    return rest.includes('/') ? rest.slice(0, rest.indexOf('/')) : 'gateway root';
  }
  return basename(url);
}

/** What a frame without a script is: V8's pseudo-frames by name, else native code under its caller. */
function nativePart(name: string, caller: string | null): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return '(program: V8 and native, outside JS)';
  if (name === '(root)') return '(root)';
  return `native, from ${caller ?? 'V8'}`;
}

/**
 * A line that calls into SQLite: a prepared statement's run/get/all/iterate (`this.stmt.x.run(`,
 * `db.prepare(…).get(`, a continuation line `.run(`, better-sqlite3's own `begin.run()`), or
 * `db.exec`/`db.pragma`. V8 gives native code called from JS no frame of its own: its time is the
 * calling line's, which is how it is told apart from the JS around it.
 */
const SQLITE_CALL =
  /(?:\bstmt\.\w+|\b(?:before|after|undo)|\bprepare\(.*\)(?:\.pluck\(\))?|^\s*)\.(?:run|get|all|iterate)\(|\b(?:db|database)\.(?:exec|pragma)\(/;

/** The lines of a script that call SQLite (1-based), or null when its file is not readable here. */
function sqliteLinesOf(url: string, cache: Map<string, Set<number> | null>): Set<number> | null {
  if (cache.has(url)) return cache.get(url) ?? null;
  let lines: Set<number> | null = null;
  try {
    const text = readFileSync(fileURLToPath(url.startsWith('file:') ? url : `file://${url}`), 'utf8');
    lines = new Set();
    text.split('\n').forEach((line, i) => {
      if (SQLITE_CALL.test(line)) lines?.add(i + 1);
    });
  } catch {
    // a profile from another machine: its store time stays the store's
  }
  cache.set(url, lines);
  return lines;
}

/** Self time per part and per function over the samples between `from` and `to` (profile µs). */
export function summarize(profile: CpuProfile, window: { from?: number; to?: number } = {}): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // A node's part: its script's, or (native) that of the nearest caller with a script.
  const parts = new Map<number, string>();
  const partOfNode = (id: number): string => {
    const known = parts.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id) as ProfileNode;
    let part = partOf(node.callFrame.url);
    if (part === null) {
      let caller: string | null = null;
      for (let up = parent.get(id); up !== undefined; up = parent.get(up)) {
        caller = partOf((byId.get(up) as ProfileNode).callFrame.url);
        if (caller !== null) break;
      }
      part = nativePart(node.callFrame.functionName, caller);
    }
    parts.set(id, part);
    return part;
  };

  const selfUs = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  // timeDeltas[i] is the time from sample i − 1 to sample i: sample i lasts until sample i + 1.
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i] ?? 0;
    const next = timeDeltas[i + 1] ?? 0;
    if ((window.from !== undefined && t < window.from) || (window.to !== undefined && t >= window.to))
      continue;
    const id = samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + next);
  }

  const perPart = new Map<string, number>();
  const perFunction = new Map<string, { name: string; where: string; part: string; us: number }>();
  const sqliteLines = new Map<string, Set<number> | null>();
  let totalUs = 0;
  const add = (node: ProfileNode, part: string, us: number, suffix = '') => {
    perPart.set(part, (perPart.get(part) ?? 0) + us);
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '' : `${shortUrl(url)}:${lineNumber + 1}`;
    const name = (functionName || '(anonymous)') + suffix;
    const key = `${name}\u0000${where}\u0000${part}`;
    const f = perFunction.get(key) ?? { name, where, part, us: 0 };
    f.us += us;
    perFunction.set(key, f);
  };
  for (const [id, us] of selfUs) {
    const node = byId.get(id) as ProfileNode;
    const part = partOfNode(id);
    totalUs += us;
    // The store's and better-sqlite3's time on lines that call SQLite is SQLite's (by their ticks).
    const lines =
      part === 'store' || part === 'better-sqlite3 (js)'
        ? sqliteLinesOf(node.callFrame.url, sqliteLines)
        : null;
    if (lines && node.positionTicks) {
      let all = 0;
      let native = 0;
      for (const p of node.positionTicks) {
        all += p.ticks;
        if (lines.has(p.line)) native += p.ticks;
      }
      const nativeUs = all > 0 ? (us * native) / all : 0;
      if (nativeUs > 0) add(node, 'better-sqlite3 native', nativeUs, ' → SQLite');
      if (us - nativeUs > 0) add(node, part, us - nativeUs);
      continue;
    }
    add(node, part, us);
  }
  return {
    totalUs,
    parts: [...perPart].map(([part, us]) => ({ part, us })).sort((a, b) => b.us - a.us),
    functions: [...perFunction.values()].sort((a, b) => b.us - a.us),
  };
}

/** `…/node_modules/aedes/lib/handlers/publish.js` → `aedes/lib/handlers/publish.js`; dist paths from dist/. */
function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const at = path.lastIndexOf('/node_modules/');
  if (at >= 0) return path.slice(at + '/node_modules/'.length);
  const dist = path.lastIndexOf('/dist/');
  if (dist >= 0) return path.slice(dist + 1);
  return path;
}

/** The summary as two tables: parts, then the top functions; ns per reading when `readings` is given. */
export function formatSummary(s: ProfileSummary, options: { readings?: number; top?: number } = {}): string {
  const { readings, top = 20 } = options;
  const busyUs = s.totalUs - (s.parts.find((p) => p.part === 'idle')?.us ?? 0);
  const cell = (us: number) => (readings ? (us * 1000) / readings : us / 1000); /* ns per reading, or ms */
  const unit = readings ? 'ns/reading' : 'ms';
  const pct = (us: number) => `${((us / s.totalUs) * 100).toFixed(1)} %`;
  const rows: string[][] = s.parts.map((p) => [p.part, cell(p.us).toFixed(0), pct(p.us)]);
  rows.push(['busy (all but idle)', cell(busyUs).toFixed(0), pct(busyUs)]);
  const lines = [table(['part (self time)', unit, 'of all'], rows), ''];
  lines.push(
    table(
      ['function (self time)', 'where', 'part', unit, 'of all'],
      s.functions.slice(0, top).map((f) => [f.name, f.where, f.part, cell(f.us).toFixed(0), pct(f.us)]),
    ),
  );
  return lines.join('\n');
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => i > 0 && rows.every((r) => /^[\d.,% -]*$/.test(r[i] ?? '')));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function readProfile(file: string): CpuProfile {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  if (!Array.isArray(profile.nodes) || !Array.isArray(profile.samples) || !Array.isArray(profile.timeDeltas))
    throw new Error(`${file}: not a V8 .cpuprofile (no nodes, samples and timeDeltas)`);
  return profile;
}

const USAGE = `usage: node build/bench/cpu-profile.js FILE.cpuprofile [--readings N] [--from US --to US] [--top 20]
  --readings N   readings taken in during the window: figures in ns per reading (else ms)
  --from, --to   keep the samples within this window of the profile's clock (µs)
  --top N        functions listed (default 20)`;

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      readings: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      top: { type: 'string', default: '20' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const window = {
    ...(values.from !== undefined ? { from: Number(values.from) } : {}),
    ...(values.to !== undefined ? { to: Number(values.to) } : {}),
  };
  const summary = summarize(readProfile(positionals[0] as string), window);
  console.log(
    formatSummary(summary, {
      ...(values.readings !== undefined ? { readings: Number(values.readings) } : {}),
      top: Number(values.top),
    }),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
