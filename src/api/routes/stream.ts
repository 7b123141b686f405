import type { Request, Response } from 'express';
import { Router } from 'express';
import { z } from 'zod';
import { type Reading, readingToJson } from '../../model/reading.js';
import type { DecisionRecord, LateRecord, ResultRecord } from '../../model/records.js';
import type { BacktestEvent, EventBus, RuleEvent } from '../../runtime/events.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { RouteDoc } from '../openapi.js';
import { namesParam, parseQuery, single } from '../query.js';
import { errorBody } from '../schemas.js';
import { sendError } from '../security.js';

export const STREAM_TYPES = ['reading', 'result', 'decision', 'late', 'backtest', 'rule'] as const;
export type StreamType = (typeof STREAM_TYPES)[number];

export interface StreamOptions {
  /** A comment line this often keeps proxies and clients from timing the connection out. */
  heartbeatMs: number;
  /** The reconnection delay suggested to clients (`retry:`). */
  retryMs: number;
  /** A client with more than this many bytes not yet taken by its socket is dropped. */
  maxPendingBytes: number;
  /** Concurrent stream clients; more are answered 503. */
  maxClients: number;
}

export const DEFAULT_STREAM_OPTIONS: StreamOptions = {
  heartbeatMs: 15_000,
  retryMs: 3_000,
  maxPendingBytes: 1024 * 1024,
  maxClients: 32,
};

const typesParam = single.transform((text, ctx) => {
  const types = text.split(',').map((s) => s.trim());
  const bad = types.find((t) => !(STREAM_TYPES as readonly string[]).includes(t));
  if (bad !== undefined) {
    ctx.issues.push({
      code: 'custom',
      input: text,
      message: `expected a comma list of ${STREAM_TYPES.join(', ')}, found ${JSON.stringify(bad)}`,
    });
    return z.NEVER;
  }
  return types as StreamType[];
});

const streamParams = z.strictObject({
  device: namesParam.optional(),
  metric: namesParam.optional(),
  rule: namesParam.optional(),
  type: typesParam.optional(),
});

/**
 * What a client asked for. A filter constrains only the records that carry its field: `device`
 * and `metric` a reading, a late record's reading, and a result or decision grouped by that field;
 * `rule` the results, decisions, late records and rule changes. `type` picks the record types.
 */
interface StreamFilter {
  types: ReadonlySet<StreamType> | null;
  devices: ReadonlySet<string> | null;
  metrics: ReadonlySet<string> | null;
  rules: ReadonlySet<string> | null;
}

interface StreamClient {
  readonly res: Response;
  readonly filter: StreamFilter;
}

type OutputEvent = ResultRecord | DecisionRecord | LateRecord;

/**
 * Fans the bus out to Server-Sent-Event clients. It listens to the bus only while somebody is
 * connected, serializes each record once for all clients, and never buffers without bound: a client
 * whose socket does not take its bytes (more than `maxPendingBytes` pending) is disconnected and
 * counted in `tidegate_stream_dropped_total`, and reconnects when it is ready to read again.
 */
export class StreamHub {
  private readonly clients = new Set<StreamClient>();
  private unsubscribe: (() => void)[] = [];
  private heartbeat: NodeJS.Timeout | null = null;
  readonly options: StreamOptions;

  constructor(
    private readonly bus: EventBus,
    private readonly metrics: Metrics,
    options: Partial<StreamOptions> = {},
  ) {
    this.options = { ...DEFAULT_STREAM_OPTIONS, ...options };
    metrics.onCollect(() => {
      metrics.streamClients.set(this.clients.size);
      metrics.streamPendingBytes.set(this.pendingBytes);
    });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Bytes written to stream clients and not yet taken by their sockets, over all clients. */
  get pendingBytes(): number {
    let n = 0;
    for (const c of this.clients) n += c.res.writableLength;
    return n;
  }

  routes(): Router {
    const router = Router();
    router.get('/stream', (req, res) => this.open(req, res));
    return router;
  }

  private open(req: Request, res: Response): void {
    const p = parseQuery(streamParams, req.query);
    if (this.clients.size >= this.options.maxClients) {
      res.set('Retry-After', String(Math.ceil(this.options.retryMs / 1000)));
      sendError(res, 503, 'unavailable', `too many stream clients (at most ${this.options.maxClients})`);
      return;
    }
    const client: StreamClient = {
      res,
      filter: {
        types: p.type ? new Set(p.type) : null,
        devices: p.device ? new Set(p.device) : null,
        metrics: p.metric ? new Set(p.metric) : null,
        rules: p.rule ? new Set(p.rule) : null,
      },
    };
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      // Tells nginx-style proxies not to buffer the stream.
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    res.on('close', () => this.remove(client));
    this.add(client);
    res.write(`retry: ${this.options.retryMs}\n\n`);
  }

  private add(client: StreamClient): void {
    this.clients.add(client);
    this.metrics.streamClients.set(this.clients.size);
    if (this.clients.size > 1) return;
    const { bus } = this;
    this.unsubscribe = [
      bus.on('reading', (r) => this.publishReading(r), 'stream'),
      bus.on('result', (r) => this.publishOutput(r), 'stream'),
      bus.on('decision', (r) => this.publishOutput(r), 'stream'),
      bus.on('late', (r) => this.publishOutput(r), 'stream'),
      bus.on('backtest', (e) => this.publishBacktest(e), 'stream'),
      bus.on('rule', (e) => this.publishRule(e), 'stream'),
    ];
    this.heartbeat = setInterval(() => this.broadcast(': heartbeat\n\n'), this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  private remove(client: StreamClient): void {
    if (!this.clients.delete(client)) return;
    this.metrics.streamClients.set(this.clients.size);
    if (this.clients.size > 0) return;
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private publishReading(r: Reading): void {
    let frame: string | null = null;
    for (const c of this.clients) {
      const f = c.filter;
      if (f.types && !f.types.has('reading')) continue;
      if (f.devices && !f.devices.has(r.device)) continue;
      if (f.metrics && !f.metrics.has(r.metric)) continue;
      frame ??= `event: reading\ndata: ${JSON.stringify(readingToJson(r))}\n\n`;
      this.write(c, frame);
    }
  }

  private publishOutput(r: OutputEvent): void {
    let frame: string | null = null;
    for (const c of this.clients) {
      if (!matchesOutput(c.filter, r)) continue;
      frame ??= `event: ${r.type}\ndata: ${JSON.stringify(r)}\n\n`;
      this.write(c, frame);
    }
  }

  /** Backtest progress: narrowed by `type` only (it concerns no device, metric or running rule). */
  private publishBacktest(e: BacktestEvent): void {
    let frame: string | null = null;
    for (const c of this.clients) {
      if (c.filter.types && !c.filter.types.has('backtest')) continue;
      frame ??= `event: backtest\ndata: ${JSON.stringify(e)}\n\n`;
      this.write(c, frame);
    }
  }

  /** A rule change: narrowed by `type` and `rule` (it concerns no device or metric). */
  private publishRule(e: RuleEvent): void {
    let frame: string | null = null;
    for (const c of this.clients) {
      if (c.filter.types && !c.filter.types.has('rule')) continue;
      if (c.filter.rules && !c.filter.rules.has(e.id)) continue;
      frame ??= `event: rule\ndata: ${JSON.stringify(e)}\n\n`;
      this.write(c, frame);
    }
  }

  private broadcast(frame: string): void {
    for (const c of this.clients) this.write(c, frame);
  }

  private write(client: StreamClient, frame: string): void {
    const { res } = client;
    if (res.destroyed) return;
    res.write(frame);
    if (res.writableLength > this.options.maxPendingBytes) {
      // Destroy rather than end: ending would keep the pending bytes until the client reads them.
      this.metrics.streamDropped.inc();
      this.remove(client);
      res.destroy();
    }
  }
}

function matchesOutput(f: StreamFilter, r: OutputEvent): boolean {
  if (f.types && !f.types.has(r.type)) return false;
  if (f.rules && !f.rules.has(r.rule)) return false;
  if (r.type === 'late') {
    if (f.devices && !f.devices.has(r.reading.device)) return false;
    if (f.metrics && !f.metrics.has(r.reading.metric)) return false;
    return true;
  }
  return keyMatches(f.devices, r.key.device) && keyMatches(f.metrics, r.key.metric);
}

/** A group key without the field (not grouped by it) is not constrained by the filter. */
function keyMatches(wanted: ReadonlySet<string> | null, value: string | null | undefined): boolean {
  if (wanted === null || value === undefined) return true;
  return value !== null && wanted.has(value);
}

/** The stream route in the OpenAPI document. */
export const STREAM_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'get',
    path: '/api/v1/stream',
    operationId: 'streamEvents',
    summary:
      'Server-Sent Events of readings, results, decisions and late records (event = type, data = the record JSON) backtest progress (event: backtest) and rule changes (event: rule, data = {id, change: created|replaced|deleted, origin}, narrowed by type and rule); heartbeats; slow clients are dropped',
    query: streamParams,
    responses: {
      200: { description: 'an event stream', contentType: 'text/event-stream' },
      400: { description: 'invalid query parameters', schema: errorBody },
      401: { description: 'missing or wrong bearer token', schema: errorBody },
      503: { description: 'too many stream clients', schema: errorBody },
    },
  },
];
