/**
 * `GET /readings/export` (SPEC §5, issue 16) over real HTTP, on the API of a store file: NDJSON and
 * CSV (RFC 4180) of every matching reading in (ts, arrival) order; bad parameters; back-pressure
 * (a client that stops reading stops the store's reads), cancellation when the client goes away,
 * and the cap on exports at once.
 */
import assert from 'node:assert/strict';
import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Reading, readingToJson } from '../../src/model/reading.js';
import { type BacktestRig, backtestRig } from '../backtest/rig.js';
import { fillStore, type HistorySpec, historyReadings, prng, writeReadings } from '../helpers/history.js';
import { parseMetrics } from '../helpers/prometheus.js';
import { makeTempDir } from '../helpers/tmp.js';

const HOUR = 3_600_000;
/** Event times from the clock: two days ago, on the hour. */
const START = Math.floor((Date.now() - 48 * HOUR) / HOUR) * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();

interface ErrorBody {
  error: { code: string; message: string; details?: { path?: string; message: string }[] };
}

/** Writes readings into a store file in the order given: that order is their arrival order (seq). */
function writeStore(path: string, readings: readonly Reading[]): void {
  writeReadings(path, readings, START, 'test');
}

const STEPS = 1000;
const PLAIN_DEVICES = ['d-3', 'd-0', 'd-6', 'd-1', 'd-5', 'd-2', 'd-4'];
/** Series whose unit or tags hold what CSV must quote: a comma, a double quote, CR, LF. */
const ODD: Omit<Reading, 'value' | 'ts'>[] = [
  { device: 'q-1', metric: 'temp', unit: 'a,b', tags: { note: 'say "hi"' } },
  { device: 'q-2', metric: 'temp', unit: 'line1\nline2', tags: { note: 'x\r\ny', zone: 'a,b' } },
  { device: 'q-3', metric: 'len', unit: 'in"' },
  { device: 'q-4', metric: 'len', unit: 'cr\rhere', tags: { plain: 'north' } },
];

/**
 * The readings in arrival order: at each second 7 devices × 2 metrics (14 at one ts, so that chunk
 * and page boundaries fall inside groups of equal ts) in an order that changes every second and is
 * not the order of device names; the odd series every 10 s; and every 97th second's readings arrive
 * late, after all the others.
 */
function arrivals(): Reading[] {
  const random = prng(7);
  const onTime: Reading[] = [];
  const late: Reading[] = [];
  const values = [0, -3.5, 21.25, 1e-7, 12345678.9, 42];
  for (let s = 0; s < STEPS; s++) {
    const ts = START + s * 1000;
    const at: Reading[] = [];
    for (const device of PLAIN_DEVICES) {
      at.push({ device, metric: 'temp', value: Math.round(random() * 10_000) / 100, ts, unit: '°C' });
      at.push({ device, metric: 'hum', value: values[(s + at.length) % values.length] as number, ts });
    }
    if (s % 10 === 0) for (const o of ODD) at.push({ ...o, value: s / 10, ts });
    // A different order every second.
    for (let i = at.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [at[i], at[j]] = [at[j] as Reading, at[i] as Reading];
    }
    (s % 97 === 0 ? late : onTime).push(...at);
  }
  return [...onTime, ...late];
}

/** Export order: by ts, equal ts in arrival order (Array.prototype.sort is stable). */
const exportOrder = (readings: readonly Reading[]) => [...readings].sort((a, b) => a.ts - b.ts);

/**
 * A strict RFC 4180 parser: records end in CRLF; a field is bare (no quote, comma, CR or LF) or
 * quoted, with quotes doubled inside. Throws on anything else.
 */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let i = 0;
  while (i < text.length) {
    const record: string[] = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= text.length) throw new Error('unterminated quoted field');
          if (text[i] === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
            } else {
              i++;
              break;
            }
          } else field += text[i++];
        }
      } else {
        while (i < text.length && !/[",\r\n]/.test(text[i] as string)) field += text[i++];
        if (text[i] === '"') throw new Error(`a quote inside a bare field at ${i}`);
      }
      record.push(field);
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text.startsWith('\r\n', i)) {
        i += 2;
        break;
      }
      throw new Error(`expected a comma or CRLF at ${i}, found ${JSON.stringify(text.slice(i, i + 10))}`);
    }
    records.push(record);
  }
  return records;
}

/** A GET whose response is left unread: the caller decides when (and whether) to consume it. */
function openExport(url: string): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false });
    req.on('response', (res) => {
      res.pause();
      resolve({ req, res });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Reads the rest of a response, counting lines; resolves with the count and the last line. */
function countLines(
  res: IncomingMessage,
  onLines?: (n: number) => void,
): Promise<{ n: number; last: string }> {
  return new Promise((resolve, reject) => {
    let n = 0;
    let tail = '';
    res.on('data', (b: Buffer) => {
      for (let at = b.indexOf(10); at >= 0; at = b.indexOf(10, at + 1)) n++;
      tail = (tail + b.toString('utf8')).slice(-400);
      onLines?.(n);
    });
    res.on('end', () => resolve({ n, last: tail.trimEnd().split('\n').at(-1) ?? '' }));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
    res.resume();
  });
}

async function metric(base: string, name: string): Promise<number> {
  return parseMetrics(await (await fetch(`${base}/metrics`)).text()).get(name) ?? 0;
}

/** Polls every 25 ms until `check` holds, for at most `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Polls a value every 25 ms until it has not changed for `quietMs` (bounded by `ms`): where a
 * counter stops. A server that kept reading would pass the bound of the caller's assertion first.
 */
async function settled(read: () => Promise<number>, quietMs: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  let last = await read();
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 25));
    const v = await read();
    if (v !== last) [last, since] = [v, Date.now()];
    else if (Date.now() - since >= quietMs) return v;
    if (Date.now() > deadline) throw new Error(`still changing after ${ms} ms (at ${v})`);
  }
}

describe('GET /readings/export: content', () => {
  const dir = makeTempDir('tidegate-export-');
  const stored = arrivals();
  const ordered = exportOrder(stored);
  let rig: BacktestRig;

  before(async () => {
    writeStore(dir.file('store.db'), stored);
    rig = await backtestRig(dir.file('store.db'));
  });
  after(async () => {
    await rig?.close();
    dir.remove();
  });

  const get = (query: string) => fetch(`${rig.base}/api/v1/readings/export${query}`);
  const ndjson = (r: Reading) => JSON.stringify(readingToJson(r));

  /** Every /readings page of a filter, followed by its cursor, items as JSON lines. */
  async function paged(query: string, limit: number): Promise<string[]> {
    const out: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `${query}${query ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await rig.call<{ items: unknown[]; next: string | null }>('GET', `/api/v1/readings${q}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      for (const item of page.body.items) out.push(JSON.stringify(item));
      cursor = page.body.next;
      pages++;
    } while (cursor !== null);
    assert.ok(pages > 1 || out.length < limit, 'paged through more than one page');
    return out;
  }

  it('streams every reading as NDJSON in (ts, arrival) order, in the shape of /readings items', async () => {
    const res = await get('');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson; charset=utf-8');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="readings.ndjson"');
    const text = await res.text();
    assert.ok(text.endsWith('\n'), 'the last line ends too');
    const lines = text.slice(0, -1).split('\n');
    assert.equal(lines.length, stored.length);
    // More than a few chunks (2048 readings) and pages, with boundaries inside groups of equal ts.
    assert.ok(stored.length > 5 * 2048);
    for (let i = 0; i < ordered.length; i++) {
      if (lines[i] !== ndjson(ordered[i] as Reading))
        assert.fail(`line ${i}: ${lines[i]}\n  expected ${ndjson(ordered[i] as Reading)}`);
    }
    // Equal ts keeps arrival order: not the order of device names or of series ids.
    const firstSecond = lines.slice(0, 18).map((l) => JSON.parse(l) as { device: string; metric: string });
    const names = firstSecond.map((r) => `${r.device}/${r.metric}`);
    assert.notDeepEqual(names, [...names].sort(), 'arrival order at one ts is not name order');
    // Readings that arrived late sit at their ts, in the order they arrived.
    const lateTs = iso(START + 97_000);
    const at97 = lines.filter((l) => l.includes(`"ts":"${lateTs}"`));
    assert.equal(at97.length, 14);
    assert.deepEqual(at97, stored.filter((r) => r.ts === START + 97_000).map(ndjson));
  });

  it('equals the concatenation of every /readings page of the same filter', async () => {
    const all = await (await get('')).text();
    assert.deepEqual(all.slice(0, -1).split('\n'), await paged('', 1000));
    const filter = `?device=q-2,d-5&metric=temp,len&from=${iso(START + 123_000)}&to=${START + 654_000}`;
    const some = await (await get(filter)).text();
    const lines = some.slice(0, -1).split('\n');
    assert.ok(lines.length > 500);
    assert.deepEqual(lines, await paged(filter, 97));
  });

  it('keeps to device, metric, from (inclusive) and to (exclusive)', async () => {
    const cases: [string, (r: Reading) => boolean][] = [
      ['?device=d-1', (r) => r.device === 'd-1'],
      ['?device=d-1,q-3', (r) => r.device === 'd-1' || r.device === 'q-3'],
      ['?metric=hum', (r) => r.metric === 'hum'],
      ['?device=q-1,q-3&metric=len', (r) => r.device === 'q-3'],
      [`?from=${START + 990_000}`, (r) => r.ts >= START + 990_000],
      [`?to=${iso(START + 10_000)}`, (r) => r.ts < START + 10_000],
      [
        `?from=${iso(START + 500_000)}&to=${START + 510_000}&metric=temp`,
        (r) => r.ts >= START + 500_000 && r.ts < START + 510_000 && r.metric === 'temp',
      ],
      ['?device=nobody', () => false],
    ];
    for (const [query, keep] of cases) {
      const res = await get(query);
      assert.equal(res.status, 200, query);
      const text = await res.text();
      const want = ordered.filter(keep).map(ndjson);
      assert.deepEqual(text === '' ? [] : text.slice(0, -1).split('\n'), want, query);
      if (want.length === 0) assert.equal(text, '', `${query}: an empty body`);
    }
  });

  it('writes CSV with a header row, CRLF line ends and RFC 4180 quoting', async () => {
    const res = await get('?format=csv');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/csv; charset=utf-8; header=present');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="readings.csv"');
    const text = await res.text();
    assert.ok(text.startsWith('device,metric,ts,value,unit,tags\r\n'));
    assert.ok(text.endsWith('\r\n'));
    // Every LF is part of a CRLF but the one inside q-2's quoted unit.
    const bareLf = text.match(/(?<!\r)\n/g)?.length ?? 0;
    assert.equal(bareLf, stored.filter((r) => r.device === 'q-2').length);
    const records = parseCsv(text);
    assert.deepEqual(records[0], ['device', 'metric', 'ts', 'value', 'unit', 'tags']);
    const rows = records.slice(1);
    assert.equal(rows.length, ordered.length);
    for (let i = 0; i < ordered.length; i++) {
      const r = ordered[i] as Reading;
      const row = rows[i] as string[];
      assert.equal(row.length, 6, `row ${i}`);
      const [device, metricName, ts, value, unit, tags] = row as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      assert.deepEqual(
        {
          device,
          metric: metricName,
          ts,
          value: Number(value),
          unit,
          tags: tags === '' ? undefined : JSON.parse(tags),
        },
        {
          device: r.device,
          metric: r.metric,
          ts: iso(r.ts),
          value: r.value,
          unit: r.unit ?? '',
          tags: r.tags,
        },
        `row ${i}`,
      );
    }
    // The fields that need it are quoted, with quotes doubled; the others are not.
    const q1 = text.split('\r\n').find((l) => l.startsWith('q-1,')) as string;
    assert.match(q1, /^q-1,temp,[^,]+,\d+,"a,b","\{""note"":""say \\""hi\\""""\}"$/);
    assert.ok(text.includes(',"in""",\r\n'), 'a unit with a quote');
    assert.ok(text.includes(',"line1\nline2","{'), 'a unit with LF');
    assert.ok(text.includes(',"cr\rhere","{""plain"":""north""}"\r\n'), 'a unit with CR');
    assert.match(text, /\r\nd-\d,hum,[^,"]+,-?[\d.e-]+,,\r\n/, 'no unit, no tags: empty fields');
  });

  it('filters CSV like NDJSON', async () => {
    const text = await (await get(`?format=csv&device=q-1,q-2&from=${START + 300_000}`)).text();
    const rows = parseCsv(text).slice(1);
    const want = ordered.filter((r) => (r.device === 'q-1' || r.device === 'q-2') && r.ts >= START + 300_000);
    assert.equal(rows.length, want.length);
    assert.deepEqual(
      rows.map((r) => [r[0], r[2], r[4]]),
      want.map((r) => [r.device, iso(r.ts), r.unit]),
    );
    // Nothing matches: the header alone.
    assert.equal(
      await (await get('?format=csv&device=nobody')).text(),
      'device,metric,ts,value,unit,tags\r\n',
    );
  });

  it('refuses bad parameters with 400 and details', async () => {
    const bad = async (query: string, path: string, message: RegExp) => {
      const res = await rig.call<ErrorBody>('GET', `/api/v1/readings/export${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'bad_request', query);
      const detail = res.body.error.details?.find((d) => d.path === path);
      assert.ok(detail, `${query}: a detail at ${path}: ${JSON.stringify(res.body)}`);
      assert.match(detail.message, message, query);
    };
    await bad('?limit=10', 'limit', /unknown query parameter/);
    await bad('?format=xml', 'format', /ndjson|csv/);
    await bad(`?from=${START + 5000}&to=${START + 5000}`, 'from', /before to/);
    await bad(`?from=${iso(START + 6000)}&to=${iso(START + 5000)}`, 'from', /before to/);
    await bad('?from=yesterday', 'from', /ISO-8601/);
    await bad('?device=a%20b', 'device', /names/);
    await bad('?format=csv&format=ndjson', 'format', /./);
  });
});

describe('GET /readings/export: back-pressure, cancellation, at most 4 at once', () => {
  const dir = makeTempDir('tidegate-export-big-');
  const TOTAL = 1_000_000;
  const COUNTER = 'tidegate_export_readings_total{format="ndjson"}';
  const ACTIVE = 'tidegate_exports_active';
  const spec: HistorySpec = { devices: 50, readings: TOTAL, start: START, step: 1000 };
  let rig: BacktestRig;
  /** The last reading of the history (the export's last line) and how many are in its first 10 s. */
  let lastLine = '';
  let firstTenSeconds = 0;

  before(async () => {
    let last: Reading | undefined;
    for (const r of historyReadings(spec)) {
      last = r;
      if (r.ts < START + 10_000) firstTenSeconds++;
    }
    lastLine = JSON.stringify(readingToJson(last as Reading));
    assert.equal(fillStore(dir.file('store.db'), spec), TOTAL);
    rig = await backtestRig(dir.file('store.db'));
  });
  after(async () => {
    await rig?.close();
    dir.remove();
  });

  const url = (query = '') => `${rig.base}/api/v1/readings/export${query}`;
  const exported = () => metric(rig.base, COUNTER);
  const active = () => metric(rig.base, ACTIVE);

  it('stops reading the store while the client does not read, and completes when it does', async (t) => {
    const before = await exported();
    const { req, res } = await openExport(url());
    try {
      assert.equal(res.statusCode, 200);
      // The server fills the socket's buffers, then waits for them to drain.
      const paused = (await settled(exported, 400, 20_000)) - before;
      t.diagnostic(`paused client: ${paused} of ${TOTAL} readings read from the store`);
      assert.ok(paused > 0, 'the export started');
      assert.ok(paused < TOTAL * 0.1, `read ${paused} of ${TOTAL} readings with the client paused`);
      assert.equal(await active(), 1);
      // Resumed: every reading, the last one last.
      const { n, last } = await countLines(res);
      assert.equal(n, TOTAL);
      assert.equal(last, lastLine);
      assert.equal((await exported()) - before, TOTAL);
      await until(async () => (await active()) === 0, 5_000, 'the export to end');
    } finally {
      req.destroy();
    }
  });

  it('stops reading the store when the client goes away halfway', async (t) => {
    const before = await exported();
    const { req, res } = await openExport(url());
    let read = 0;
    await new Promise<void>((resolve, reject) => {
      res.on('data', (b: Buffer) => {
        for (let at = b.indexOf(10); at >= 0; at = b.indexOf(10, at + 1)) read++;
        if (read >= TOTAL / 2) {
          req.destroy();
          resolve();
        }
      });
      res.on('end', () => reject(new Error('the export ended before the client went away')));
      res.resume();
    });
    await until(async () => (await active()) === 0, 5_000, 'tidegate_exports_active back to 0');
    const total = (await settled(exported, 400, 20_000)) - before;
    t.diagnostic(`client read ${read} lines, then went away; the server read ${total} of ${TOTAL}`);
    assert.ok(total >= read);
    // What was in flight (socket buffers, a chunk), not the rest of the store: far less than half of it.
    const rest = TOTAL - read;
    assert.ok(total - read < rest / 2, `the server read ${total} readings, the client ${read}`);
  });

  it('streams at most 4 exports at once: the 5th gets 503 unavailable', async () => {
    const open: { req: ClientRequest; res: IncomingMessage }[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const e = await openExport(url(`?format=${i % 2 ? 'csv' : 'ndjson'}`));
        open.push(e);
        assert.equal(e.res.statusCode, 200);
      }
      assert.equal(await active(), 4);
      const fifth = await rig.call<ErrorBody>('GET', '/api/v1/readings/export');
      assert.equal(fifth.status, 503);
      assert.equal(fifth.body.error.code, 'unavailable');
      assert.match(fifth.body.error.message, /at most 4/);
      // A 400 is still a 400 (parameters are checked first).
      assert.equal((await rig.call('GET', '/api/v1/readings/export?format=xml')).status, 400);
      // One goes away: its place is free again.
      open.shift()?.req.destroy();
      await until(async () => (await active()) === 3, 5_000, 'three exports');
      const again = await fetch(url(`?to=${START + 10_000}`));
      assert.equal(again.status, 200);
      assert.equal((await again.text()).split('\n').length - 1, firstTenSeconds);
    } finally {
      for (const e of open) e.req.destroy();
    }
    await until(async () => (await active()) === 0, 5_000, 'every export to end');
  });
});
