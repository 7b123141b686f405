/**
 * Overload must not turn into lost rule input (SPEC §2 idleness, fine print 16): the gateway pinned
 * to one core, devices that each send their last second of samples once a second, faster than it
 * can take them at QoS 0. Readings wait in socket buffers for seconds; none is late because of
 * idleness, and every window counts exactly the readings stored for it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connectAsync, type MqttClient } from 'mqtt';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { parseMetrics } from '../helpers/prometheus.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const DEVICES = 6_000;
const SECONDS = 8;
const PER_MESSAGE = 50;
const CONNECTIONS = 4;

describe('overload at QoS 0 on one core (built gateway, embedded broker)', () => {
  let tmp: TempDir;
  let gw: RunningGateway;
  before(async () => {
    tmp = makeTempDir('tidegate-overload-');
    const config = tmp.file('gateway.yaml');
    writeFileSync(
      config,
      `api: { port: 0, rateLimit: 0 } # polled every 50 ms below
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "load/{device}/{metric}" }] }]
store: { path: ${tmp.file('gw.db')} }
rules:
  - { id: per-second, match: { metric: temp }, window: { type: tumbling, size: 1s }, aggregates: { n: count } }
  - { id: sessions, match: { metric: temp }, window: { type: session, gap: 2s }, aggregates: { n: count } }
`,
    );
    gw = await startGateway(config, { cpu: 0 });
  });
  after(async () => {
    await gw?.stop();
    tmp?.remove();
  });

  it('drops no reading as late, and every window counts the readings stored for it', async (t) => {
    const clients: MqttClient[] = [];
    for (let c = 0; c < CONNECTIONS; c++)
      clients.push(await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 }));
    let published = 0;
    try {
      // Once a second, each device sends the second just past: 50 samples, 20 ms apart, in order.
      let second = Number.NEGATIVE_INFINITY;
      for (let s = 0; s < SECONDS; s++) {
        // Never the same second twice (a timer may fire a little before Date.now() turns over):
        // it would be 300,000 duplicates, rightly ignored.
        second = Math.max(second + 1000, Math.floor(Date.now() / 1000) * 1000 - 1000);
        for (let d = 0; d < DEVICES; d++) {
          const samples = Array.from({ length: PER_MESSAGE }, (_, i) => ({ value: i, ts: second + i * 20 }));
          (clients[d % CONNECTIONS] as MqttClient).publish(`load/dev-${d}/temp`, JSON.stringify(samples), {
            qos: 0,
          });
          published += PER_MESSAGE;
        }
        await new Promise((r) => setTimeout(r, Math.max(0, second + 2000 - Date.now())));
      }
      // Drained when every reading is stored (QoS 0 over loopback TCP loses none). Polled through
      // /metrics: a count(*) over millions of rows would compete with the gateway for its core.
      const drainFrom = Date.now();
      const metric = async (name: string) =>
        parseMetrics(await (await gw.api('/metrics')).text()).get(name) ?? 0;
      await eventually(
        async () => ((await metric('tidegate_readings_stored_total')) >= published ? true : undefined),
        180_000,
        'every reading stored',
      ).catch(async (err: Error) => {
        const m = parseMetrics(await (await gw.api('/metrics')).text());
        const counts = [...m].filter(([k]) => /readings_(ingested|rejected|stored|duplicate)/.test(k));
        throw new Error(`${err.message}: published ${published}, ${JSON.stringify(counts)}`);
      });
      const drained = Date.now() - drainFrom;
      const db = new Database(tmp.file('gw.db'), { readonly: true });
      try {
        const windows = db
          .prepare('SELECT count(*) FROM (SELECT DISTINCT series_id, ts / 1000 FROM readings)')
          .pluck()
          .get() as number;
        // Then the devices fall silent and every window closes once they are idle. One whose readings
        // were all dropped as late never does: waiting ends once nothing closed for 10 s.
        const closed = () => metric('tidegate_windows_closed_total{rule="per-second"}');
        let seen = -1;
        let since = Date.now();
        await eventually(
          async () => {
            const n = await closed();
            if (n !== seen) [seen, since] = [n, Date.now()];
            return n >= windows || Date.now() - since > 10_000 ? true : undefined;
          },
          60_000,
          'every window closed',
        );
        const results = () =>
          db.prepare(`SELECT count(*) FROM results WHERE rule = 'per-second'`).pluck().get() as number;
        const m = parseMetrics(await (await gw.api('/metrics')).text());
        const late = [...m]
          .filter(([k]) => k.startsWith('tidegate_late_dropped_total'))
          .reduce((a, [, v]) => a + v, 0);
        t.diagnostic(
          `published ${published}, stored ${drained} ms after the last publish (behind), idle clock behind ${m.get('tidegate_idle_clock_behind_seconds')} s, late ${late}`,
        );
        assert.equal(late, 0, 'no reading dropped as late');
        assert.equal(db.prepare('SELECT count(*) FROM late_readings').pluck().get(), 0);
        // Every tumbling window: the count of its stored readings, and exactly one result.
        const stored = new Map<string, number>();
        const perWindow = db.prepare(
          `SELECT s.device, (r.ts / 1000) * 1000 AS start, count(*) AS n FROM readings r
           JOIN series s ON s.id = r.series_id GROUP BY r.series_id, r.ts / 1000`,
        );
        for (const w of perWindow.iterate() as Iterable<{ device: string; start: number; n: number }>)
          stored.set(`${w.device} ${w.start}`, w.n);
        const counted = new Map<string, number>();
        const rows = db.prepare(`SELECT key, start, count FROM results WHERE rule = 'per-second'`);
        for (const r of rows.iterate() as Iterable<{ key: string; start: number; count: number }>)
          counted.set(`${(JSON.parse(r.key) as { device: string }).device} ${r.start}`, r.count);
        const wrong = [...stored].filter(([k, n]) => counted.get(k) !== n).slice(0, 5);
        assert.deepEqual(wrong, [], 'windows whose result does not count their stored readings');
        assert.equal(results(), windows, 'one result per window, no revision');
      } finally {
        db.close();
      }
    } finally {
      for (const c of clients) await c.endAsync();
    }
  });
});
