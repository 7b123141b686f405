/**
 * ui/ — the dashboard (SPEC §5 `GET /`): Preact components in htm templates, uPlot charts, bundled
 * by scripts/build-ui.mjs into dist/ui. It talks to the gateway over HTTP only (`/api/v1`, with the
 * session cookie the sign-in sets), and imports nothing from the server's folders.
 *
 * This module: the API client. Every request goes through `api()`, which tells the connection
 * state (connection.ts) when the gateway cannot be reached or the session has ended.
 */

export const V1 = '/api/v1';

/** An error answer of the API: `{"error": {"code", "message", "details"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: { path?: string; message: string }[],
  ) {
    super(message);
  }
}

/** The gateway could not be reached (no answer at all). */
export class Unreachable extends Error {}

type Hook = {
  unreachable(): void;
  reached(): void;
  unauthorized(): void;
};
let hook: Hook = { unreachable() {}, reached() {}, unauthorized() {} };

/** Set by connection.ts: who hears of unreachable gateways and ended sessions. */
export function setApiHook(h: Hook): void {
  hook = h;
}

/** The gateway's clock minus the browser's (ms), from the `Date` of its answers; 0 within 2 s. */
let clockOffset = 0;

/** Now on the gateway's clock, as far as the browser can tell. */
export function serverNow(): number {
  return Date.now() + clockOffset;
}

function noteDate(res: Response): void {
  const date = Date.parse(res.headers.get('date') ?? '');
  if (Number.isNaN(date)) return;
  const offset = date + 500 - Date.now();
  clockOffset = Math.abs(offset) > 2000 ? offset : 0;
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  signal?: AbortSignal;
  /** Answer the body as text instead of JSON. */
  text?: boolean;
}

/** GETs sent before the page asked for them (at startup), each taken by the first `api()` of its path. */
const prefetched = new Map<string, { at: number; response: Promise<Response> }>();
/** A prefetched answer older than this is not used: the page asks again. */
const PREFETCH_FRESH_MS = 5000;

function send(path: string, options: RequestOptions): Promise<Response> {
  return fetch(path, {
    method: options.method ?? 'GET',
    credentials: 'same-origin',
    cache: 'no-store',
    headers: options.body !== undefined ? { 'content-type': 'application/json' } : {},
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * Sends a GET now, before the page that needs it has rendered (main.ts, at startup): the first
 * `api(path)` within a few seconds takes its answer, if it is a good one, instead of asking again.
 * So the sign-in check and the first page's data travel side by side, not one after the other.
 */
export function prefetch(path: string): void {
  const response = send(path, {});
  response.catch(() => {}); // A failure is asked again by the api() that takes it.
  prefetched.set(path, { at: performance.now(), response });
}

/** A request to the API; resolves with the parsed body (undefined for 204), throws ApiError or Unreachable. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  let res: Response;
  try {
    const early = (options.method ?? 'GET') === 'GET' ? prefetched.get(path) : undefined;
    if (early) prefetched.delete(path);
    // Only a good answer is taken: one refused before the sign-in (401), or lost, is asked again.
    const taken =
      early && performance.now() - early.at < PREFETCH_FRESH_MS
        ? await early.response.then(
            (r) => (r.ok ? r : null),
            () => null,
          )
        : null;
    res = taken ?? (await send(path, options));
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    hook.unreachable();
    throw new Unreachable('the gateway cannot be reached');
  }
  hook.reached();
  noteDate(res);
  if (res.status === 204) return undefined as T;
  if (!res.ok) {
    let body: {
      error?: { code?: string; message?: string; details?: { path?: string; message: string }[] };
    } = {};
    try {
      body = await res.json();
    } catch {
      // Not the API's error shape (a proxy's page): the status says enough.
    }
    if (res.status === 401 && path !== `${V1}/session`) hook.unauthorized();
    throw new ApiError(
      res.status,
      body.error?.code ?? 'http',
      body.error?.message ?? `${res.status} ${res.statusText}`,
      body.error?.details ?? [],
    );
  }
  return (options.text ? await res.text() : await res.json()) as T;
}

// The API's shapes, as far as the dashboard reads them (docs/SPEC.md §5; /api/v1/openapi.json).

export interface SourceStatus {
  id: string;
  type: string;
  state: string;
  lastReadingAt: string | null;
  lastError?: string | null;
  [k: string]: unknown;
}

export interface UpstreamStatus {
  id: string;
  type: string;
  state: string;
  backlog: number;
  oldestAgeSeconds: number | null;
  lastError: string | null;
  lastDeliveryAt: string | null;
  acked: number;
}

export interface Health {
  status: string;
  gateway: string;
  version: string;
  uptime: number;
  startedAt: string;
  sources: SourceStatus[];
  broker: { listening: boolean; port: number; clients: number } | null;
  store: { path: string; bytes: number; pendingWrites: number; lastError: string | null };
  upstreams: UpstreamStatus[];
  outbox: { rows: number; lastSeq: number | null };
}

export interface MetricValue {
  metric: string;
  value: number;
  ts: string;
  unit?: string;
}

export interface Device {
  id: string;
  source: string;
  status: string;
  firstSeen: string;
  lastSeen: string;
  metrics: MetricValue[];
}

/** `/devices` with a query parameter: one page of the matching devices, with counts. */
export interface DevicePage {
  items: Device[];
  total: number;
  known: number;
  byStatus: Record<string, number>;
}

export interface Reading {
  device: string;
  metric: string;
  value: number;
  ts: string;
  unit?: string;
  tags?: Record<string, string>;
}

export interface Point {
  device: string;
  metric: string;
  ts: string;
  value: number;
  count: number;
  unit?: string;
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export interface RuleView {
  id: string;
  origin: 'config' | 'api';
  spec: Record<string, unknown>;
  createdAt?: string;
  updatedAt?: string;
}

export type Key = Record<string, string | null>;

export interface ResultRecord {
  type: 'result';
  rule: string;
  key: Key;
  start: string;
  end: string;
  count: number;
  values: Record<string, number | null>;
  revision: number;
}

export interface DecisionRecord {
  type: 'decision';
  rule: string;
  key: Key;
  state: 'firing' | 'ok';
  at: string;
  values: Record<string, number | null>;
}

export interface LateRecord {
  type: 'late';
  rule: string;
  reading: Reading;
  [k: string]: unknown;
}

export interface Alert {
  rule: string;
  key: Key;
  state: 'firing';
  since: string | null;
  values: Record<string, number | null>;
}

export interface BacktestJob {
  id: string;
  state: 'running' | 'done' | 'failed' | 'cancelled';
  rule: unknown;
  ruleId?: string;
  from: string;
  to: string;
  progress: { readings: number; fraction: number };
  summary: {
    readings: number;
    windows: number;
    results: number;
    decisions: { firing: number; ok: number };
    late: number;
  };
  records: number;
  truncated: boolean;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
}

/** Query strings without undefined values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
