/**
 * api/ — the local REST API (SPEC §5): express routes over the store's queries and the rules
 * service, auth, rate limits and security headers, errors in one shape, SSE (/stream), /metrics and
 * the OpenAPI document. May import model/, runtime/, store/ (queries), rules/catalog.ts (types and
 * RuleChangeError), sources/source.ts and forward/forwarder.ts (status types), config/ (types).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { ApiConfig } from '../config/schema.js';
import { EventBus } from '../runtime/events.js';
import { isLoopbackHost } from '../runtime/hosts.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { OutputsQuery } from '../store/outputs-query.js';
import type { ReadingsQuery } from '../store/readings-query.js';
import { authenticated, bearerAuth, tokenChecker } from './auth.js';
import { dashboard } from './dashboard.js';
import { ApiError, errorHandler, notFound } from './errors.js';
import { openApiDocument } from './openapi.js';
import { BACKTESTS_ROUTE_DOCS, type BacktestService, backtestsRoutes } from './routes/backtests.js';
import { type DevicesView, devicesRoutes } from './routes/devices.js';
import { exportRoutes } from './routes/export.js';
import { type HealthView, healthRoutes } from './routes/health.js';
import { outputsRoutes } from './routes/outputs.js';
import { readingsRoutes } from './routes/readings.js';
import { RULES_ROUTE_DOCS, type RulesService, rulesRoutes } from './routes/rules.js';
import { STREAM_ROUTE_DOCS, StreamHub, type StreamOptions } from './routes/stream.js';
import { rateLimiter, requestMetrics, securityHeaders } from './security.js';
import { SESSION_ROUTE_DOCS, type SessionOptions, Sessions, sessionRoutes } from './session.js';

export const API_PREFIX = '/api/v1';

export type ApiView = HealthView & DevicesView;

/** The express application: routes under /api/v1, /metrics at the root, SPEC §5 errors. */
export function createApp(
  config: ApiConfig,
  deps: {
    query: ReadingsQuery;
    outputs: OutputsQuery;
    view: ApiView;
    metrics: Metrics;
    log: Logger;
    /** The running rules; without it /rules is not served. */
    rules?: RulesService;
    /** Backtest jobs; without it /backtests is not served. */
    backtests?: BacktestService;
    /** What /stream publishes; without it the stream stays silent. */
    bus?: EventBus;
    stream?: Partial<StreamOptions>;
    rateLimit?: { requestsPerMinute?: number; windowMs?: number };
    /** The built dashboard (`dist/ui`); without it `GET /` is not served. */
    dashboardDir?: string;
    session?: Partial<SessionOptions>;
  },
) {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(requestMetrics(deps.metrics));
  app.use(securityHeaders());
  app.use(
    rateLimiter({
      requestsPerMinute: deps.rateLimit?.requestsPerMinute ?? config.rateLimit,
      ...(deps.rateLimit?.windowMs !== undefined ? { windowMs: deps.rateLimit.windowMs } : {}),
    }),
  );
  if (deps.dashboardDir !== undefined) app.use(dashboard(deps.dashboardDir));
  const sessions = new Sessions(config.token, deps.session);
  app.use(bearerAuth(config.token, [`${API_PREFIX}/health`, `${API_PREFIX}/session`], sessions));
  app.use(express.json({ limit: config.maxBodySize }));
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  // Built on the first request, not at start: generating its JSON Schemas from zod takes ~7 ms and
  // leaves ~0.5 MB on the heap, which a gateway nobody asks for its API description need not carry.
  let openapi: string | undefined;
  app.get(`${API_PREFIX}/openapi.json`, (_req, res) => {
    openapi ??= JSON.stringify(
      openApiDocument(deps.view.version, [
        ...(deps.rules ? RULES_ROUTE_DOCS : []),
        ...(deps.backtests ? BACKTESTS_ROUTE_DOCS : []),
        ...STREAM_ROUTE_DOCS,
        ...SESSION_ROUTE_DOCS,
      ]),
    );
    res.type('application/json').send(openapi);
  });
  app.use(API_PREFIX, healthRoutes(deps.view));
  app.use(
    API_PREFIX,
    sessionRoutes(
      sessions,
      config.token === undefined ? () => false : tokenChecker(config.token),
      authenticated,
    ),
  );
  app.use(API_PREFIX, devicesRoutes(deps.query, deps.view));
  app.use(API_PREFIX, exportRoutes(deps.query, { metrics: deps.metrics, log: deps.log }));
  app.use(API_PREFIX, readingsRoutes(deps.query));
  app.use(API_PREFIX, outputsRoutes(deps.outputs));
  if (deps.rules) app.use(API_PREFIX, rulesRoutes(deps.rules));
  if (deps.backtests) app.use(API_PREFIX, backtestsRoutes(deps.backtests));
  app.use(API_PREFIX, new StreamHub(deps.bus ?? new EventBus(), deps.metrics, deps.stream).routes());
  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}

/** The HTTP server, bound by the rules of SPEC §5: loopback unless configured, and then only with a token. */
export class ApiServer {
  private server: Server | null = null;

  constructor(
    private readonly config: ApiConfig,
    private readonly app: express.Express,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // The config refuses this already (config/cross-checks.ts); kept for servers built in code.
    if (!isLoopbackHost(this.config.host) && this.config.token === undefined && !this.config.insecure) {
      throw new ApiError('internal', `refusing to serve the API on ${this.config.host} without api.token`);
    }
    if (!isLoopbackHost(this.config.host) && this.config.token === undefined) {
      this.log.warn(
        { host: this.config.host },
        'API serves beyond loopback WITHOUT a token (api.insecure: true)',
      );
    }
    const server = createServer(this.app);
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.log.info({ host: this.config.host, port: this.port }, 'API listening');
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
