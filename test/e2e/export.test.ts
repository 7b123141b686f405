/**
 * The export keeps memory flat (issue 16): the built gateway over a store of 2,000,000 readings
 * streams all of them to a client that reads as fast as it can, and its RSS stays within 20 MB of
 * what it was idle just before.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Reading, readingToJson } from '../../src/model/reading.js';
import { recentHour } from '../helpers/event-time.js';
import { type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { fillStore, type HistorySpec, historyReadings } from '../helpers/history.js';
import { parseMetrics } from '../helpers/prometheus.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const HOUR = 3_600_000;
const READINGS = 2_000_000;
/** 20 MB, in kB as /proc reports VmRSS. */
const RSS_BUDGET_KB = 20 * 1024;

/** The resident set of a process, in kB. */
function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** GETs `url` and reads the body as fast as it comes, counting lines; keeps only the last line. */
function readAll(url: string): Promise<{ status: number; lines: number; bytes: number; last: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let lines = 0;
      let bytes = 0;
      let tail: Buffer = Buffer.alloc(0);
      res.on('data', (b: Buffer) => {
        bytes += b.length;
        for (let at = b.indexOf(10); at >= 0; at = b.indexOf(10, at + 1)) lines++;
        tail = b.length >= 512 ? b.subarray(b.length - 512) : Buffer.concat([tail, b]).subarray(-512);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          lines,
          bytes,
          last: tail.toString('utf8').trimEnd().split('\n').at(-1) ?? '',
        }),
      );
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('the export was cut')));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('export of 2 M readings from the built gateway', () => {
  let tmp: TempDir;
  let gw: RunningGateway | undefined;
  // Two days ago: well inside the store's default retention (7d), whatever the date.
  const spec: HistorySpec = { devices: 50, readings: READINGS, start: recentHour() - 48 * HOUR, step: 1000 };
  let lastLine = '';

  before(async () => {
    tmp = makeTempDir('tidegate-e2e-export-');
    let last: Reading | undefined;
    for (const r of historyReadings(spec)) last = r;
    lastLine = JSON.stringify(readingToJson(last as Reading));
    assert.equal(fillStore(tmp.file('gw.db'), spec), READINGS);
    const config = tmp.file('gateway.yaml');
    writeFileSync(
      config,
      `api: { port: 0, rateLimit: 0 }
broker: { enabled: false }
store: { path: ${tmp.file('gw.db')} }
`,
    );
    gw = await startGateway(config, { timeoutMs: 60_000 });
  });
  after(async () => {
    await gw?.stop();
    tmp?.remove();
  });

  it('streams every reading with the gateway RSS within 20 MB of idle', async (t) => {
    const g = gw as RunningGateway;
    const pid = g.proc.pid as number;
    const base = `http://127.0.0.1:${g.apiPort}`;
    // Warm-up: the export's code paths, the store's pages and /metrics, on a small range.
    for (let i = 0; i < 3; i++) {
      const warm = await readAll(`${base}/api/v1/readings/export?to=${spec.start + 10 * 60_000}`);
      assert.equal(warm.status, 200);
      assert.ok(warm.lines > 25_000);
    }
    await (await g.api('/metrics')).text();
    // Idle, just before: the median of 10 samples, 50 ms apart.
    const idleSamples: number[] = [];
    for (let i = 0; i < 10; i++) {
      idleSamples.push(rssKb(pid));
      await new Promise((r) => setTimeout(r, 50));
    }
    const idle = [...idleSamples].sort((a, b) => a - b)[5] as number;

    let peak = idle;
    let samples = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKb(pid));
      samples++;
    }, 50);
    const started = performance.now();
    let result: Awaited<ReturnType<typeof readAll>>;
    try {
      result = await readAll(`${base}/api/v1/readings/export`);
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - started) / 1000;
    peak = Math.max(peak, rssKb(pid));
    const exported = parseMetrics(await (await g.api('/metrics')).text());

    t.diagnostic(
      `exported ${result.lines} readings (${(result.bytes / 1e6).toFixed(0)} MB) in ${seconds.toFixed(2)} s: ` +
        `${Math.round(result.lines / seconds)} readings/s; RSS idle ${(idle / 1024).toFixed(1)} MiB ` +
        `(samples ${Math.min(...idleSamples)}–${Math.max(...idleSamples)} kB), peak ${(peak / 1024).toFixed(1)} MiB, ` +
        `+${((peak - idle) / 1024).toFixed(1)} MiB over ${samples} samples`,
    );
    assert.equal(result.status, 200);
    assert.equal(result.lines, READINGS, 'every stored reading, once');
    assert.equal(result.last, lastLine, 'the newest reading last');
    assert.equal(exported.get('tidegate_exports_active'), 0);
    assert.ok(samples >= 10, `RSS sampled ${samples} times`);
    assert.ok(
      peak - idle <= RSS_BUDGET_KB,
      `peak RSS ${peak} kB is ${peak - idle} kB over idle (${idle} kB); at most ${RSS_BUDGET_KB}`,
    );
  });
});
