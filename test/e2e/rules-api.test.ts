import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync } from 'mqtt';
import { iso, recentHour } from '../helpers/event-time.js';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';

const T0 = recentHour();
const at = (s: number) => iso(T0 + s * 1000);

const RULE = {
  id: 'boiler-hot',
  match: { device: 'boiler-*', metric: 'temperature' },
  window: { type: 'tumbling', size: '10s' },
  watermark: { idleTimeout: '1h' },
  aggregates: { avg: 'avg', peak: 'max' },
  when: 'avg > 80',
};

interface Decision {
  state: string;
  at: string;
  key: { device: string };
}

describe('rules through the REST API, in the built gateway', () => {
  let dir: string;
  let configFile: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-rules-api-'));
    configFile = join(dir, 'gateway.yaml');
    writeFileSync(
      configFile,
      `api: { port: 0 }
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }]
store: { path: ${join(dir, 'gw.db')}, flushInterval: 20ms }
`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Publishes readings (QoS 1, one at a time, explicit ts in seconds after T0) to the embedded broker. */
  async function publish(gw: RunningGateway, readings: [string, number, number][]): Promise<void> {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    for (const [device, value, s] of readings) {
      await client.publishAsync(
        `sensors/${device}/temperature`,
        JSON.stringify({ value, ts: new Date(T0 + s * 1000).toISOString() }),
        { qos: 1 },
      );
    }
    await client.endAsync();
  }

  /** Waits until the rule's stored decisions are `states`, in order. */
  async function decisionsAre(gw: RunningGateway, states: string[]): Promise<Decision[]> {
    return eventually(
      async () => {
        const res = await gw.api('/api/v1/decisions?rule=boiler-hot');
        const { items } = (await res.json()) as { items: Decision[] };
        return items.length === states.length ? items : undefined;
      },
      5_000,
      `decisions ${states.join(', ')}`,
    ).then((items) => {
      assert.deepEqual(
        items.map((d) => d.state),
        states,
      );
      return items;
    });
  }

  it('a rule created through the API fires, survives a failed PUT and a restart', async () => {
    let gw = await startGateway(configFile);
    try {
      const created = await gw.api('/api/v1/rules', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(RULE),
      });
      assert.equal(created.status, 201);
      assert.equal(((await created.json()) as { windows: string }).windows, 'empty');

      // Readings published after the creation: the window [0 s, 10 s) averages 90.5 > 80.
      await publish(gw, [
        ['boiler-1', 90, 1],
        ['boiler-1', 91, 5],
        ['boiler-1', 70, 11],
      ]);
      const [firing] = await decisionsAre(gw, ['firing']);
      assert.deepEqual(firing, {
        type: 'decision',
        rule: 'boiler-hot',
        key: { device: 'boiler-1' },
        state: 'firing',
        at: at(10),
        values: { avg: 90.5, peak: 91 },
      });

      // An invalid PUT is refused and changes nothing ...
      const bad = await gw.api('/api/v1/rules/boiler-hot', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...RULE, window: { type: 'tumbling', size: 0 } }),
      });
      assert.equal(bad.status, 422);
      const err = (await bad.json()) as { error: { details: { path: string }[] } };
      assert.deepEqual(
        err.error.details.map((d) => d.path),
        ['window.size'],
      );
      // ... the old rule still runs: its open window [10 s, 20 s) closes with avg 70, back to ok.
      await publish(gw, [
        ['boiler-1', 70, 15],
        ['boiler-1', 70, 21],
      ]);
      await decisionsAre(gw, ['firing', 'ok']);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }

    gw = await startGateway(configFile);
    try {
      const res = await gw.api('/api/v1/rules');
      const { items } = (await res.json()) as {
        items: { id: string; origin: string; spec: unknown; createdAt?: string; updatedAt?: string }[];
      };
      assert.match(items[0]?.createdAt ?? '', /^\d{4}-\d\d-\d\dT.*Z$/);
      assert.deepEqual(items, [
        {
          id: 'boiler-hot',
          origin: 'api',
          spec: RULE,
          createdAt: items[0]?.createdAt,
          updatedAt: items[0]?.updatedAt,
        },
      ]);
      // Readings after the restart: the window [20 s, 30 s), open at the stop, was rebuilt with the
      // 70 at 21 s; with 95 and 95 it averages 86.7 > 80 and fires again.
      await publish(gw, [
        ['boiler-1', 95, 25],
        ['boiler-1', 95, 26],
        ['boiler-1', 60, 31],
      ]);
      const all = await decisionsAre(gw, ['firing', 'ok', 'firing']);
      assert.equal(all[2]?.at, at(30));
      const results = await gw.api('/api/v1/results?rule=boiler-hot');
      const page = (await results.json()) as { items: { start: string; count: number }[] };
      assert.deepEqual(
        page.items.map((r) => [r.start, r.count]),
        [
          [at(0), 2],
          [at(10), 2],
          [at(20), 3],
        ],
      );
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });
});
