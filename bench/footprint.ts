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
 * Measures cold start to healthy, RSS idle, RSS and CPU under 10 k readings/s published by an
 * MQTT load generator in this process, and bytes written to disk per stored reading.
 * Bounded (about 40 s), talks only to 127.0.0.1, cleans up after itself.
 */
const RATE = Number(process.env['FOOTPRINT_RATE'] ?? 10_000); // readings/s
const LOAD_SECONDS = Number(process.env['FOOTPRINT_SECONDS'] ?? 15);
/** RSS right after the start, and once V8's memory reducer has run (8 s after the last GC). */
const IDLE_EARLY_MS = 4_000;
const IDLE_SETTLED_MS = 15_000;
const DEVICES = 100;
const PER_MESSAGE = 100; // readings per message (ingest.maxMetricsPerMessage is 256)
const TICK_MS = 10;

const TARGETS = { idleMiB: 60, loadMiB: 100, coldStartMs: 1_000, bytesPerReading: 150 };

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

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  console.log(`footprint: ${machine()}`);
  const unit = unitNodeCommand();
  console.log(`as systemd/tidegate.service: ${describeUnitCommand(unit)}`);
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
  const pid = child.pid as number;
  let client: mqtt.MqttClient | null = null;
  try {
    const coldStartMs = await waitHealthy(apiPort, child, started);
    await sleep(IDLE_EARLY_MS);
    const idleEarly = rssMiB(pid);
    await sleep(IDLE_SETTLED_MS - IDLE_EARLY_MS);
    const idle = rssMiB(pid);

    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { clientId: 'footprint-load' });
    const storedBefore = await storedReadings(apiPort);
    const writtenBefore = writeBytes(pid);
    const cpuBefore = cpuSeconds(pid);
    const t0 = Date.now();
    let published = 0;
    let peak = idle;
    let ts = t0 - 60 * 60_000; // distinct timestamps per series, an hour back
    const perTick = Math.max(1, Math.round((RATE * TICK_MS) / 1000 / PER_MESSAGE));
    const loadClient = client;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = Date.now() - t0;
        if (elapsed >= LOAD_SECONDS * 1000) {
          clearInterval(timer);
          resolve();
          return;
        }
        // Keep to the rate even when a tick comes late.
        const due = Math.floor((elapsed / 1000) * RATE);
        for (let m = 0; m < perTick * 4 && published < due; m++) {
          const items = new Array(PER_MESSAGE);
          for (let i = 0; i < PER_MESSAGE; i++)
            items[i] = { value: Math.round(Math.sin(ts + i) * 1000) / 10, ts: ts + i };
          const device = `dev-${Math.floor(published / PER_MESSAGE) % DEVICES}`;
          loadClient.publish(`sensors/${device}/temperature`, JSON.stringify(items), { qos: 0 });
          published += PER_MESSAGE;
          if (Math.floor(published / PER_MESSAGE) % DEVICES === 0) ts += PER_MESSAGE;
        }
        peak = Math.max(peak, rssMiB(pid));
      }, TICK_MS);
    });
    const seconds = (Date.now() - t0) / 1000;
    const cpu = cpuSeconds(pid) - cpuBefore;
    await sleep(1_000); // the last group commit
    peak = Math.max(peak, rssMiB(pid));
    const stored = (await storedReadings(apiPort)) - storedBefore;
    const written = writeBytes(pid) - writtenBefore;

    console.log(
      `load: ${published} readings published in ${seconds.toFixed(1)} s (${Math.round(published / seconds)}/s), ${stored} stored`,
    );
    row(
      'cold start to healthy',
      `${coldStartMs.toFixed(0)} ms`,
      `≤ ${TARGETS.coldStartMs} ms`,
      coldStartMs <= TARGETS.coldStartMs,
    );
    console.log(
      `RSS ${IDLE_EARLY_MS / 1000} s after healthy (startup garbage not yet collected): ${idleEarly.toFixed(1)} MiB`,
    );
    row(
      `RSS idle (${IDLE_SETTLED_MS / 1000} s after healthy)`,
      `${idle.toFixed(1)} MiB`,
      `≤ ${TARGETS.idleMiB} MB`,
      idle <= TARGETS.idleMiB,
    );
    row(
      `RSS peak at ${RATE / 1000} k readings/s`,
      `${peak.toFixed(1)} MiB`,
      `≤ ${TARGETS.loadMiB} MB`,
      peak <= TARGETS.loadMiB,
    );
    row(`CPU at ${RATE / 1000} k readings/s`, `${((cpu / seconds) * 100).toFixed(0)} % core`, '(none)', true);
    const perReading = stored > 0 ? written / stored : Number.NaN;
    row(
      'disk written per stored reading',
      `${perReading.toFixed(0)} B`,
      `≤ ${TARGETS.bytesPerReading} B`,
      perReading <= TARGETS.bytesPerReading,
    );
    console.log('targets in MB are read as MiB (2^20 bytes), as systemd (MemoryMax=60M) and V8 count them');
    if (stored < published * 0.99)
      console.log(`note: ${published - stored} readings not stored (rejected or pending)`);
  } finally {
    await client?.endAsync().catch(() => {});
    child.kill('SIGTERM');
    await new Promise((r) => {
      if (child.exitCode !== null) r(null);
      else child.once('exit', r);
      setTimeout(() => child.kill('SIGKILL'), 6_000).unref();
    });
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`footprint: ${(err as Error).message}`);
  process.exitCode = 1;
});
