import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/runtime/log.js';
import { parseMetrics } from '../helpers/prometheus.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

/** The sum over every series of a metric whose labels contain `labels`. */
function sum(m: Map<string, number>, name: string, labels = ''): number {
  let total = 0;
  let found = false;
  for (const [series, value] of m) {
    if ((series === name || series.startsWith(`${name}{`)) && series.includes(labels)) {
      total += value;
      found = true;
    }
  }
  assert.ok(found, `no series ${name}${labels ? ` with ${labels}` : ''}`);
  return total;
}

describe('GET /metrics of a running gateway', () => {
  let dir: TempDir;
  let gateway: Gateway;
  let base: string;

  before(async () => {
    dir = makeTempDir('tidegate-metrics-');
    const config = parseConfigText(
      `
api: { port: 0 }
broker: { enabled: false }
sources:
  - { id: sim, type: simulator, devices: 3, interval: 5ms, late: 0.2 }
rules:
  - id: temp
    match: { device: "sim-*", metric: temperature }
    window: { type: tumbling, size: 100ms }
    aggregates: { avg: avg }
    when: "avg > -1000"
    clear: "avg < -2000"
    forward: [results, decisions]
store: { path: ${dir.file('gw.db')}, flushInterval: 20ms }
upstreams:
  - { id: down, type: http, url: "http://127.0.0.1:9/ingest", timeout: 200ms }
`,
      'test.yaml',
      {},
    );
    gateway = new Gateway(config, { log: silentLogger(), processMetrics: true });
    await gateway.start();
    base = `http://127.0.0.1:${gateway.apiPort}`;
  });

  after(async () => {
    await gateway?.stop();
    dir?.remove();
  });

  const scrape = async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return parseMetrics(await res.text());
  };

  it('has ingest, rules, outbox, upstream, store, stream, API and process metrics with sensible values', async () => {
    // Let the simulator run, rules fire and the dead upstream fail a few times.
    await new Promise((r) => setTimeout(r, 1500));
    await (await fetch(`${base}/api/v1/devices/sim-1`)).arrayBuffer();
    await (await fetch(`${base}/api/v1/devices/nope`)).arrayBuffer();
    await (await fetch(`${base}/api/v1/readings?bogus=1`)).arrayBuffer();
    await (await fetch(`${base}/api/v1/no/such/path`)).arrayBuffer();
    // Nobody asked /health: the gauges of state must still be current at scrape time.
    const m = await scrape();

    assert.ok(sum(m, 'tidegate_readings_ingested_total', 'source="sim"') > 100);
    assert.ok(sum(m, 'tidegate_readings_stored_total') > 0);
    assert.ok(sum(m, 'tidegate_windows_closed_total', 'rule="temp"') > 0);
    assert.ok(sum(m, 'tidegate_decisions_total', 'state="firing"') > 0);
    assert.ok(sum(m, 'tidegate_late_dropped_total', 'rule="temp"') > 0);
    assert.ok(sum(m, 'tidegate_upstream_errors_total', 'upstream="down"') > 0);
    assert.ok(sum(m, 'tidegate_outbox_backlog', 'upstream="down"') > 0);
    assert.ok(sum(m, 'tidegate_outbox_oldest_age_seconds', 'upstream="down"') > 0);
    assert.ok(sum(m, 'tidegate_store_bytes') > 4096);
    assert.equal(sum(m, 'tidegate_stream_clients'), 0);
    assert.equal(sum(m, 'tidegate_stream_dropped_total'), 0);
    // Route patterns, never raw paths.
    assert.equal(sum(m, 'tidegate_api_requests_total', 'route="/api/v1/devices/:id",status="200"'), 1);
    assert.equal(sum(m, 'tidegate_api_requests_total', 'route="/api/v1/devices/:id",status="404"'), 1);
    assert.equal(sum(m, 'tidegate_api_requests_total', 'route="/api/v1/readings",status="400"'), 1);
    assert.equal(sum(m, 'tidegate_api_requests_total', 'route="unmatched",status="404"'), 1);
    assert.ok(![...m.keys()].some((k) => k.includes('sim-1') || k.includes('no/such')));
    // Process metrics, on for `tidegate run`.
    const rss = sum(m, 'tidegate_process_resident_memory_bytes');
    assert.ok(rss > 10e6 && rss < 4e9, `rss ${rss}`);
    const lag = sum(m, 'tidegate_nodejs_eventloop_lag_seconds');
    assert.ok(lag >= 0 && lag < 1, `event-loop lag ${lag}`);

    // The scrape itself is counted by the next one, and the store keeps growing.
    const again = await scrape();
    assert.ok(sum(again, 'tidegate_api_requests_total', 'route="/metrics",status="200"') >= 1);
    assert.ok(sum(again, 'tidegate_readings_ingested_total') >= sum(m, 'tidegate_readings_ingested_total'));
  });

  it('counts stream clients while they are connected', async () => {
    const abort = new AbortController();
    const res = await fetch(`${base}/api/v1/stream?type=reading&device=sim-1`, { signal: abort.signal });
    assert.equal(res.status, 200);
    const reader = res.body?.getReader();
    const first = await reader?.read();
    assert.match(new TextDecoder().decode(first?.value), /retry: \d+/);
    assert.equal(sum(await scrape(), 'tidegate_stream_clients'), 1);
    abort.abort();
    await reader?.cancel().catch(() => undefined);
    const deadline = Date.now() + 2000;
    while (sum(await scrape(), 'tidegate_stream_clients') !== 0) {
      assert.ok(Date.now() < deadline, 'stream client not cleaned up');
      await new Promise((r) => setTimeout(r, 10));
    }
  });
});
