import { type ZodType, z } from 'zod';
import { devicesParams } from './routes/devices.js';
import { exportParams, MAX_EXPORTS } from './routes/export.js';
import { alertParams, lateParams, listParams } from './routes/outputs.js';
import { latestParams, readingsParams } from './routes/readings.js';
import * as s from './schemas.js';

/**
 * The API's routes and their schemas, from which `/api/v1/openapi.json` is generated. The query
 * schemas are the very ones the routes validate with; a test checks that every route of the router
 * is here and that every response the tests receive validates against the document.
 */
export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI style, relative to the server root: `/api/v1/devices/{id}`. */
  path: string;
  /** Unique across the API: what generated clients name the operation. */
  operationId: string;
  summary: string;
  query?: ZodType;
  body?: ZodType;
  /** Path parameters, by name. */
  params?: Record<string, string>;
  responses: Record<
    number,
    { description: string; schema?: ZodType; contentType?: string; alsoContentTypes?: string[] }
  >;
  /** Open without the bearer token, which still tells it more (only /health). */
  public?: boolean;
}

const V1 = '/api/v1';
const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [c, { description: ERROR_TEXT[c] ?? 'error', schema: s.errorBody }]),
  ) as RouteDoc['responses'];
const ERROR_TEXT: Record<number, string> = {
  400: 'invalid query parameters or body',
  401: 'missing or wrong bearer token',
  403: 'a change made with the session cookie from another origin',
  404: 'not found',
  409: 'conflict',
  413: 'request body over api.maxBodySize',
  415: 'not JSON',
  422: 'invalid rule: every problem with its path',
  429: 'rate limited',
  503: 'too many stream clients',
};

/** Every documented route: these, and `extra` from the routers the app mounts (rules, stream). */
export function apiRoutes(extra: readonly RouteDoc[] = []): RouteDoc[] {
  return [
    {
      method: 'get',
      path: `${V1}/health`,
      operationId: 'getHealth',
      summary: 'Status, version, uptime, sources, broker, store, upstreams and outbox',
      responses: {
        200: {
          description:
            'always while the process serves; with api.token set and no valid bearer token, only status and version',
          schema: z.union([s.health, s.healthBrief]),
        },
      },
      public: true,
    },
    {
      method: 'get',
      path: `${V1}/devices`,
      operationId: 'listDevices',
      summary:
        'Devices seen, their metrics with last value and time, source and status; with q, status, sort, limit or offset one page of the matching devices with counts',
      query: devicesParams,
      responses: {
        200: { description: 'every device, or a page of them', schema: s.deviceList },
        ...errors(400, 401),
      },
    },
    {
      method: 'get',
      path: `${V1}/devices/{id}`,
      operationId: 'getDevice',
      summary: 'One device',
      params: { id: 'device id' },
      responses: { 200: { description: 'the device', schema: s.device }, ...errors(401, 404) },
    },
    {
      method: 'get',
      path: `${V1}/readings`,
      operationId: 'listReadings',
      summary: 'Raw readings (filters, time range, order, cursor); with step and agg, downsampled in SQLite',
      query: readingsParams,
      responses: {
        200: {
          description: 'a page of readings or of downsampled points',
          schema: z.union([s.readingsPage, s.downsampledPage]),
        },
        ...errors(400, 401),
      },
    },
    {
      method: 'get',
      path: `${V1}/readings/export`,
      operationId: 'exportReadings',
      summary:
        'Every matching reading in (ts, arrival) order, streamed with no row limit: NDJSON (the input of tidegate replay) or CSV (RFC 4180, header row)',
      query: exportParams,
      responses: {
        200: {
          description: 'the readings, one per line',
          contentType: 'application/x-ndjson',
          alsoContentTypes: ['text/csv'],
        },
        ...errors(400, 401),
        503: { description: `more than ${MAX_EXPORTS} exports at once`, schema: s.errorBody },
      },
    },
    {
      method: 'get',
      path: `${V1}/readings/latest`,
      operationId: 'listLatestReadings',
      summary: 'The latest value of each (device, metric)',
      query: latestParams,
      responses: { 200: { description: 'latest readings', schema: s.latestList }, ...errors(400, 401) },
    },
    {
      method: 'get',
      path: `${V1}/results`,
      operationId: 'listResults',
      summary: 'Stored window results, every revision, in emission order',
      query: listParams,
      responses: { 200: { description: 'a page of results', schema: s.resultsPage }, ...errors(400, 401) },
    },
    {
      method: 'get',
      path: `${V1}/decisions`,
      operationId: 'listDecisions',
      summary: 'Stored decision transitions',
      query: listParams,
      responses: {
        200: { description: 'a page of decisions', schema: s.decisionsPage },
        ...errors(400, 401),
      },
    },
    {
      method: 'get',
      path: `${V1}/late`,
      operationId: 'listLateReadings',
      summary:
        'Stored late readings (those that fitted no live window of a rule), in the order they were set aside; from/to bound the reading ts',
      query: lateParams,
      responses: {
        200: { description: 'a page of late readings', schema: s.latePage },
        ...errors(400, 401),
      },
    },
    {
      method: 'get',
      path: `${V1}/alerts`,
      operationId: 'listAlerts',
      summary: '(rule, group) pairs firing now',
      query: alertParams,
      responses: { 200: { description: 'what is firing', schema: s.alertList }, ...errors(400, 401) },
    },
    {
      method: 'get',
      path: `${V1}/openapi.json`,
      operationId: 'getOpenApi',
      summary: 'This document',
      responses: {
        200: { description: 'OpenAPI 3.1', schema: z.record(z.string(), z.unknown()) },
        ...errors(401),
      },
    },
    {
      method: 'get',
      path: '/metrics',
      operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      responses: {
        200: { description: 'Prometheus text format', contentType: 'text/plain' },
        ...errors(401),
      },
    },
    ...extra,
  ];
}

function jsonSchema(schema: ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete out['$schema'];
  return out;
}

/** Query parameters from a route's (strict object) query schema. */
function parameters(route: RouteDoc): unknown[] {
  const list: unknown[] = Object.entries(route.params ?? {}).map(([name, description]) => ({
    name,
    in: 'path',
    required: true,
    description,
    schema: { type: 'string' },
  }));
  if (route.query) {
    const q = jsonSchema(route.query, 'input') as {
      properties?: Record<string, unknown>;
      required?: string[];
    };
    for (const [name, schema] of Object.entries(q.properties ?? {})) {
      list.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema });
    }
  }
  return list;
}

export function openApiDocument(version: string, extra: readonly RouteDoc[] = []): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of apiRoutes(extra)) {
    // The per-client rate limit applies to every route.
    const all: RouteDoc['responses'] = {
      // A change made with the dashboard's session cookie must come from the gateway's origin.
      ...(route.method === 'get' ? {} : errors(403)),
      ...route.responses,
      429: { description: 'rate limited (api.rateLimit)', schema: s.errorBody },
    };
    const responses: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(all)) {
      const types = [r.contentType ?? 'application/json', ...(r.alsoContentTypes ?? [])];
      const media = r.schema ? { schema: jsonSchema(r.schema, 'output') } : {};
      responses[status] = {
        description: r.description,
        ...(r.schema || r.contentType ? { content: Object.fromEntries(types.map((t) => [t, media])) } : {}),
      };
    }
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      parameters: parameters(route),
      responses,
      // `{}`: no credentials needed; the bearer token, when sent, is still read.
      ...(route.public ? { security: [{}, { bearer: [] }, { session: [] }] } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(route.body, 'input') } },
            },
          }
        : {}),
    };
    paths[route.path] = { ...(paths[route.path] ?? {}), [route.method]: operation };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'tidegate',
      version,
      description: 'The local REST API of the tidegate IoT sensor edge gateway (docs/SPEC.md §5).',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'api.token, when set' },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'tidegate_session',
          description:
            'the dashboard session (POST /api/v1/session); changes need a same-origin Origin header',
        },
      },
    },
    security: [{ bearer: [] }, { session: [] }],
    paths,
  };
}
