/**
 * A publisher that invents a device name in every message (a counter in the topic): the gateway stays
 * within its memory, counts the refusals, and keeps storing the devices it knew (SPEC §6 maxDevices).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { connectAsync } from 'mqtt';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { parseMetrics } from '../helpers/prometheus.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const NAMES = 300_000;
const RULE = (id: string, window: string) =>
  `  - { id: ${id}, match: { metric: temp }, window: ${window}, aggregates: { avg: avg, hi: max }, when: "hi > 90" }`;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

describe('a flood of invented device names (built gateway, embedded broker)', () => {
  let tmp: TempDir;
  let gw: RunningGateway;
  before(async () => {
    tmp = makeTempDir('tidegate-flood-');
    const config = tmp.file('gateway.yaml');
    const rules = [
      RULE('t10', '{ type: tumbling, size: 10s }'),
      RULE('s30', '{ type: sliding, size: 30s, slide: 10s }'),
      RULE('sess', '{ type: session, gap: 5s }'),
    ].join('\n');
    const text = `api: { port: 0, rateLimit: 0 } # polled every 50 ms below
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "flood/{device}/{metric}" }] }]
store: { path: ${tmp.file('gw.db')} }
rules:
${rules}
`;
    writeFileSync(config, text);
    gw = await startGateway(config);
  });
  after(async () => {
    await gw?.stop();
    tmp?.remove();
  });

  it(`${NAMES} names: RSS stays under 300 MB, the refusals are counted, a known device is still stored`, async (t) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    const pid = gw.proc.pid as number;
    let peak = rssMiB(pid);
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMiB(pid));
    }, 100);
    try {
      await client.publishAsync('flood/known-1/temp', '20', { qos: 1 });
      for (let i = 0; i < NAMES; i++) {
        client.publish(`flood/invented-${i}/temp`, String(i % 100), { qos: 0 });
        // Bounded: every 5,000 messages, a QoS 1 publish waits until the gateway has caught up.
        if (i % 5_000 === 4_999) await client.publishAsync('flood/known-1/temp', '21', { qos: 1 });
      }
      const counts = await eventually(
        async () => {
          const m = parseMetrics(await (await gw.api('/metrics')).text());
          const rejected = m.get('tidegate_readings_rejected_total{reason="device_limit"}') ?? 0;
          const ingested = m.get('tidegate_readings_ingested_total{source="local"}') ?? 0;
          return rejected + ingested >= NAMES + 61 ? { rejected, ingested } : undefined;
        },
        120_000,
        'every message counted',
      );
      // known-1 was known first; 9,999 invented names fill the default limit of 10,000.
      assert.equal(counts.rejected, NAMES - 9_999);
      const m = parseMetrics(await (await gw.api('/metrics')).text());
      assert.equal(m.get('tidegate_devices_known'), 10_000);
      const groups = (state: string) => m.get(`tidegate_rule_groups{state="${state}"}`) ?? 0;
      assert.equal(groups('live') + groups('forgotten'), 3 * 10_000, 'one group per known device and rule');
      await client.publishAsync('flood/known-1/temp', '22.5', { qos: 1 });
      const latest = (await (await gw.api('/api/v1/readings/latest?device=known-1')).json()) as {
        items: { value: number }[];
      };
      assert.equal(latest.items[0]?.value, 22.5);
    } finally {
      clearInterval(sampler);
      await client.endAsync();
    }
    peak = Math.max(peak, rssMiB(pid));
    assert.ok(peak <= 300, `peak RSS ${peak.toFixed(0)} MiB`);
    t.diagnostic(`device flood: peak RSS ${peak.toFixed(0)} MiB`);
  });
});
