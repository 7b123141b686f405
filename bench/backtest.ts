import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backtestStore } from '../src/backtest/offline.js';
import { compileRules } from '../src/engine/compile.js';
import { validateRule } from '../src/model/rule.js';
import { backtestRig } from '../test/backtest/rig.js';
import { startGateway } from '../test/helpers/gateway-process.js';
import { fillStore } from '../test/helpers/history.js';
import { rssMiB } from './gateway-process.js';
import { machine, quantile } from './machine.js';

/**
 * bench:backtest — (1) backtest readings/s for each rule type over a stored history of
 * `--readings` (50 devices), as a job in its worker (what POST /backtests runs) and in process
 * (what `tidegate backtest` runs), with the export rate (/readings/export over HTTP) beside;
 * (2) isolation: the built gateway on a store of `--isolation-readings` ingests 10 k readings/s
 * at QoS 1 (a load process measures each publish → PUBACK; store.flushInterval 20 ms, so that the
 * PUBACK waits for the commit, not for the default 1 s interval) while /api/v1/health is polled, first
 * without, then with a backtest running over the whole store, in one run.
 *
 *   node build/bench/backtest.js [--readings 2000000] [--isolation-readings 5000000] [--seconds 10]
 *
 * Temp dirs under /var/tmp (not tmpfs), removed at the end; only 127.0.0.1.
 */
const { values: args } = parseArgs({
  options: {
    readings: { type: 'string', default: '2000000' },
    'isolation-readings': { type: 'string', default: '5000000' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '10000' },
    'isolation-rule': { type: 'string', default: 'sliding 60s/10s p95' },
    'skip-rates': { type: 'boolean', default: false },
  },
});
const HOUR = 3_600_000;
const START = Math.floor((Date.now() - 5 * 24 * HOUR) / HOUR) * HOUR;
const LOAD = fileURLToPath(new URL('./backtest-load.js', import.meta.url));
const RULES: Record<string, unknown> = {
  tumbling: {
    id: 'tumbling',
    match: { metric: 'temp' },
    window: { type: 'tumbling', size: '1m' },
    aggregates: { avg: 'avg(temp)', max: 'max(temp)' },
    when: 'max > 85',
  },
  'sliding 60s/10s p95': {
    id: 'sliding',
    match: { metric: 'temp' },
    window: { type: 'sliding', size: '60s', slide: '10s' },
    aggregates: { p95: 'p95(temp)' },
  },
  'session 30s': {
    id: 'session',
    match: { metric: 'temp' },
    window: { type: 'session', gap: '30s' },
    aggregates: { n: 'count(temp)' },
  },
  'count 1000': {
    id: 'count',
    match: { metric: 'temp' },
    window: { type: 'count', size: 1000 },
    aggregates: { s: 'sum(temp)' },
  },
};
const RULES_RUN = Object.entries(RULES);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(1);

const dir = mkdtempSync('/var/tmp/tidegate-bench-backtest-');
try {
  console.log(`bench:backtest on ${machine()}`);
  const store = join(dir, 'history.db');
  const n = fillStore(store, { devices: 50, readings: Number(args.readings), start: START, step: 1000 });
  const range = { from: START, to: START + 365 * 24 * HOUR };

  // (1) rates per rule type.
  const rig = await backtestRig(store);
  if (args['skip-rates']) RULES_RUN.length = 0;
  console.log(`\n(1) ${fmt(n)} stored readings, 50 devices\n`);
  console.log('| rule | job (worker) readings/s | in process readings/s | records |');
  console.log('|---|---|---|---|');
  for (const [name, rule] of RULES_RUN) {
    const t0 = performance.now();
    const posted = await rig.call<{ id: string }>('POST', '/api/v1/backtests', { rule, ...range });
    const job = await rig.finished<{ state: string; summary: { readings: number }; records: number }>(
      posted.body.id,
      600_000,
    );
    const jobSeconds = (performance.now() - t0) / 1000;
    const checked = validateRule(rule);
    if (!checked.ok || job.state !== 'done') throw new Error(`${name}: ${JSON.stringify(job)}`);
    const t1 = performance.now();
    const summary = await backtestStore(store, compileRules([checked.rule]), range, {
      emit: () => {},
      ready: async () => {},
    });
    const inProcess = (performance.now() - t1) / 1000;
    console.log(
      `| ${name} | ${fmt(job.summary.readings / jobSeconds)} | ${fmt(summary.readings / inProcess)} | ${fmt(job.records)} |`,
    );
  }
  for (const format of args['skip-rates'] ? [] : ['ndjson', 'csv']) {
    const t0 = performance.now();
    const res = await fetch(`${rig.base}/api/v1/readings/export?format=${format}`);
    let bytes = 0;
    let lines = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      for (const b of chunk) if (b === 10) lines++;
    }
    const s = (performance.now() - t0) / 1000;
    console.log(
      `| export ${format} (HTTP) | ${fmt((lines - (format === 'csv' ? 1 : 0)) / s)} | | ${fmt(bytes / 2 ** 20)} MiB |`,
    );
  }
  await rig.close();

  // (2) isolation.
  const big = join(dir, 'big.db');
  const stored = fillStore(big, {
    devices: 50,
    readings: Number(args['isolation-readings']),
    start: START,
    step: 1000,
  });
  const config = join(dir, 'gateway.yaml');
  writeFileSync(
    config,
    `api: { port: 0, rateLimit: 0 }
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources:
  - { id: load, type: mqtt, topics: [{ filter: "load/{device}/{metric}" }] }
store: { path: ${big}, flushInterval: 20ms }
rules:
  - { id: live, match: { metric: temp }, window: { type: tumbling, size: 10s }, aggregates: { avg: avg(temp) } }
`,
  );
  const gw = await startGateway(config, { timeoutMs: 60_000 });
  try {
    const pid = gw.proc.pid as number;
    const phase = async (label: string) => {
      const load = spawn(
        process.execPath,
        [
          LOAD,
          '--url',
          `mqtt://127.0.0.1:${gw.brokerPort}`,
          '--seconds',
          String(args.seconds),
          '--rate',
          String(args.rate),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      load.stdout.on('data', (d) => {
        out += d;
      });
      const exited = new Promise<void>((resolve) => load.once('exit', () => resolve()));
      const health: number[] = [];
      let rss = 0;
      let running = true;
      void exited.then(() => {
        running = false;
      });
      while (running) {
        const t0 = performance.now();
        await (await gw.api('/api/v1/health')).arrayBuffer();
        health.push(performance.now() - t0);
        rss = Math.max(rss, rssMiB(pid));
        await new Promise((r) => setTimeout(r, 50));
      }
      const result = JSON.parse(out) as { sent: number; acked: number; latenciesMs: number[] };
      const puback = [...result.latenciesMs].sort((a, b) => a - b);
      health.sort((a, b) => a - b);
      return { label, puback, health, rss, sent: result.sent, acked: result.acked };
    };
    await phase('warm-up');
    const without = await phase('without a backtest');
    const posted = await gw.api('/api/v1/backtests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rule: RULES[String(args['isolation-rule'])], ...range }),
    });
    const id = ((await posted.json()) as { id: string }).id;
    const withJob = await phase('with a backtest running');
    const job = (await (await gw.api(`/api/v1/backtests/${id}`)).json()) as {
      state: string;
      progress: { readings: number };
    };
    if (job.state === 'running') await gw.api(`/api/v1/backtests/${id}`, { method: 'DELETE' });
    console.log(
      `\n(2) isolation: the built gateway on ${fmt(stored)} stored readings, ${args.rate} readings/s at QoS 1 (10 per message) for ${args.seconds} s per phase`,
    );
    console.log(
      `    the backtest (sliding 60s/10s p95 over the whole store) was ${job.state} at the end of its phase, ${fmt(job.progress.readings)} readings done\n`,
    );
    console.log(
      '| phase | PUBACK p50 ms | PUBACK p99 ms | /health p50 ms | /health p99 ms | acked/sent | peak RSS MiB |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const p of [without, withJob]) {
      console.log(
        `| ${p.label} | ${ms(quantile(p.puback, 0.5))} | ${ms(quantile(p.puback, 0.99))} | ${ms(quantile(p.health, 0.5))} | ${ms(quantile(p.health, 0.99))} | ${p.acked}/${p.sent} | ${p.rss.toFixed(1)} |`,
      );
    }
    const ratio = (a: number[], b: number[]) => (quantile(b, 0.99) / quantile(a, 0.99)).toFixed(2);
    console.log(
      `\np99 ratios with/without: PUBACK ${ratio(without.puback, withJob.puback)}×, /health ${ratio(without.health, withJob.health)}× (target ≤ 1.5×)`,
    );
  } finally {
    await gw.stop('SIGTERM');
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
