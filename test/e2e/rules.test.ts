import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connectAsync } from 'mqtt';
import { iso, recentHour } from '../helpers/event-time.js';
import { runCli, startGateway } from '../helpers/gateway-process.js';

const RULES = `
- id: overheat
  match: { device: "boiler-*", metric: temperature }
  window: { type: tumbling, size: 10s }
  watermark: { maxOutOfOrder: 2s, idleTimeout: 1h }
  lateness: 5s
  aggregates: { avg: avg, peak: max, p95: p95 }
  when: "avg > 80"
  clear: "avg < 75"
  for: 2
- id: hall
  match: { metric: temperature }
  groupBy: []
  window: { type: sliding, size: 20s, slide: 10s }
  watermark: { idleTimeout: 1h }
  aggregates: { n: count, spread: spread }
- id: every3
  match: { metric: temperature }
  window: { type: count, size: 3 }
  aggregates: { last: last }
`;

const T0 = recentHour();
const at = (s: number) => iso(T0 + s * 1000);

/** The readings the tests publish: two boilers, disorder, a late reading within lateness, one beyond, a duplicate. */
function stream(): { device: string; metric: string; value: number; ts: string }[] {
  const out: { device: string; metric: string; value: number; ts: string }[] = [];
  const temps = [82, 84, 85, 86, 70, 71, 72, 90, 91, 92];
  temps.forEach((v, i) => {
    out.push({ device: 'boiler-1', metric: 'temperature', value: v, ts: at(i * 5 + 1) });
    out.push({ device: 'boiler-2', metric: 'temperature', value: v - 10, ts: at(i * 5 + 2) });
  });
  out.push({ device: 'boiler-1', metric: 'temperature', value: 99, ts: at(38) }); // late, within lateness
  out.push({ device: 'boiler-1', metric: 'temperature', value: 50, ts: at(3) }); // beyond lateness: dropped
  out.push({ device: 'boiler-2', metric: 'temperature', value: 82, ts: at(47) }); // duplicate of the last boiler-2 reading
  out.push({ device: 'boiler-1', metric: 'temperature', value: 60, ts: at(70) });
  out.push({ device: 'boiler-2', metric: 'temperature', value: 60, ts: at(71) });
  return out;
}

interface Row {
  rule: string;
  key: string;
  start: number;
  end: number;
  count: number;
  values: string;
  revision: number;
  state: string;
  at: number;
  device: string;
  metric: string;
  value: number;
  ts: number;
}

/**
 * Rebuilds the SPEC's record JSON from the store's tables, each table in emission order. The
 * tests compare per (type, rule, key), which is all SPEC fine print 12 promises.
 */
function storedRecords(dbFile: string): string[] {
  const db = new Database(dbFile, { readonly: true });
  const iso = (ms: number) => new Date(ms).toISOString();
  const all = (table: string) => db.prepare(`SELECT * FROM ${table} ORDER BY id`).all() as Row[];
  const lines = [
    ...all('results').map((r) =>
      JSON.stringify({
        type: 'result',
        rule: r.rule,
        key: JSON.parse(r.key),
        start: iso(r.start),
        end: iso(r.end),
        count: r.count,
        values: JSON.parse(r.values),
        revision: r.revision,
      }),
    ),
    ...all('decisions').map((r) =>
      JSON.stringify({
        type: 'decision',
        rule: r.rule,
        key: JSON.parse(r.key),
        state: r.state,
        at: iso(r.at),
        values: JSON.parse(r.values),
      }),
    ),
    ...all('late_readings').map((r) =>
      JSON.stringify({
        type: 'late',
        rule: r.rule,
        reading: { device: r.device, metric: r.metric, value: r.value, ts: iso(r.ts) },
      }),
    ),
  ];
  db.close();
  return lines;
}

/** Records grouped per (type, rule, key), each group in order: what must agree between live and replay. */
function byStream(lines: string[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const line of lines) {
    const r = JSON.parse(line) as { type: string; rule: string; key?: unknown; reading?: { device: string } };
    const k = `${r.type} ${r.rule} ${JSON.stringify(r.key ?? r.reading?.device)}`;
    const list = groups.get(k) ?? [];
    list.push(line);
    groups.set(k, list);
  }
  return groups;
}

describe('rules in the live gateway', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-rules-'));
    writeFileSync(join(dir, 'rules.yaml'), RULES);
    writeFileSync(
      join(dir, 'input.jsonl'),
      `${stream()
        .map((r) => JSON.stringify(r))
        .join('\n')}\n`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const config = (db: string) => `
api: { port: 0 }
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }]
rules: ${join(dir, 'rules.yaml')}
store: { path: ${db}, flushInterval: 20ms }
`;

  it('replay is deterministic: the same input twice gives byte-identical output', async () => {
    const a = await runCli([
      'replay',
      '--rules',
      join(dir, 'rules.yaml'),
      '--input',
      join(dir, 'input.jsonl'),
    ]);
    const b = await runCli(['replay', '--rules', join(dir, 'rules.yaml')], {
      input: stream()
        .map((r) => JSON.stringify(r))
        .join('\n'),
    });
    assert.equal(a.code, 0, a.stderr);
    assert.ok(a.stdout.length > 0);
    assert.equal(a.stdout, b.stdout);
    assert.match(a.stderr, /1 duplicates/);
  });

  it('live mode stores what replay computes, for every (rule, key), over real MQTT', async () => {
    const dbFile = join(dir, 'live.db');
    writeFileSync(join(dir, 'live.yaml'), config(dbFile));
    const gw = await startGateway(join(dir, 'live.yaml'));
    try {
      const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
      // QoS 1, one at a time: the gateway sees the readings in exactly this order.
      for (const r of stream()) {
        await client.publishAsync(
          `sensors/${r.device}/${r.metric}`,
          JSON.stringify({ value: r.value, ts: r.ts }),
          { qos: 1 },
        );
      }
      await client.endAsync();
    } finally {
      const { code } = await gw.stop();
      assert.equal(code, 0);
    }
    const live = byStream(storedRecords(dbFile));
    const replayed = await runCli([
      'replay',
      '--rules',
      join(dir, 'rules.yaml'),
      '--input',
      join(dir, 'input.jsonl'),
    ]);
    const replay = byStream(replayed.stdout.trim().split('\n'));
    assert.ok(live.size > 5, `live produced ${live.size} streams`);
    // Live mode has no end of input: each of its streams is a prefix of replay's (which also flushes).
    for (const [k, lines] of live) {
      const expected = replay.get(k) ?? [];
      assert.deepEqual(lines, expected.slice(0, lines.length), k);
    }
    // Windows the last readings closed are there; so are the late drop and the firing decision.
    assert.ok(live.get('late overheat "boiler-1"')?.length === 1);
    assert.ok(live.get('decision overheat {"device":"boiler-1"}')?.some((l) => l.includes('"firing"')));
  });

  it('decision state and open windows survive a restart', async () => {
    const dbFile = join(dir, 'restart.db');
    writeFileSync(join(dir, 'restart.yaml'), config(dbFile));
    const publish = async (port: number, values: [number, number][]) => {
      const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
      for (const [s, v] of values) {
        await client.publishAsync(
          'sensors/boiler-9/temperature',
          JSON.stringify({ value: v, ts: T0 + s * 1000 }),
          { qos: 1 },
        );
      }
      await client.endAsync();
    };
    // First run: one hot window closes (streak 1 of for: 2); no transition yet.
    let gw = await startGateway(join(dir, 'restart.yaml'));
    await publish(gw.brokerPort, [
      [1, 90],
      [12, 90],
    ]);
    assert.equal((await gw.stop()).code, 0);
    // Second run: the window open at the restart, [10 s, 20 s), is rebuilt from the stored reading
    // at 12 s and closes at 21 s; with the streak restored it is the second hot window: firing.
    gw = await startGateway(join(dir, 'restart.yaml'));
    await publish(gw.brokerPort, [
      [21, 90],
      [32, 90],
    ]);
    assert.equal((await gw.stop()).code, 0);
    const stored = storedRecords(dbFile);
    // No window was emitted twice across the restart.
    const results = stored.filter((l) => l.includes('"result"') && l.includes('"rule":"overheat"'));
    assert.deepEqual(
      results.map((l) => (JSON.parse(l) as { start: string; revision: number }).start),
      [at(0), at(10), at(20)],
    );
    assert.match(results[1] as string, /"count":1,"values":\{"avg":90/);
    const decisions = stored.filter((l) => l.includes('"decision"') && l.includes('overheat'));
    assert.equal(decisions.length, 1, decisions.join('\n'));
    assert.ok((decisions[0] as string).includes(`"state":"firing","at":"${at(20)}"`));
  });
});
