import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { freePort } from '../test/helpers/net.js';
import {
  CLI,
  cpuSeconds,
  describeUnitCommand,
  rssMiB,
  unitEnvironment,
  unitNodeCommand,
  writeBytes,
} from './gateway-process.js';
import { machine } from './machine.js';

/**
 * The gateway's footprint as a Pi would see it: `node dist/cli.js run` as a child process with an
 * embedded broker and API on free 127.0.0.1 ports, no simulator, the store in a temp dir on disk,
 * and the node flags and environment of systemd/tidegate.service (read from the unit file).
 * Measures cold start to healthy, RSS idle, and under 10 k readings/s published by an MQTT load
 * generator in this process RSS, CPU and bytes written to disk per stored reading, for two shapes
 * of load, each on a fresh gateway and store:
 * - batched: 100 devices each send, once a second, their last second of 100 Hz samples in one
 *   message (100 readings), so that every commit's readings interleave in event time with those of
 *   the commits before it — the costly case for a store clustered by time;
 * - one by one: 1,000 devices each send one reading per message, 10 a second — 10,000 messages/s
 *   and as many series, the costly case for the broker and per-series state.
 * Load runs for 60 s by default: long enough for several WAL checkpoints, whose bytes count.
 * Bounded (about 3 minutes), talks only to 127.0.0.1, cleans up after itself.
 */
const RATE = Number(process.env['FOOTPRINT_RATE'] ?? 10_000); // readings/s
const LOAD_SECONDS = Number(process.env['FOOTPRINT_SECONDS'] ?? 60);
/** RSS right after the start, and once V8's memory reducer has run (8 s after the last GC). */
const IDLE_EARLY_MS = 4_000;
const IDLE_SETTLED_MS = 15_000;
const TICK_MS = 10;

interface Shape {
  name: string;
  devices: number;
  /** Readings per message (ingest.maxMetricsPerMessage is 256), `spacing` ms apart in event time. */
  perMessage: number;
  spacing: number;
}

const SHAPES: Shape[] = [
  { name: 'batched (100 devices × 100 readings per message)', devices: 100, perMessage: 100, spacing: 10 },
  { name: 'one by one (1,000 devices × 1 reading per message)', devices: 1000, perMessage: 1, spacing: 1 },
];

/**
 * Issue 19's memory targets, with the store writer's worker thread (its isolate and connection
 * cost ~10 MiB): the first ones, 60 MB idle and 100 MB under load, were set without it.
 */
const TARGETS = { idleMiB: 75, loadMiB: 110, coldStartMs: 1_000, bytesPerReading: 150 };

async function storedReadings(apiPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
  const m = /^tidegate_readings_stored_total(?:\{[^}]*\})? (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitHealthy(apiPort: number, child: ChildProcess, started: bigint): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1/health`);
      if (res.ok) return Number(process.hrtime.bigint() - started) / 1e6;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the gateway was not healthy within 30 s');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function row(label: string, value: string, target: string, ok: boolean): void {
  console.log(
    `${label.padEnd(34)} ${value.padStart(12)}   target ${target.padEnd(10)} ${ok ? 'ok' : 'MISSED'}`,
  );
}

interface Running {
  child: ChildProcess;
  pid: number;
  apiPort: number;
  brokerPort: number;
  coldStartMs: number;
  dir: string;
}

async function startGateway(unit: ReturnType<typeof unitNodeCommand>): Promise<Running> {
  // On disk, not tmpfs: write_bytes counts only what goes to a block device.
  const base = existsSync('/var/tmp') ? '/var/tmp' : undefined;
  const dir = mkdtempSync(join(base ?? process.cwd(), 'tidegate-footprint-'));
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(
    configFile,
    [
      'gateway: { id: footprint }',
      'log: { level: warn }',
      `api: { host: 127.0.0.1, port: ${apiPort} }`,
      `broker: { enabled: true, host: 127.0.0.1, port: ${brokerPort}, allowAnonymous: loopback, users: [] }`,
      'sources:',
      '  - { id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}", qos: 0, payload: auto }] }',
      'rules: []',
      'upstreams: []',
      `store: { path: ${JSON.stringify(join(dir, 'tidegate.db'))} }`,
      '',
    ].join('\n'),
  );
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...unit.flags, CLI, 'run', '--config', configFile], {
    cwd: dir,
    env: unitEnvironment(unit, { TIDEGATE_TOKEN: '' }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    const coldStartMs = await waitHealthy(apiPort, child, started);
    return { child, pid: child.pid as number, apiPort, brokerPort, coldStartMs, dir };
  } catch (err) {
    await stopGateway({ child, dir });
    throw err;
  }
}

async function stopGateway(g: { child: ChildProcess; dir: string }): Promise<void> {
  g.child.kill('SIGTERM');
  await new Promise((r) => {
    if (g.child.exitCode !== null) r(null);
    else g.child.once('exit', r);
    setTimeout(() => g.child.kill('SIGKILL'), 6_000).unref();
  });
  rmSync(g.dir, { recursive: true, force: true });
}

interface LoadFigures {
  published: number;
  stored: number;
  seconds: number;
  peakMiB: number;
  cpuShare: number;
  bytesPerReading: number;
}

/** Publishes `shape` at RATE readings/s for LOAD_SECONDS, event times following the wall clock. */
async function load(g: Running, shape: Shape): Promise<LoadFigures> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${g.brokerPort}`, { clientId: 'footprint-load' });
  try {
    const storedBefore = await storedReadings(g.apiPort);
    const writtenBefore = writeBytes(g.pid);
    const cpuBefore = cpuSeconds(g.pid);
    const t0 = Date.now();
    let published = 0;
    let messages = 0;
    let peak = rssMiB(g.pid);
    /** Per device, the event time after its last reading sent: no series repeats a ts. */
    const next = new Array<number>(shape.devices).fill(0);
    const perTick = Math.max(1, Math.round((RATE * TICK_MS) / 1000 / shape.perMessage));
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = Date.now();
        const elapsed = now - t0;
        if (elapsed >= LOAD_SECONDS * 1000) {
          clearInterval(timer);
          resolve();
          return;
        }
        // Keep to the rate even when a tick comes late.
        const due = Math.floor((elapsed / 1000) * RATE);
        for (let m = 0; m < perTick * 4 && published < due; m++) {
          const d = messages++ % shape.devices;
          // The samples of the last perMessage × spacing ms, up to now.
          let ts = Math.max(now - shape.perMessage * shape.spacing, next[d] as number);
          const items = new Array(shape.perMessage);
          for (let i = 0; i < shape.perMessage; i++, ts += shape.spacing)
            items[i] = { value: Math.round(Math.sin(ts / 1000 + d) * 1000) / 10, ts };
          next[d] = ts;
          client.publish(`sensors/dev-${d}/temperature`, JSON.stringify(items), { qos: 0 });
          published += shape.perMessage;
        }
        peak = Math.max(peak, rssMiB(g.pid));
      }, TICK_MS);
    });
    const seconds = (Date.now() - t0) / 1000;
    const cpu = cpuSeconds(g.pid) - cpuBefore;
    await sleep(1_000); // the last group commit
    peak = Math.max(peak, rssMiB(g.pid));
    const stored = (await storedReadings(g.apiPort)) - storedBefore;
    const written = writeBytes(g.pid) - writtenBefore;
    return {
      published,
      stored,
      seconds,
      peakMiB: peak,
      cpuShare: cpu / seconds,
      bytesPerReading: stored > 0 ? written / stored : Number.NaN,
    };
  } finally {
    await client.endAsync().catch(() => {});
  }
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  console.log(`footprint: ${machine()}`);
  const unit = unitNodeCommand();
  console.log(`as systemd/tidegate.service: ${describeUnitCommand(unit)}`);
  for (const [i, shape] of SHAPES.entries()) {
    const g = await startGateway(unit);
    try {
      if (i === 0) {
        await sleep(IDLE_EARLY_MS);
        const idleEarly = rssMiB(g.pid);
        await sleep(IDLE_SETTLED_MS - IDLE_EARLY_MS);
        const idle = rssMiB(g.pid);
        row(
          'cold start to healthy',
          `${g.coldStartMs.toFixed(0)} ms`,
          `≤ ${TARGETS.coldStartMs} ms`,
          g.coldStartMs <= TARGETS.coldStartMs,
        );
        console.log(
          `RSS ${IDLE_EARLY_MS / 1000} s after healthy (startup garbage not yet collected): ${idleEarly.toFixed(1)} MiB`,
        );
        row(
          `RSS idle (${IDLE_SETTLED_MS / 1000} s after healthy)`,
          `${idle.toFixed(1)} MiB`,
          `≤ ${TARGETS.idleMiB} MiB`,
          idle <= TARGETS.idleMiB,
        );
      }
      const f = await load(g, shape);
      console.log(
        `load ${shape.name}: ${f.published} readings published in ${f.seconds.toFixed(1)} s (${Math.round(f.published / f.seconds)}/s), ${f.stored} stored`,
      );
      row(
        `  RSS peak at ${RATE / 1000} k readings/s`,
        `${f.peakMiB.toFixed(1)} MiB`,
        `≤ ${TARGETS.loadMiB} MiB`,
        f.peakMiB <= TARGETS.loadMiB,
      );
      row(`  CPU at ${RATE / 1000} k readings/s`, `${(f.cpuShare * 100).toFixed(0)} % core`, '(none)', true);
      row(
        '  disk written per stored reading',
        `${f.bytesPerReading.toFixed(0)} B`,
        `≤ ${TARGETS.bytesPerReading} B`,
        f.bytesPerReading <= TARGETS.bytesPerReading,
      );
      if (f.stored < f.published * 0.99)
        console.log(`  note: ${f.published - f.stored} readings not stored (rejected or pending)`);
    } finally {
      await stopGateway(g);
    }
  }
}

main().catch((err: unknown) => {
  console.error(`footprint: ${(err as Error).message}`);
  process.exitCode = 1;
});
