import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { MOSQUITTO, type Mosquitto, startMosquitto } from '../test/helpers/mosquitto.js';
import { freePort } from '../test/helpers/net.js';
import { parseMetrics } from '../test/helpers/prometheus.js';
import { formatSummary, readProfile, summarize } from './cpu-profile.js';
import {
  CLI,
  cpuSeconds,
  describeUnitCommand,
  peakRssMiB,
  rssMiB,
  UNBUNDLED_CLI,
  unitEnvironment,
  unitNodeCommand,
  writeBytes,
} from './gateway-process.js';
import { machine, quantile } from './machine.js';

/**
 * The whole gateway end to end, as a Pi runs it: `node … dist/cli.js run` with the node flags and
 * environment of systemd/tidegate.service (read from the unit file) as a child process with its embedded broker, 10 rules, raw readings
 * stored on disk (a temp dir under /var/tmp, not tmpfs) and one mqtt upstream, a Debian mosquitto
 * started here. A separate load process (e2e-load.js) publishes over MQTT; this process only
 * watches: /proc of the gateway, its /metrics and /api/v1/health, and the decisions arriving at
 * mosquitto.
 *
 * Runs (a fresh gateway and database each): (a) as fast as possible at QoS 0, (b) the same at
 * QoS 1, (c) a fixed 10 k readings/s, (d) (a) with the gateway pinned to CPU 0 (taskset) and the
 * load generator to the others; then the ceilings (e2e-limits.js): a bare aedes broker under the
 * same load, and raw batched better-sqlite3 inserts in two table layouts. `--soak 30m` instead runs a steady load for that long while mosquitto
 * goes down for 10 s every 30–60 s, and reports memory over time, drops and the backlog drain.
 *
 *   node build/bench/e2e.js [--seconds 60] [--rate 10000] [--connections 4] [--per-message 50]
 *   node build/bench/e2e.js --soak 30m [--rate 10000]
 *   node build/bench/e2e.js --profile DIR [--per-message 1] [--seconds 15]
 *
 * `--profile DIR` runs only (a) and (b), each gateway under `node --cpu-prof --cpu-prof-dir DIR`,
 * and prints from each .cpuprofile (bench/cpu-profile.ts) the self time per part and the top 20
 * functions in ns per reading, over the load's window only (start-up and shut-down left out).
 *
 * Bounded, talks only to 127.0.0.1, and removes its temp dirs and child processes on the way out
 * (also on an error or SIGINT).
 */
const LOAD = fileURLToPath(new URL('./e2e-load.js', import.meta.url));
const LIMITS = fileURLToPath(new URL('./e2e-limits.js', import.meta.url));
const TASKSET = '/usr/bin/taskset';
const PROBE_MS = 100;
const DEVICES = 200;
const METRICS_PER_DEVICE = 5; // in e2e-load.ts, unless --metrics narrows them
const DRAIN_SECONDS = 60; // after a run's load stops, at most this long for what is in flight
const SOAK_SAMPLE_MS = 5_000;
/** Latency's steady state starts this long after the first probe. */
const WARMUP_MS = 2_000;
const SOAK_DOWN_MS = 10_000;
const SOAK_UP_MS = [30_000, 60_000] as const;

const USAGE = `usage: npm run bench:e2e -- [options]   (or node build/bench/e2e.js [options])
  --seconds S        load time of each run (default 60, env E2E_SECONDS; with --profile 15)
  --rate N           readings/s of run (c) and of the soak (default 10000)
  --connections N    load connections (default 4)
  --per-message N    readings per message (default 50; with --profile 1)
  --runs LIST        which runs, of a,b,c,d,ceilings (default all); the ratios need the ceilings
  --repeat N         the runs and ceilings N times in turn, then each rate's and ratio's median
                     and range (single runs here spread by ±25 %; default 1)
  --rules SET        mixed (default): 10 rules of every window kind over the load's 5 metrics;
                     issue19: issue 19's ten rules on temperature (5 tumbling 1 s avg+max with a
                     when, 3 sliding 10 s / 1 s avg+p95, a session of gap 2 s, a count of 1,000),
                     the load on temperature only
  --soak D           instead of the runs: a QoS 1 load for D (30m, 1h) with upstream outages
  --profile DIR      instead of the runs: (a) and (b) under node --cpu-prof, profiles in DIR,
                     then the self time per part and the top 20 functions in ns per reading
  --help             this text`;

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    soak: { type: 'string' },
    profile: { type: 'string' },
    rate: { type: 'string', default: '10000' }, // run (c) and the soak
    connections: { type: 'string', default: '4' },
    'per-message': { type: 'string' },
    runs: { type: 'string', default: 'a,b,c,d,ceilings' },
    rules: { type: 'string', default: 'mixed' },
    repeat: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h' },
  },
});
const PROFILING = args.profile !== undefined;
const SECONDS = Number(args.seconds ?? (PROFILING ? '15' : (process.env['E2E_SECONDS'] ?? '60')));
const RATE = Number(args.rate);
const CONNECTIONS = Number(args.connections);
const PER_MESSAGE = Number(args['per-message'] ?? (PROFILING ? '1' : '50'));
const RUNS = new Set(args.runs.split(',').map((r) => r.trim()));
for (const r of RUNS)
  if (!['a', 'b', 'c', 'd', 'ceilings'].includes(r))
    throw new Error(`--runs: expected a comma-separated list of a, b, c, d, ceilings, found "${r}"`);
if (args.rules !== 'mixed' && args.rules !== 'issue19')
  throw new Error(`--rules: expected mixed or issue19, found "${args.rules}"`);
const ISSUE19 = args.rules === 'issue19';
const REPEAT = Number(args.repeat);
if (!Number.isInteger(REPEAT) || REPEAT < 1)
  throw new Error(`--repeat: expected a whole number ≥ 1, found "${args.repeat}"`);
/** The metrics the load sends (e2e-load.ts --metrics); null: all five. */
const LOAD_METRICS = ISSUE19 ? ['temperature'] : null;
/** How systemd/tidegate.service runs node: every gateway here is started the same way. */
const UNIT = unitNodeCommand();

/** `90s`, `5m`, `30m`, `1h`, `250ms` or bare seconds → ms. */
function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`expected a duration such as 90s, 5m or 30m, found "${text}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] as number;
  return Number(m[1]) * unit;
}

// ---------------------------------------------------------------------------------------------
// Processes and cleanup

/** Every child started here, ended (by its own pid) on the way out. */
const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
function terminate(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([...children].map((c) => terminate(c)));
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch {
        // best effort on the way out
      }
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`e2e: ${signal}, cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

/** The last lines a child wrote (stdout and stderr), for the report when it dies. */
function tailOf(child: ChildProcess, keep = 100): string[] {
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (l) => {
      lines.push(l);
      if (lines.length > keep) lines.shift();
    });
  }
  return lines;
}

/**
 * Rejects when `child` exits: a process that must outlive a run died during it. The message
 * names the signal or code and the telling line of its last output (V8's FATAL ERROR, an Error).
 */
function deathOf(child: ChildProcess, what: string, tail: string[]): Promise<never> {
  return new Promise((_, reject) => {
    child.once('exit', (code, signal) => {
      const telling = tail.find((l) => /FATAL ERROR|Error/.test(l)) ?? tail.at(-1) ?? '(no output)';
      reject(new Error(`${what} exited (${signal ?? `code ${code}`}): ${telling.trim()}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// /proc

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fixed = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

function median(xs: number[]): number {
  return quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
}

/** Polls `get` every `everyMs` until `done(value)`, for at most `timeoutMs`. */
async function until<T>(
  get: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs: number,
  everyMs = 100,
): Promise<{ value: T; ms: number; reached: boolean }> {
  const t0 = Date.now();
  for (;;) {
    const value = await get();
    const ms = Date.now() - t0;
    if (done(value)) return { value, ms, reached: true };
    if (ms >= timeoutMs) return { value, ms, reached: false };
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// The gateway

/** Ten rules of every window kind over the load's metrics, and the probe's rule (SPEC §2). */
const RULES = `
# Per-device temperature statistics every 10 s, forwarded upstream as results.
- id: temp-stats
  match: { device: "dev-*", metric: temperature }
  window: { type: tumbling, size: 10s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { avg: avg, min: min, max: max, p95: p95 }
  forward: [results]
# Sliding 30 s average every 5 s with hysteresis.
- id: temp-high
  match: { device: "dev-*", metric: temperature }
  window: { type: sliding, size: 30s, slide: 5s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { avg: avg }
  when: "avg > 80"
  clear: "avg < 75"
  for: 2
  forward: [decisions]
# Hopping 10 s / 2 s power percentile, with allowed lateness.
- id: power-p95
  match: { device: "dev-*", metric: power }
  window: { type: sliding, size: 10s, slide: 2s }
  watermark: { maxOutOfOrder: 1s }
  lateness: 5s
  aggregates: { p95: p95, peak: max }
  when: "p95 > 1400"
  forward: [decisions]
# Every 100 humidity readings per device.
- id: humidity-count
  match: { device: "dev-*", metric: humidity }
  window: { type: count, size: 100 }
  aggregates: { avg: avg, spread: spread }
# The last 50 humidity readings every 10.
- id: humidity-low
  match: { device: "dev-*", metric: humidity }
  window: { type: count, size: 50, slide: 10 }
  aggregates: { low: min }
  when: "low < 25"
  clear: "low > 30"
  forward: [decisions]
# Bursts of pressure readings: a session ends after 2 s of silence.
- id: pressure-session
  match: { device: "dev-*", metric: pressure }
  window: { type: session, gap: 2s }
  aggregates: { avg: avg, n: count }
# Vibration percentile per second, with a per-reading filter.
- id: vibration-p95
  match: { device: "dev-*", metric: vibration }
  where: "value >= 0 and value < 100"
  window: { type: tumbling, size: 1s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { p95: p95, peak: max }
  when: "p95 > 9.5"
  forward: [decisions]
# Readings per device (every metric) every 5 s.
- id: device-rate
  match: { device: "dev-*" }
  window: { type: tumbling, size: 5s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { n: count }
# Fleet-wide temperature: one group over all devices.
- id: fleet-temperature
  match: { device: "dev-*", metric: temperature }
  groupBy: []
  window: { type: tumbling, size: 10s }
  watermark: { maxOutOfOrder: 1s, idleTimeout: 10s }
  aggregates: { avg: avg, min: min, max: max }
  forward: [results]
# The latency probe: a window of one reading decides at once, whatever the watermark.
- id: probe-alarm
  match: { device: probe, metric: level }
  window: { type: count, size: 1 }
  aggregates: { level: max }
  when: "level > 50"
  forward: [decisions]
`;

/**
 * Issue 19's ten rules, all on temperature: five tumbling 1 s avg+max rules with a `when` each
 * (alarm levels), three sliding 10 s / 1 s avg+p95 rules, one session (gap 2 s), one count window
 * of 1,000 readings; and the probe's rule.
 */
const ISSUE19_RULES = `
${[80, 82, 84, 86, 88]
  .map(
    (level, i) => `- id: temp-1s-${i + 1}
  match: { device: "dev-*", metric: temperature }
  window: { type: tumbling, size: 1s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { avg: avg, max: max }
  when: "max > ${level}"
  forward: [decisions]`,
  )
  .join('\n')}
${['p95 > 84', 'avg > 80', null]
  .map(
    (when, i) => `- id: temp-sliding-${i + 1}
  match: { device: "dev-*", metric: temperature }
  window: { type: sliding, size: 10s, slide: 1s }
  watermark: { maxOutOfOrder: 1s }
  aggregates: { avg: avg, p95: p95 }${when === null ? '' : `\n  when: "${when}"\n  forward: [decisions]`}`,
  )
  .join('\n')}
- id: temp-session
  match: { device: "dev-*", metric: temperature }
  window: { type: session, gap: 2s }
  aggregates: { avg: avg, n: count }
- id: temp-count
  match: { device: "dev-*", metric: temperature }
  window: { type: count, size: 1000 }
  aggregates: { total: sum }
${RULES.slice(RULES.indexOf('# The latency probe'))}`;

interface Gateway {
  pid: number;
  brokerUrl: string;
  /** Rejects when the gateway exits before stop(). */
  died: Promise<never>;
  alive(): boolean;
  metrics(): Promise<Map<string, number>>;
  health(): Promise<{ upstreams: { id: string; backlog: number; state: string }[] }>;
  /** The msg of every log line (warn and above: the log level), counted. */
  warnings: Map<string, number>;
  stop(): Promise<void>;
}

/** The sum of a metric over all its label sets. */
function total(m: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

/** The label sets of a metric with a non-zero value, for notes: `reason="future_ts"=12`. */
function nonZero(m: Map<string, number>, name: string): string[] {
  return [...m]
    .filter(([k, v]) => k.startsWith(`${name}{`) && v > 0)
    .map(([k, v]) => `${k.slice(name.length + 1, -1)}=${v}`);
}

/** The bench config is checked with `tidegate validate` once, before the first gateway starts. */
let configValidated = false;

/**
 * Starts a gateway as the unit does; `nodeFlags` go after the unit's own (`--cpu-prof …` for
 * --profile).
 */
async function startGateway(
  base: string,
  id: string,
  upstreamUrl: string,
  pin: boolean,
  nodeFlags: readonly string[] = [],
): Promise<Gateway> {
  const dir = join(base, id);
  mkdirSync(dir);
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  writeFileSync(join(dir, 'rules.yaml'), ISSUE19 ? ISSUE19_RULES : RULES);
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(
    configFile,
    [
      `gateway: { id: ${id} }`,
      'log: { level: warn }',
      `api: { host: 127.0.0.1, port: ${apiPort}, rateLimit: 0 }`,
      `broker: { enabled: true, host: 127.0.0.1, port: ${brokerPort}, allowAnonymous: loopback, users: [] }`,
      'sources:',
      '  - { id: bench, type: mqtt, topics: [{ filter: "bench/{device}/{metric}", qos: 1, payload: auto }] }',
      `rules: ${JSON.stringify(join(dir, 'rules.yaml'))}`,
      'upstreams:',
      `  - { id: mosquitto, type: mqtt, url: "${upstreamUrl}", topic: "tidegate/{gateway}/{type}/{rule}" }`,
      `store: { path: ${JSON.stringify(join(dir, 'tidegate.db'))}, readings: true }`,
      '',
    ].join('\n'),
  );
  if (!configValidated) {
    const v = spawnSync(process.execPath, [CLI, 'validate', '--config', configFile], { encoding: 'utf8' });
    if (v.status !== 0) throw new Error(`the bench config does not validate:\n${v.stdout}${v.stderr}`);
    configValidated = true;
  }

  // Profiled: tsc's modules (the same code), so that the profile's parts are src/'s folders.
  const cli = PROFILING ? UNBUNDLED_CLI : CLI;
  const node = [process.execPath, ...UNIT.flags, ...nodeFlags, cli, 'run', '--config', configFile];
  const [cmd, ...argv] = (pin ? [TASKSET, '-c', '0', ...node] : node) as [string, ...string[]];
  const child = track(
    spawn(cmd, argv, {
      cwd: dir,
      env: unitEnvironment(UNIT, { TIDEGATE_TOKEN: '' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const tail = tailOf(child);
  const warnings = new Map<string, number>();
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { msg?: string };
      const msg = entry.msg ?? line;
      warnings.set(msg, (warnings.get(msg) ?? 0) + 1);
    } catch {
      // not a log line
    }
  });
  let stopping = false;
  const died = deathOf(child, `the gateway ${id}`, tail).catch((err: Error) => {
    if (stopping) return new Promise<never>(() => {});
    throw err;
  });
  died.catch(() => {}); // observed by the runs that race it
  const api = `http://127.0.0.1:${apiPort}`;

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`the gateway exited with ${child.exitCode}:\n${tail.join('\n')}`);
    if (Date.now() > deadline) throw new Error('the gateway was not healthy within 30 s');
    try {
      if ((await fetch(`${api}/api/v1/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  return {
    pid: child.pid as number,
    brokerUrl: `mqtt://127.0.0.1:${brokerPort}`,
    died,
    alive: () => child.exitCode === null && child.signalCode === null,
    warnings,
    metrics: async () => parseMetrics(await (await fetch(`${api}/metrics`)).text()),
    health: async () =>
      (await (await fetch(`${api}/api/v1/health`)).json()) as Awaited<ReturnType<Gateway['health']>>,
    async stop() {
      const crashed = child.exitCode !== null || child.signalCode !== null;
      stopping = true;
      await terminate(child, 10_000);
      // SPEC §7: SIGTERM flushes and exits 0 within 5 s.
      if (!crashed && child.exitCode !== 0)
        console.log(
          `note: gateway ${id} did not exit cleanly on SIGTERM: ${child.exitCode ?? child.signalCode}`,
        );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Decisions at the upstream

/** Per gateway id: the probe decisions that reached mosquitto (by seq) and their latencies. */
interface DecisionLog {
  seqs: Set<number>;
  latencies: number[];
  /** The probe reading's publish time (ms) of each latency, in the same order. */
  publishedAt: number[];
  duplicates: number;
}
const decisionLogs = new Map<string, DecisionLog>();

function newDecisionLog(gatewayId: string): DecisionLog {
  const log: DecisionLog = { seqs: new Set(), latencies: [], publishedAt: [], duplicates: 0 };
  decisionLogs.set(gatewayId, log);
  return log;
}

/**
 * Subscribes to the probe rule's decisions on mosquitto. A persistent session (clean: false), so
 * that with mosquitto's persistence the subscription and what is published while this client
 * reconnects survive a mosquitto restart. Latency = arrival here − the decision's `at`, which is
 * the probe reading's ts, which is its publish time.
 */
async function subscribeDecisions(url: string): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, {
    clientId: `e2e-decisions-${process.pid}`,
    clean: false,
    reconnectPeriod: 500,
  });
  client.on('message', (_topic, payload) => {
    const now = Date.now();
    const envelope = JSON.parse(payload.toString()) as { gateway: string; seq: number; body: { at: string } };
    const log = decisionLogs.get(envelope.gateway);
    if (!log) return;
    if (log.seqs.has(envelope.seq)) {
      log.duplicates++; // at-least-once: a batch retried after an outage
      return;
    }
    log.seqs.add(envelope.seq);
    const at = Date.parse(envelope.body.at);
    log.latencies.push(now - at);
    log.publishedAt.push(at);
  });
  client.on('error', () => {}); // reconnects by itself while mosquitto restarts
  await client.subscribeAsync('tidegate/+/decision/probe-alarm', { qos: 1 });
  return client;
}

/**
 * The probe's latencies: all of them, and those of the probes published from WARMUP_MS after the
 * first one on (the steady state, without the gateway's first second: JIT compilation, the first
 * commits making every series).
 */
function latencyOf(log: DecisionLog): Latency {
  const sorted = [...log.latencies].sort((a, b) => a - b);
  // Not Math.min(...): a soak of hours has more probes than a call takes arguments.
  let first = Number.POSITIVE_INFINITY;
  for (const at of log.publishedAt) if (at < first) first = at;
  const steady = log.latencies.filter((_, i) => (log.publishedAt[i] as number) >= first + WARMUP_MS);
  steady.sort((a, b) => a - b);
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
    steadyP99: quantile(steady, 0.99),
  };
}

interface Latency {
  p50: number;
  p99: number;
  max: number;
  /** p99 of the probes published WARMUP_MS after the first on. */
  steadyP99: number;
}

// ---------------------------------------------------------------------------------------------
// One load against one target

interface LoadOptions {
  seconds: number;
  /** readings/s; 0 = as fast as the target takes them. */
  rate: number;
  qos: 0 | 1;
  /** RSS sampling period. */
  sampleMs?: number;
  /** Run the load generator on these CPUs (taskset -c), to leave the gateway's core to it. */
  loadCpus?: string;
}

/** e2e-load.js's report. */
interface LoadResult {
  published: number;
  messages: number;
  probes: number;
  /** Publishing, then from the first publish to the last final PUBACK. */
  loadSeconds: number;
  seconds: number;
  complete: boolean;
  cpuSeconds: number;
  failures: string[];
}

interface Target {
  pid: number;
  url: string;
  died: Promise<never>;
  /** What the target counted: readings stored (the gateway) or messages (bare aedes). */
  unit: 'readings' | 'messages';
  received(): Promise<number>;
}

/** A gateway as a load target: it counts the readings it stored. */
function storedReadingsOf(gw: Gateway): Target {
  return {
    pid: gw.pid,
    url: gw.brokerUrl,
    died: gw.died,
    unit: 'readings',
    received: async () => total(await gw.metrics(), 'tidegate_readings_stored_total'),
  };
}

interface Figures {
  load: LoadResult;
  /** What the target counted once settled, and what it should have counted. */
  received: number;
  expected: number;
  noLoss: boolean;
  /** Readings published / seconds to the last acknowledgement. */
  rate: number;
  rssPeak: number;
  rssSteady: number;
  cpuPct: number;
  loadCpuPct: number;
  writtenBytes: number;
  /** Since the load started: ms → RSS MiB. */
  samples: { t: number; rss: number }[];
  /** From the load's start to its report, µs of CLOCK_MONOTONIC (the clock of a .cpuprofile). */
  window: { from: number; to: number };
}

/** µs of CLOCK_MONOTONIC, the clock V8's profiler stamps samples with on Linux. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function drive(target: Target, o: LoadOptions): Promise<Figures> {
  const load = [
    ...[process.execPath, LOAD, '--url', target.url],
    ...['--seconds', String(o.seconds), '--rate', String(o.rate), '--qos', String(o.qos)],
    ...['--connections', String(CONNECTIONS), '--per-message', String(PER_MESSAGE)],
    ...['--devices', String(DEVICES), '--probe-ms', String(PROBE_MS)],
    ...['--drain-seconds', String(DRAIN_SECONDS)],
    ...(LOAD_METRICS === null ? [] : ['--metrics', LOAD_METRICS.join(',')]),
  ];
  const [cmd, ...argv] = (o.loadCpus ? [TASKSET, '-c', o.loadCpus, ...load] : load) as [string, ...string[]];
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] }));
  const written0 = writeBytes(target.pid);
  let start = { t: Date.now(), cpu: cpuSeconds(target.pid), us: monotonicUs() };
  const samples: { t: number; rss: number }[] = [];
  const sampler = setInterval(() => {
    try {
      samples.push({ t: Date.now() - start.t, rss: rssMiB(target.pid) });
    } catch {
      // the target is gone: target.died reports it
    }
  }, o.sampleMs ?? 250);
  const report = new Promise<LoadResult>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let msg: { event?: string; message?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      if (msg.event === 'started') {
        start = { t: Date.now(), cpu: cpuSeconds(target.pid), us: monotonicUs() };
        samples.length = 0;
      } else if (msg.event === 'done') resolve(msg as unknown as LoadResult);
      else if (msg.event === 'error') reject(new Error(`the load generator failed: ${msg.message}`));
    });
    child.once('exit', (code) =>
      reject(new Error(`the load generator exited with ${code} without a report`)),
    );
  });
  try {
    const load = await withTimeout(
      Promise.race([report, target.died]),
      (o.seconds + DRAIN_SECONDS + 30) * 1000,
      'the load generator did not finish in time',
    );
    const end = { t: Date.now(), cpu: cpuSeconds(target.pid), us: monotonicUs() };
    clearInterval(sampler);
    const expected = target.unit === 'readings' ? load.published : load.messages;
    // QoS 1 acknowledgements already mean "committed"; this only waits out anything slower.
    const settled = await Promise.race([until(target.received, (n) => n >= expected, 10_000), target.died]);
    const wall = (end.t - start.t) / 1000;
    const half = (end.t - start.t) / 2;
    return {
      load,
      received: settled.value,
      expected,
      noLoss: settled.value === expected && load.complete && load.failures.length === 0,
      rate: load.published / load.seconds,
      rssPeak: peakRssMiB(target.pid),
      rssSteady: median(samples.filter((s) => s.t >= half).map((s) => s.rss)),
      cpuPct: ((end.cpu - start.cpu) / wall) * 100,
      loadCpuPct: (load.cpuSeconds / load.seconds) * 100,
      writtenBytes: writeBytes(target.pid) - written0,
      samples,
      window: { from: start.us, to: end.us },
    };
  } catch (err) {
    const last = samples.at(-1);
    if (last) {
      (err as Error).message +=
        ` (${fixed(last.t / 1000, 1)} s into the load; RSS then ${fixed(last.rss, 1)} MiB)`;
    }
    throw err;
  } finally {
    clearInterval(sampler);
    await terminate(child);
  }
}

// ---------------------------------------------------------------------------------------------
// Runs, ceilings, report

interface GatewayRun {
  label: string;
  /** Null when the gateway died during the run (the first note says how). */
  figures: Figures | null;
  latency: Latency;
  /** What the rules did (outputsOf). */
  outputs: string;
  notes: string[];
}

async function gatewayRun(
  base: string,
  mosquitto: Mosquitto,
  label: string,
  id: string,
  o: LoadOptions,
  pin = false,
): Promise<GatewayRun> {
  progress(`${label}: ${o.seconds} s`);
  const gw = await startGateway(base, id, mosquitto.url, pin);
  const log = newDecisionLog(id);
  try {
    const figures = await drive(storedReadingsOf(gw), o);
    await until(
      async () => log.seqs.size,
      (n) => n >= figures.load.probes,
      10_000,
    );
    const m = await gw.metrics();
    return {
      label,
      figures,
      latency: latencyOf(log),
      outputs: outputsOf(m),
      notes: notesOf(label, figures, m, log),
    };
  } catch (err) {
    if (gw.alive()) throw err;
    // A crash is a finding: report it and go on with the other runs.
    const notes = [`${label}: ${(err as Error).message}`];
    return { label, figures: null, latency: latencyOf(log), outputs: '', notes };
  } finally {
    await gw.stop();
  }
}

/** What went wrong in a run, in words: loss, rejections, missing decisions, load failures. */
function notesOf(label: string, f: Figures, m: Map<string, number>, log: DecisionLog): string[] {
  const notes: string[] = [];
  if (f.received !== f.expected) {
    const why = [
      ...nonZero(m, 'tidegate_readings_rejected_total'),
      `duplicates=${total(m, 'tidegate_readings_duplicate_total')}`,
      `pending=${total(m, 'tidegate_store_pending_readings')}`,
    ];
    notes.push(`${label}: ${f.expected - f.received} readings published but not stored (${why.join(', ')})`);
  }
  notes.push(...loadNotes(label, f));
  if (log.seqs.size < f.load.probes)
    notes.push(`${label}: ${f.load.probes} probe readings but ${log.seqs.size} decisions reached mosquitto`);
  const dropped = total(m, 'tidegate_outbox_dropped_total');
  if (dropped > 0) notes.push(`${label}: tidegate_outbox_dropped_total = ${dropped}`);
  return notes;
}

/** The load generator's own trouble: failures, unacknowledged final publishes, a saturated core. */
function loadNotes(label: string, f: Figures): string[] {
  const notes = f.load.failures.map((failure) => `${label}: load generator: ${failure}`);
  if (!f.load.complete) {
    notes.push(
      `${label}: the final QoS 1 publishes were not all acknowledged (within ${DRAIN_SECONDS} s, or a connection was lost)`,
    );
  }
  if (f.loadCpuPct >= 90) {
    notes.push(
      `${label}: the load generator used ${fixed(f.loadCpuPct)} % of a core: a lower bound, set by the load generator`,
    );
  }
  return notes;
}

/** What the rules did in a run, from /metrics. */
function outputsOf(m: Map<string, number>): string {
  return [
    `rules: windows closed ${int(total(m, 'tidegate_windows_closed_total'))}`,
    `revisions ${int(total(m, 'tidegate_result_revisions_total'))}`,
    `decisions ${int(total(m, 'tidegate_decisions_total'))}`,
    `late dropped ${int(total(m, 'tidegate_late_dropped_total'))}` +
      (total(m, 'tidegate_late_dropped_total') > 0
        ? ` (${nonZero(m, 'tidegate_late_dropped_total').join(' ')})`
        : ''),
    `forwarded upstream ${int(total(m, 'tidegate_upstream_sent_total'))}`,
  ].join(', ');
}

interface AedesRun {
  label: string;
  figures: Figures;
}

async function bareAedesRun(label: string, o: LoadOptions): Promise<AedesRun> {
  progress(`${label}: ${o.seconds} s`);
  const child = track(
    spawn(process.execPath, [LIMITS, 'aedes'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const died = deathOf(child, 'the bare aedes broker', []);
  died.catch(() => {});
  try {
    const port = await withTimeout(
      Promise.race([
        new Promise<number>((r) => child.once('message', (m) => r((m as { port: number }).port))),
        died,
      ]),
      10_000,
      'the bare aedes broker did not start',
    );
    const received = () =>
      new Promise<number>((resolve) => {
        child.once('message', (m) => resolve((m as { messages: number }).messages));
        child.send('count');
      });
    const figures = await drive(
      { pid: child.pid as number, url: `mqtt://127.0.0.1:${port}`, died, unit: 'messages', received },
      o,
    );
    return { label, figures };
  } finally {
    child.removeAllListeners('exit');
    await terminate(child);
  }
}

interface SqliteRun {
  layout: 'time' | 'rowid';
  readings: number;
  seconds: number;
  writeBytes: number;
  cpuSeconds: number;
}

async function sqliteRun(base: string, layout: SqliteRun['layout']): Promise<SqliteRun> {
  progress(`raw SQLite inserts, ${layout} layout: ${SECONDS} s`);
  const path = join(base, 'sqlite.db');
  const child = track(
    spawn(
      process.execPath,
      [
        ...[LIMITS, 'sqlite', '--layout', layout, '--path', path, '--seconds', String(SECONDS)],
        ...['--per-message', String(PER_MESSAGE)],
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    ),
  );
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const code = await withTimeout(
    new Promise<number | null>((r) => child.once('exit', (c) => r(c))),
    (SECONDS + 60) * 1000,
    'the SQLite insert benchmark did not finish in time',
  );
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
  if (code !== 0) throw new Error(`the SQLite insert benchmark exited with ${code}`);
  return { layout, ...(JSON.parse(out.trim()) as Omit<SqliteRun, 'layout'>) };
}

function progress(what: string): void {
  console.error(`e2e: ${what} …`);
}

/** A table with a left-aligned first column and right-aligned others. */
function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

function loadShape(): string {
  const example = `{"value":1013.2,"ts":${Date.now()}}`.length * PER_MESSAGE + PER_MESSAGE + 1;
  return (
    `load (separate process, mqtt.js): ${CONNECTIONS} connections + 1 probe connection; each message a JSON ` +
    `array of ${PER_MESSAGE} {value, ts} readings of one series (~${(example / 1024).toFixed(1)} KiB), ` +
    `${DEVICES} devices × ${LOAD_METRICS?.length ?? METRICS_PER_DEVICE} metrics, event time = publish time; ` +
    `probe: 1 reading every ${PROBE_MS} ms ` +
    `→ rule probe-alarm (count window of 1) → decision → mosquitto`
  );
}

/** One repetition's figures that the medians are read from: each gateway run's rate, each ratio. */
interface RepetitionFigures {
  rates: Map<string, number>;
  ratios: Map<string, number>;
}

/** The runs and ceilings REPEAT times in turn, then the median and range of each rate and ratio. */
async function benchmarks(base: string, mosquitto: Mosquitto): Promise<void> {
  const all: RepetitionFigures[] = [];
  for (let k = 0; k < REPEAT; k++) {
    if (REPEAT > 1) console.log(`\n— repetition ${k + 1} of ${REPEAT}`);
    all.push(await benchmark(base, mosquitto));
  }
  if (REPEAT === 1) return;
  const summary = (pick: (f: RepetitionFigures) => Map<string, number>, digits: number) =>
    [...pick(all[0] as RepetitionFigures).keys()].map((what) => {
      // A crashed run has no figure: the median is of the others, and the row says how many.
      const xs = all
        .map((f) => pick(f).get(what) ?? Number.NaN)
        .filter(Number.isFinite)
        .sort((x, y) => x - y);
      const show = (x: number) => (digits === 0 ? int(x) : fixed(x, digits));
      const missing = all.length - xs.length;
      return [
        what,
        show(median(xs)),
        `${show(xs[0] ?? Number.NaN)}–${show(xs[xs.length - 1] ?? Number.NaN)}` +
          (missing > 0 ? ` (${missing} of ${all.length} without a figure)` : ''),
      ];
    });
  console.log(`\nover ${REPEAT} repetitions`);
  printTable(
    ['gateway run', 'median readings/s', 'range'],
    summary((f) => f.rates, 0),
  );
  const ratios = summary((f) => f.ratios, 2);
  if (ratios.length > 0) {
    console.log('');
    printTable(['gateway ÷ ceiling', 'median', 'range'], ratios);
  }
}

async function benchmark(base: string, mosquitto: Mosquitto): Promise<RepetitionFigures> {
  const max0: LoadOptions = { seconds: SECONDS, rate: 0, qos: 0 };
  const max1: LoadOptions = { seconds: SECONDS, rate: 0, qos: 1 };
  const fixedRate: LoadOptions = { ...max0, rate: RATE };
  const pinnable = existsSync(TASKSET);
  const run = (key: string, label: string, id: string, o: LoadOptions, pin = false) =>
    RUNS.has(key) ? gatewayRun(base, mosquitto, label, id, o, pin) : Promise.resolve(null);
  const a = await run('a', '(a) max, QoS 0', 'e2e-a', max0);
  const b = await run('b', '(b) max, QoS 1', 'e2e-b', max1);
  const c = await run('c', `(c) ${int(RATE)}/s, QoS 0`, 'e2e-c', fixedRate);
  // (d): the gateway on CPU 0 and the load generator on the others, so that the core is the gateway's.
  const others = cpus().length > 1 ? { loadCpus: `1-${cpus().length - 1}` } : {};
  const d = pinnable ? await run('d', '(d) max, QoS 0, 1 core', 'e2e-d', { ...max0, ...others }, true) : null;
  const runs = [a, b, c, d].filter((r): r is GatewayRun => r !== null);
  const figures: RepetitionFigures = { rates: new Map(), ratios: new Map() };
  for (const r of runs) figures.rates.set(r.label, r.figures ? r.figures.rate : Number.NaN);
  const ceilings = RUNS.has('ceilings');
  const aedes0 = ceilings ? await bareAedesRun('bare aedes, QoS 0', max0) : null;
  const aedes1 = ceilings ? await bareAedesRun('bare aedes, QoS 1', max1) : null;
  const sqlite = ceilings ? [await sqliteRun(base, 'time'), await sqliteRun(base, 'rowid')] : [];
  const sqliteRate = (l: SqliteRun) => l.readings / l.seconds;

  console.log('');
  printTable(
    ['gateway run', 'readings/s', 'published', 'stored', 'no loss', 'p50 ms', 'p99 ms', 'p99 steady'].concat([
      'RSS peak',
      'steady',
      'CPU gw',
      'CPU load',
      'disk B/rdg',
    ]),
    runs.map(({ label, figures: f, latency }) =>
      f === null
        ? [label, 'CRASHED', ...Array<string>(11).fill('-')]
        : [
            label,
            int(f.rate),
            int(f.expected),
            int(f.received),
            f.noLoss ? 'yes' : 'NO',
            int(latency.p50),
            int(latency.p99),
            int(latency.steadyP99),
            `${fixed(f.rssPeak, 1)} MiB`,
            `${fixed(f.rssSteady, 1)} MiB`,
            `${fixed(f.cpuPct)} %`,
            `${fixed(f.loadCpuPct)} %`,
            fixed(f.writtenBytes / f.received),
          ],
    ),
  );
  if (!pinnable && RUNS.has('d')) console.log(`(d) skipped: ${TASKSET} not found`);
  for (const { label, figures: f, outputs } of runs) {
    if (!f) continue;
    const drain = f.load.seconds - f.load.loadSeconds;
    console.log(
      `${label.slice(0, 3)} published for ${fixed(f.load.loadSeconds, 1)} s, then ${fixed(drain, 1)} s to the last ack; ${outputs}`,
    );
  }
  console.log(
    'readings/s: published ÷ time to the last acknowledgement; p50/p99: probe publish → its decision at mosquitto ' +
      `(p99 steady: of the probes from ${WARMUP_MS / 1000} s after the first on); ` +
      'CPU: % of one core (gw: the gateway, load: the load generator); disk: /proc write_bytes ÷ stored readings',
  );

  if (aedes0 === null || aedes1 === null) {
    const notes = runs.flatMap((r) => r.notes);
    if (notes.length > 0) console.log(`\n${notes.map((n) => `note: ${n}`).join('\n')}`);
    console.log('\nceilings and ratios not measured (--runs without ceilings)');
    return figures;
  }
  console.log('');
  printTable(
    ['ceiling', 'readings/s', 'published', 'counted', 'no loss', 'RSS peak', 'CPU', 'CPU load', 'disk B/rdg'],
    [
      ...[aedes0, aedes1].map(({ label, figures: f }) => [
        label,
        int(f.rate),
        `${int(f.expected)} msg`,
        `${int(f.received)} msg`,
        f.noLoss ? 'yes' : 'NO',
        `${fixed(f.rssPeak, 1)} MiB`,
        `${fixed(f.cpuPct)} %`,
        `${fixed(f.loadCpuPct)} %`,
        '',
      ]),
      ...sqlite.map((l) => [
        `raw SQLite, ${l.layout} layout`,
        int(sqliteRate(l)),
        int(l.readings),
        int(l.readings),
        'yes',
        '',
        `${fixed((l.cpuSeconds / l.seconds) * 100)} %`,
        '',
        fixed(l.writeBytes / l.readings),
      ]),
    ],
  );
  console.log(
    'bare aedes: the same load into aedes that only counts messages. raw SQLite: INSERT OR IGNORE, 5000 rows per ' +
      `transaction, runs of ${PER_MESSAGE} readings per series, WAL, synchronous NORMAL, one process; time layout: ` +
      'WITHOUT ROWID, primary key (ts, series_id, value) (migration 5); rowid layout: rowid table with unique ' +
      '(series_id, ts, value) and ts indexes (migrations 1–4)',
  );

  console.log('');
  const rows: string[][] = [];
  const ratio = (what: string, run: GatewayRun | null, limit: number) => {
    if (run === null) return;
    const r = run.figures ? run.figures.rate / limit : Number.NaN;
    rows.push([what, fixed(r, 2), `${fixed(r * 100)} %`]);
    figures.ratios.set(what, r);
  };
  ratio('(a) ÷ bare aedes QoS 0', a, aedes0.figures.rate);
  for (const l of sqlite) ratio(`(a) ÷ raw SQLite, ${l.layout} layout`, a, sqliteRate(l));
  ratio('(b) ÷ bare aedes QoS 1', b, aedes1.figures.rate);
  for (const l of sqlite) ratio(`(b) ÷ raw SQLite, ${l.layout} layout`, b, sqliteRate(l));
  ratio(`(c) ÷ its target ${int(RATE)}/s`, c, RATE);
  if (d) {
    ratio('(d) ÷ bare aedes QoS 0', d, aedes0.figures.rate);
    if (a?.figures) ratio('(d) ÷ (a)', d, a.figures.rate);
  }
  printTable(['gateway ÷ ceiling', 'ratio', ''], rows);

  const notes = runs.flatMap((r) => r.notes);
  for (const { label, figures: f } of [aedes0, aedes1]) {
    if (f.received !== f.expected)
      notes.push(`${label}: ${f.expected} messages published, ${f.received} counted`);
    notes.push(...loadNotes(label, f));
  }
  if (notes.length > 0) console.log(`\n${notes.map((n) => `note: ${n}`).join('\n')}`);
  return figures;
}

// ---------------------------------------------------------------------------------------------
// Profile

/**
 * (a) and (b) with each gateway under `node --cpu-prof`: the profile is written when the gateway
 * exits (SIGTERM), then summarized over the load's window, per reading published.
 */
async function profileRuns(base: string, mosquitto: Mosquitto, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const runs = [
    { label: '(a) max, QoS 0', id: 'e2e-a', o: { seconds: SECONDS, rate: 0, qos: 0 } },
    { label: '(b) max, QoS 1', id: 'e2e-b', o: { seconds: SECONDS, rate: 0, qos: 1 } },
  ] as const;
  for (const { label, id, o } of runs) {
    const name = `${id}-qos${o.qos}-${PER_MESSAGE}pm.cpuprofile`;
    const file = join(dir, name);
    rmSync(file, { force: true });
    progress(`${label}, profiled: ${o.seconds} s`);
    const flags = ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', name];
    const gw = await startGateway(base, id, mosquitto.url, false, flags);
    let f: Figures;
    try {
      f = await drive(storedReadingsOf(gw), o);
    } finally {
      await gw.stop(); // the profile is written as the process exits
    }
    if (!existsSync(file)) throw new Error(`${label}: the gateway exited without writing ${file}`);
    const summary = summarize(readProfile(file), f.window);
    console.log('');
    console.log(
      `${label}, ${PER_MESSAGE} reading(s) per message: ${int(f.rate)} readings/s under the profiler ` +
        `(${int(f.load.published)} readings in ${fixed(f.load.seconds, 1)} s, ${f.noLoss ? 'no loss' : 'LOSS'}), ` +
        `CPU ${fixed(f.cpuPct)} % of a core`,
    );
    console.log(
      `again: node build/bench/cpu-profile.js ${file} --readings ${f.load.published} ` +
        `--from ${f.window.from} --to ${f.window.to}`,
    );
    console.log(formatSummary(summary, { readings: f.load.published, top: 20 }));
  }
  console.log(
    '\nself time: time in the function itself, not in what it calls. V8 gives native code no frame: "native, from X" ' +
      'are V8 builtins called from X; "better-sqlite3 native" is the time of store/ and better-sqlite3 lines that call ' +
      'a statement (→ SQLite). ns/reading: wall time of the load window ÷ readings published (under the profiler).',
  );
}

// ---------------------------------------------------------------------------------------------
// Soak

/** Sleeps `ms`, or less once `stop()` is true (checked every 250 ms). */
async function nap(ms: number, stop: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!stop() && Date.now() < end) await sleep(Math.min(250, end - Date.now()));
}

const clock = (ms: number) =>
  `${Math.floor(ms / 60_000)}:${String(Math.floor((ms % 60_000) / 1000)).padStart(2, '0')}`;

async function soak(base: string, mosquitto: Mosquitto, durationMs: number): Promise<void> {
  const seconds = durationMs / 1000;
  console.log(
    `soak: ${clock(durationMs)} at ${int(RATE)} readings/s, QoS 1; mosquitto (the upstream) stopped for ` +
      `${SOAK_DOWN_MS / 1000} s every ${SOAK_UP_MS[0] / 1000}–${SOAK_UP_MS[1] / 1000} s`,
  );
  progress(`soak: ${clock(durationMs)}`);
  const gw = await startGateway(base, 'e2e-soak', mosquitto.url, false);
  const log = newDecisionLog('e2e-soak');
  const outages: { at: number; ms: number }[] = [];
  let loading = true;
  const t0 = Date.now();
  let flapError: string | null = null;
  const flapper = (async () => {
    while (loading) {
      await nap(SOAK_UP_MS[0] + Math.random() * (SOAK_UP_MS[1] - SOAK_UP_MS[0]), () => !loading);
      if (!loading) break;
      const at = Date.now();
      await mosquitto.stop();
      await nap(SOAK_DOWN_MS, () => !loading);
      await mosquitto.restart();
      outages.push({ at: at - t0, ms: Date.now() - at });
    }
  })().catch((err: Error) => {
    flapError = err.message; // mosquitto did not come back: reported below, the soak goes on
  });
  // The upstream backlog over time, to see each outage's backlog drain.
  const backlog: { t: number; rows: number }[] = [];
  const poller = setInterval(() => {
    gw.health().then(
      (h) => backlog.push({ t: Date.now() - t0, rows: h.upstreams.reduce((n, u) => n + u.backlog, 0) }),
      () => {}, // the gateway is gone: the load reports it
    );
  }, 500);
  try {
    const f = await drive(storedReadingsOf(gw), { seconds, rate: RATE, qos: 1, sampleMs: SOAK_SAMPLE_MS });
    const loadEnd = Date.now();
    clearInterval(poller);
    loading = false;
    await flapper; // an outage under way ends now
    const upAgainMs = Date.now() - loadEnd;
    const drained = await Promise.race([
      until(gw.health, (h) => h.upstreams.every((u) => u.backlog === 0), 60_000, 250),
      gw.died,
    ]);
    const drainMs = Date.now() - loadEnd;
    await until(
      async () => log.seqs.size,
      (n) => n >= f.load.probes,
      10_000,
    );
    const m = await gw.metrics();

    console.log('');
    printTable(
      ['mosquitto down at', 'for', 'backlog peak', 'drained after restart'],
      outages.map((o) => {
        const back = o.at + o.ms;
        const peak = Math.max(
          0,
          ...backlog.filter((b) => b.t >= o.at && b.t < back + 60_000).map((b) => b.rows),
        );
        const zero = backlog.find((b) => b.t >= back && b.rows === 0);
        return [
          clock(o.at),
          `${fixed(o.ms / 1000, 1)} s`,
          `${int(peak)} rows`,
          zero ? `${fixed((zero.t - back) / 1000, 1)} s` : 'not seen',
        ];
      }),
    );
    const step = Math.max(15_000, Math.ceil(durationMs / 12 / 15_000) * 15_000);
    const rows: string[][] = [];
    for (let at = step; at <= durationMs + step / 2; at += step) {
      const upTo = f.samples.filter((s) => s.t <= at);
      const last = upTo.at(-1);
      if (last) rows.push([clock(at), fixed(last.rss, 1)]);
    }
    console.log('');
    printTable(['load time', 'gateway RSS MiB'], rows);
    const third = (k: number) =>
      median(
        f.samples
          .filter((s) => s.t >= (k * durationMs) / 3 && s.t < ((k + 1) * durationMs) / 3)
          .map((s) => s.rss),
      );
    const [second, last] = [third(1), third(2)];
    const growth = last - second;
    console.log(
      `RSS median, second third → last third: ${fixed(second, 1)} → ${fixed(last, 1)} MiB ` +
        `(${growth >= 0 ? '+' : ''}${fixed(growth, 1)} MiB, ${fixed((growth / second) * 100, 1)} %): ` +
        `${growth > Math.max(5, second * 0.05) ? 'GREW' : 'flat'}; peak ${fixed(f.rssPeak, 1)} MiB, CPU ${fixed(f.cpuPct)} % of a core`,
    );
    console.log('');
    const dropped = total(m, 'tidegate_outbox_dropped_total');
    console.log(
      `readings: ${int(f.load.published)} published, ${int(f.received)} stored: ${f.noLoss ? 'no loss' : 'LOSS'} ` +
        `(achieved ${int(f.rate)}/s)`,
    );
    console.log(
      `outbox: tidegate_outbox_dropped_total ${dropped} (${dropped === 0 ? 'ok' : 'MUST BE 0'}); upstream sent ` +
        `${int(total(m, 'tidegate_upstream_sent_total'))}, delivery errors ${int(total(m, 'tidegate_upstream_errors_total'))}`,
    );
    console.log(
      drained.reached
        ? `backlog: drained to 0 ${fixed(drainMs / 1000, 1)} s after the load stopped` +
            (upAgainMs > 1000 ? ` (mosquitto was down until ${fixed(upAgainMs / 1000, 1)} s after it)` : '')
        : `backlog: NOT drained within 60 s: ${drained.value.upstreams.map((u) => `${u.id} ${u.backlog} rows, ${u.state}`).join('; ')}`,
    );
    const lat = latencyOf(log);
    console.log(
      `decisions: ${int(f.load.probes)} probe readings, ${int(log.seqs.size)} decisions at mosquitto ` +
        `(${log.duplicates} duplicates dropped); latency p50 ${int(lat.p50)} ms, p99 ${int(lat.p99)} ms, max ${int(lat.max)} ms (outages included)`,
    );
    const warnings = [...gw.warnings].sort((x, y) => y[1] - x[1]).slice(0, 6);
    if (warnings.length > 0)
      console.log(`gateway log (warn+): ${warnings.map(([msg, n]) => `"${msg}" ×${n}`).join(', ')}`);
    for (const note of notesOf('soak', f, m, log)) console.log(`note: ${note}`);
    if (flapError) console.log(`note: restarting mosquitto failed: ${flapError}`);
  } finally {
    clearInterval(poller);
    loading = false;
    await flapper;
    await gw.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (args.help) {
    console.log(USAGE);
    return;
  }
  for (const [file, hint] of [
    [CLI, 'run npm run build first'],
    [LOAD, 'run npm run build:test first'],
    [MOSQUITTO, 'apt install mosquitto'],
  ] as const) {
    if (!existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
  }
  const soakMs = args.soak === undefined ? null : parseDuration(args.soak);
  console.log(`e2e: ${machine()}`);
  // On disk, not tmpfs: write_bytes counts only what goes to a block device.
  const base = mkdtempSync(join(existsSync('/var/tmp') ? '/var/tmp' : process.cwd(), 'tidegate-e2e-'));
  cleanups.push(() => rmSync(base, { recursive: true, force: true }));
  const mosquitto = await startMosquitto({ persistence: soakMs !== null });
  cleanups.push(() => mosquitto.close());
  const version = spawnSync(MOSQUITTO, ['-h'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? 'mosquitto';
  const subscriber = await subscribeDecisions(mosquitto.url);
  cleanups.push(() => subscriber.endAsync(true));
  console.log(
    `gateway (as systemd/tidegate.service): ${describeUnitCommand(UNIT)}, log warn, ` +
      (ISSUE19
        ? "issue 19's 10 rules on temperature (5 tumbling 1 s avg+max with a when, 3 sliding 10 s / 1 s avg+p95, session gap 2 s, count 1,000 sum)"
        : '10 rules (tumbling, sliding, session, count; avg/min/max/count/p95)') +
      `, raw readings stored in ${base} (disk); upstream: ${version.trim()} (QoS 1)`,
  );
  console.log(loadShape());
  if (soakMs !== null) await soak(base, mosquitto, soakMs);
  else if (args.profile !== undefined) await profileRuns(base, mosquitto, args.profile);
  else await benchmarks(base, mosquitto);
}

main()
  .catch((err: unknown) => {
    console.error(`e2e: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
