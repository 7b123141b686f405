import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  api,
  type Device,
  type Page,
  type Point,
  query,
  type Reading,
  serverNow,
  V1,
} from '../api.js';
import { Chart, type ChartData, useWidth } from '../chart.js';
import { useRefresh, useStream } from '../connection.js';
import { duration, fromLocalInput, localInput, num, RANGES, time } from '../format.js';
import { html } from '../html.js';
import { Ring, Throttle } from '../ring.js';
import { navigate, params } from '../router.js';
import { Badge, LoadError, Table } from './common.js';

/** Live readings kept between two redraws (a redraw takes them all). */
const RING = 4096;
/** At most two redraws a second. */
const REDRAW_MS = 500;
const RAW_PAGE = 50;

/** What the page asks the history for: the range, and the step that keeps points ≤ pixels. */
export interface HistoryWindow {
  from: number;
  to: number;
  step: number;
  live: boolean;
}

/**
 * The step (ms) of a chart `width` pixels wide over `range` ms: whole seconds, whole minutes past
 * a minute (the store's minute rollups answer those), and at most `width` buckets over the range,
 * however it is aligned.
 */
export function stepFor(range: number, width: number): number {
  let s = Math.max(1, Math.ceil(range / 1000 / Math.max(1, width - 1)));
  if (s > 60) s = Math.ceil(s / 60) * 60;
  return s * 1000;
}

/** The range the URL names: `range=1h|24h|7d` (live, to now), or `from` and `to` (fixed). */
function rangeOf(url: string): { preset: string | null; from: number; to: number } {
  const p = params(url);
  const from = Date.parse(p.get('from') ?? '');
  const to = Date.parse(p.get('to') ?? '');
  if (!Number.isNaN(from) && !Number.isNaN(to) && from < to) return { preset: null, from, to };
  const preset = RANGES[p.get('range') ?? ''] !== undefined ? (p.get('range') as string) : '1h';
  const now = serverNow();
  return { preset, from: now - (RANGES[preset] as number), to: now };
}

interface SeriesState {
  unit?: string;
  /** Bumped on every change: a chart whose series did not change is not drawn again. */
  rev?: number;
  /** Bucket starts (ms), their averages and reading counts, in time order. */
  t: number[];
  v: number[];
  n: number[];
}

/** The series of a metric whose history has not come yet (never changed). */
const EMPTY: SeriesState = { t: [], v: [], n: [] };

/** A live reading into its metric's buckets: the average of a bucket stays exact (counts kept). */
function merge(series: Map<string, SeriesState>, r: Reading, step: number): void {
  let s = series.get(r.metric);
  if (!s) {
    s = { t: [], v: [], n: [], ...(r.unit ? { unit: r.unit } : {}) };
    series.set(r.metric, s);
  }
  const ts = Date.parse(r.ts);
  const bucket = ts - (((ts % step) + step) % step);
  const last = s.t.length - 1;
  s.rev = (s.rev ?? 0) + 1;
  if (last >= 0 && s.t[last] === bucket) {
    const n = s.n[last] as number;
    s.v[last] = ((s.v[last] as number) * n + r.value) / (n + 1);
    s.n[last] = n + 1;
  } else if (last < 0 || bucket > (s.t[last] as number)) {
    s.t.push(bucket);
    s.v.push(r.value);
    s.n.push(1);
  }
  // A live reading older than the last bucket (out of order) waits for the next history fetch.
}

/** Buckets before `from` leave a sliding (live) chart. */
function trim(series: Map<string, SeriesState>, from: number): void {
  for (const s of series.values()) {
    let i = 0;
    while (i < s.t.length && (s.t[i] as number) < from) i++;
    if (i > 0) {
      s.rev = (s.rev ?? 0) + 1;
      s.t.splice(0, i);
      s.v.splice(0, i);
      s.n.splice(0, i);
    }
  }
}

/**
 * One device: its latest values, a history chart per metric over 1 h, 24 h, 7 d or a custom range
 * (downsampled by `/readings?step=` to no more points than the chart has pixels), live readings
 * from the stream into a ring buffer and onto the charts at most twice a second (not while the tab
 * is hidden), the raw readings, and export links.
 */
export function DevicePage(props: { id: string; url: string }) {
  const { id } = props;
  const range = useMemo(() => rangeOf(props.url), [props.url]);
  const [device, setDevice] = useState<Device | null>(null);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const box = useRef<HTMLDivElement>(null);
  const width = useWidth(box);
  const [win, setWin] = useState<HistoryWindow | null>(null);
  const [liveTo, setLiveTo] = useState(0);
  const series = useRef(new Map<string, SeriesState>());
  const [version, setVersion] = useState(0);
  const ring = useRef(new Ring<Reading>(RING));
  const latest = useRef(new Map<string, Reading>());
  const [raw, setRaw] = useState<{ items: Reading[]; next: string | null; older: boolean } | null>(null);

  useRefresh(
    async () => {
      try {
        setDevice(await api<Device>(`${V1}/devices/${encodeURIComponent(id)}`));
        setMissing(false);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) setMissing(true);
        else setError(err);
      }
    },
    [id],
    10_000,
  );

  // The history: fetched when the range or width changes, and on resync.
  // One request per metric, a few at a time: each chart draws as soon as its own points are in.
  const metricNames = (device?.metrics.map((m) => m.metric) ?? []).sort().join('\u0000');
  const generation = useRef(0);
  const fetchHistory = async () => {
    if (width === 0 || device === null) return;
    const { preset } = range;
    const { from, to } = preset ? rangeOf(props.url) : range;
    const step = stepFor(to - from, width);
    const aligned = from - (from % step);
    const w: HistoryWindow = { from: aligned, to, step, live: preset !== null };
    const run = ++generation.current;
    const fresh = new Map<string, SeriesState>();
    ring.current.drain();
    ring.current.dropped = 0;
    series.current = fresh;
    setWin(w);
    setVersion((v) => v + 1);
    const queue = metricNames ? metricNames.split('\u0000') : [];
    const one = async (metric: string) => {
      const s: SeriesState = { t: [], v: [], n: [] };
      let cursor: string | null = null;
      do {
        const page: Page<Point> = await api<Page<Point>>(
          `${V1}/readings${query({
            device: id,
            metric,
            from: aligned,
            to,
            step: `${step / 1000}s`,
            agg: 'avg',
            limit: 100_000,
            cursor,
          })}`,
        );
        for (const p of page.items) {
          if (p.unit) s.unit = p.unit;
          s.t.push(Date.parse(p.ts));
          s.v.push(p.value);
          s.n.push(p.count);
        }
        cursor = page.next;
      } while (cursor !== null);
      if (generation.current !== run) return;
      // Live readings that came meanwhile: their buckets after the history's last one.
      const live = fresh.get(metric);
      const last = s.t.length ? (s.t[s.t.length - 1] as number) : Number.NEGATIVE_INFINITY;
      if (live) {
        for (let i = 0; i < live.t.length; i++) {
          if ((live.t[i] as number) <= last) continue;
          s.t.push(live.t[i] as number);
          s.v.push(live.v[i] as number);
          s.n.push(live.n[i] as number);
        }
      }
      fresh.set(metric, s);
      setVersion((v) => v + 1);
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(4, queue.length) }, async () => {
          for (let m = queue.shift(); m !== undefined; m = queue.shift()) await one(m);
        }),
      );
      if (generation.current === run) setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useRefresh(
    () => void fetchHistory(),
    [props.url, width === 0 ? 0 : Math.round(width / 50), device === null, metricNames],
  );

  const loadRaw = async (cursor: string | null) => {
    try {
      const page = await api<Page<Reading>>(
        `${V1}/readings${query({ device: id, order: 'desc', limit: RAW_PAGE, cursor })}`,
      );
      setRaw({ items: page.items, next: page.next, older: cursor !== null });
    } catch (err) {
      setError(err);
    }
  };
  useRefresh(() => void loadRaw(null), [id]);

  // Live: readings of this device into the ring; a redraw (≤ 2/s, never hidden) takes them.
  const winRef = useRef(win);
  winRef.current = win;
  const throttle = useRef<Throttle | null>(null);
  useEffect(() => {
    const t = new Throttle(() => {
      const w = winRef.current;
      const r = ring.current;
      if (r.dropped > 0) {
        void fetchHistory();
        return;
      }
      const readings = r.drain();
      if (!w) return;
      for (const reading of readings) {
        latest.current.set(reading.metric, reading);
        const ts = Date.parse(reading.ts);
        if (ts >= w.from && (w.live || ts < w.to)) merge(series.current, reading, w.step);
      }
      if (w.live) {
        const to = serverNow();
        const from = to - (w.to - w.from);
        trim(series.current, from - (from % w.step));
        setLiveTo(to);
      }
      setRaw((raw) =>
        raw && !raw.older ? { ...raw, items: [...readings.reverse(), ...raw.items].slice(0, RAW_PAGE) } : raw,
      );
      setVersion((v) => v + 1);
    }, REDRAW_MS);
    throttle.current = t;
    return () => t.stop();
  }, [id]);
  useStream(`?type=reading&device=${encodeURIComponent(id)}`, (type, data) => {
    if (type !== 'reading') return;
    ring.current.push(data as Reading);
    throttle.current?.request();
  });

  const drawnData = useRef(new Map<string, { s: SeriesState; rev: number; data: ChartData }>());
  const charts = useMemo(() => {
    const out: { metric: string; unit?: string; data: ChartData; pending: boolean }[] = [];
    const dataOf = (metric: string, s: SeriesState): ChartData => {
      const cached = drawnData.current.get(metric);
      if (cached && cached.s === s && cached.rev === (s.rev ?? 0)) return cached.data;
      const data = { x: s.t.map((t) => t / 1000), series: [{ label: metric, values: s.v.slice() }] };
      drawnData.current.set(metric, { s, rev: s.rev ?? 0, data });
      return data;
    };
    const names = new Set<string>([
      ...(device?.metrics.map((m) => m.metric) ?? []),
      ...series.current.keys(),
    ]);
    for (const metric of [...names].sort()) {
      const s = series.current.get(metric) ?? EMPTY;
      const unit = s.unit ?? device?.metrics.find((m) => m.metric === metric)?.unit;
      out.push({
        metric,
        ...(unit ? { unit } : {}),
        data: dataOf(metric, s),
        pending: s === EMPTY,
      });
    }
    return out;
  }, [version, device]);

  const setRange = (changes: Record<string, string>) =>
    navigate(`/devices/${encodeURIComponent(id)}${query(changes)}`);
  const customFrom = useRef<HTMLInputElement>(null);
  const customTo = useRef<HTMLInputElement>(null);
  const applyCustom = (e: Event) => {
    e.preventDefault();
    const from = fromLocalInput(customFrom.current?.value ?? '');
    const to = fromLocalInput(customTo.current?.value ?? '');
    if (from !== null && to !== null && from < to)
      setRange({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
  };
  const latestValues = (device?.metrics ?? []).map((m) => {
    const live = latest.current.get(m.metric);
    return live && Date.parse(live.ts) >= Date.parse(m.ts) ? { ...m, value: live.value, ts: live.ts } : m;
  });
  const exportRange = win
    ? { from: new Date(win.from).toISOString(), to: new Date(win.live ? serverNow() : win.to).toISOString() }
    : {};
  const now = serverNow();
  // A live range's end moves only when the charts take new readings (liveTo): a chart whose data
  // did not change is then not drawn again because another's did.
  const xRange = useMemo<[number, number] | undefined>(() => {
    if (!win) return undefined;
    if (!win.live) return [win.from / 1000, win.to / 1000];
    const end = Math.max(liveTo, win.to);
    return [(end - (win.to - win.from)) / 1000, end / 1000];
  }, [win, liveTo]);

  if (missing) {
    return html`<section><h1>Device ${id}</h1><p>The gateway knows no device ${id}. <a href="/devices">All devices</a></p></section>`;
  }
  return html`<section aria-labelledby="device-title">
    <h1 id="device-title">Device <span class="id">${id}</span></h1>
    <${LoadError} error=${error} />
    ${
      device
        ? html`<p>Source ${device.source} · <${Badge} state=${device.status} /> · last reading ${duration(now - Date.parse(device.lastSeen))} ago</p>`
        : html`<p>Loading…</p>`
    }
    <h2>Latest values</h2>
    <dl class="latest" aria-label="Latest values">
      ${latestValues.map(
        (m) =>
          html`<div data-metric=${m.metric}><dt>${m.metric}</dt><dd><span class="value">${num(m.value)}</span>${m.unit ? ` ${m.unit}` : ''} <small>${time(m.ts)}</small></dd></div>`,
      )}
    </dl>
    <h2>History</h2>
    <div class="range" role="group" aria-label="Range">
      ${Object.keys(RANGES).map(
        (r) =>
          html`<button type="button" aria-pressed=${range.preset === r ? 'true' : 'false'} onClick=${() => setRange({ range: r })}>${r}</button>`,
      )}
      <form class="custom" onSubmit=${applyCustom}>
        <label>From <input ref=${customFrom} type="datetime-local" value=${localInput(range.from)} /></label>
        <label>To <input ref=${customTo} type="datetime-local" value=${localInput(range.to)} /></label>
        <button type="submit">Show range</button>
      </form>
    </div>
    <div
      class="charts"
      ref=${box}
      data-from=${win?.from}
      data-to=${win?.to}
      data-step=${win?.step}
      data-live=${win ? String(win.live) : undefined}
    >
      ${
        win === null
          ? html`<p>Loading…</p>`
          : charts.map(
              (c) => html`<figure key=${c.metric}>
                <figcaption>${c.metric}${c.unit ? ` (${c.unit})` : ''} · ${win.live ? `last ${range.preset}` : `${time(win.from)} – ${time(win.to)}`} · avg per ${duration(win.step)}</figcaption>
                <${Chart} label=${`${id} ${c.metric}`} data=${c.data} xRange=${xRange} pending=${c.pending} />
              </figure>`,
            )
      }
      ${win !== null && charts.length === 0 ? html`<p>No readings in this range.</p>` : null}
    </div>
    <p class="exports">Export this range:${' '}
      <a download href=${`${V1}/readings/export${query({ device: id, ...exportRange, format: 'csv' })}`}>CSV</a>${' · '}
      <a download href=${`${V1}/readings/export${query({ device: id, ...exportRange, format: 'ndjson' })}`}>NDJSON</a>
    </p>
    <h2>Raw readings</h2>
    <${Table}
      label="Raw readings"
      head=${['Time', 'Metric', 'Value', 'Unit', 'Tags']}
      rowCount=${raw?.items.length ?? 0}
      empty=${raw ? 'No readings.' : 'Loading…'}
      rows=${(raw?.items ?? []).map(
        (r) =>
          html`<tr><td>${time(r.ts)}</td><td>${r.metric}</td><td class="num">${num(r.value)}</td><td>${r.unit ?? ''}</td><td class="wrap">${
            r.tags
              ? Object.entries(r.tags)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(', ')
              : ''
          }</td></tr>`,
      )}
    />
    <nav class="pager" aria-label="Raw readings pages">
      <button type="button" disabled=${!raw?.older} onClick=${() => void loadRaw(null)}>Newest</button>
      <button type="button" disabled=${!raw?.next} onClick=${() => void loadRaw(raw?.next ?? null)}>Older</button>
    </nav>
  </section>`;
}
