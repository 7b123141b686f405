/** The composition root: parts wired to each other as the running gateway needs them. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectAsync } from 'mqtt';
import { parseConfigText } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { silentLogger } from '../src/runtime/log.js';
import { recentHour } from './helpers/event-time.js';
import { makeTempDir, type TempDir } from './helpers/tmp.js';
import { metricValue } from './store/rig.js';

const MINUTE = 60_000;

describe('Gateway without raw readings in the store: duplicates remembered in memory', () => {
  let tmp: TempDir;
  let gw: Gateway;

  before(async () => {
    tmp = makeTempDir('tidegate-gateway-');
    const config = parseConfigText(
      `api: { port: 0 }
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback, maxPayload: 1MiB }
ingest: { maxMetricsPerMessage: 10000 }
sources:
  - { id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }
store: { path: ${tmp.file('gw.db')}, readings: false, flushInterval: 20ms }
rules: []
`,
      'test.yaml',
      {},
    );
    gw = new Gateway(config, { log: silentLogger() });
    await gw.start();
  });
  after(async () => {
    await gw.stop();
    tmp.remove();
  });

  it('remember as far back as a rule created through the API after start needs', async () => {
    const res = await fetch(`http://127.0.0.1:${gw.apiPort}/api/v1/rules`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'long',
        window: { type: 'tumbling', size: '3h' },
        aggregates: { n: 'count' },
      }),
    });
    assert.equal(res.status, 201);
    // Event times well in the past, whatever the date: the 3 h window starting at t0 is still open.
    const t0 = recentHour() - 180 * MINUTE;
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    try {
      const send = (values: { value: number; ts: number }[]) =>
        client.publishAsync('sensors/d-1/t', JSON.stringify(values), { qos: 1 });
      await send([{ value: 1, ts: t0 }]);
      // More than the 1 h the rules at start needed, and enough readings for the filter to sweep.
      const later = Array.from({ length: 5000 }, (_, i) => ({ value: 2, ts: t0 + 61 * MINUTE + i }));
      await send(later);
      await send([{ value: 1, ts: t0 }]);
    } finally {
      await client.endAsync();
    }
    assert.equal(await metricValue(gw.metrics, 'tidegate_readings_duplicate_total'), 1);
    assert.equal(await metricValue(gw.metrics, 'tidegate_readings_ingested_total'), 5001);
  });
});
