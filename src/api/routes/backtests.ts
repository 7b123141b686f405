import { type Request, Router } from 'express';
import { z } from 'zod';
import type { BacktestJob } from '../../model/backtest.js';
import { NAME_RE } from '../../model/reading.js';
import type { RuleProblem } from '../../model/rule.js';
import { parseIsoTimestamp } from '../../model/timestamp.js';
import { issueMessage } from '../../schema/problems.js';
import { ApiError } from '../errors.js';
import type { RouteDoc } from '../openapi.js';
import { decodeCursor, encodeCursor, limitParam, parseQuery, single } from '../query.js';
import { errorBody, iso } from '../schemas.js';

/** A refusal of the backtest service, by reason (implemented by `BacktestError`). */
export interface BacktestRefusal {
  reason: 'invalid' | 'busy' | 'unknown_rule' | 'unavailable';
  message: string;
  problems: RuleProblem[];
  runningId: string | null;
}

/** What the backtests routes need from the gateway (implemented by `BacktestJobs`). */
export interface BacktestService {
  create(request: {
    rule?: unknown;
    ruleId?: string;
    from: number;
    to: number;
    devices?: string[];
  }): BacktestJob;
  list(): BacktestJob[];
  get(id: string): BacktestJob | null;
  records(
    id: string,
    page: { types?: readonly string[]; after?: number; limit: number },
  ): { items: unknown[]; next: number | null } | null;
  cancel(id: string): Promise<'cancelled' | 'deleted' | null>;
  /** True for what `create` throws when it refuses. */
  isRefusal(err: unknown): err is BacktestRefusal;
}

/** A time in a JSON body: ISO-8601 with an offset, or epoch milliseconds. */
const bodyTime = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const t = typeof v === 'number' ? v : parseIsoTimestamp(v);
  if (t === null || !Number.isSafeInteger(t)) {
    ctx.issues.push({
      code: 'custom',
      input: v,
      message: 'expected ISO-8601 with Z or ±HH:MM, or epoch milliseconds',
    });
    return z.NEVER;
  }
  return t;
});

export const backtestBody = z
  .strictObject({
    /** A rule as SPEC §2 writes it. */
    rule: z.record(z.string(), z.unknown()).optional(),
    /** Or the id of a rule the gateway runs. */
    ruleId: z.string().optional(),
    from: bodyTime,
    to: bodyTime,
    devices: z
      .array(z.string().regex(NAME_RE, { message: 'expected a device name of [A-Za-z0-9_.:-]' }))
      .min(1)
      .max(1000)
      .optional(),
  })
  .superRefine((b, ctx) => {
    if ((b.rule === undefined) === (b.ruleId === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['rule'], message: 'expected either rule (a spec) or ruleId' });
    }
    if (b.from >= b.to) ctx.addIssue({ code: 'custom', path: ['from'], message: 'expected from before to' });
  });

const RECORD_TYPES = ['result', 'decision', 'late'] as const;
export const backtestRecordsParams = z.strictObject({
  type: single
    .transform((text, ctx) => {
      const types = text.split(',').map((t) => t.trim());
      const bad = types.find((t) => !(RECORD_TYPES as readonly string[]).includes(t));
      if (bad !== undefined) {
        ctx.issues.push({
          code: 'custom',
          input: text,
          message: `expected result, decision or late, found ${JSON.stringify(bad)}`,
        });
        return z.NEVER;
      }
      return types;
    })
    .optional(),
  limit: limitParam,
  cursor: z.string().optional(),
});

function parseBody(req: Request): z.output<typeof backtestBody> {
  if (!req.is('application/json')) {
    const found = req.get('content-type');
    throw new ApiError(
      'bad_request',
      `expected a JSON body (Content-Type: application/json), found ${found ? JSON.stringify(found) : 'no body'}`,
    );
  }
  const parsed = backtestBody.safeParse(req.body, { reportInput: true });
  if (parsed.success) return parsed.data;
  throw new ApiError(
    'bad_request',
    'invalid backtest request',
    parsed.error.issues.map((issue) => ({
      path: issue.code === 'unrecognized_keys' ? issue.keys.join(',') : issue.path.map(String).join('.'),
      message: issue.code === 'unrecognized_keys' ? 'unknown key' : issueMessage(issue),
    })),
  );
}

function refused(err: BacktestRefusal, base: string): ApiError {
  switch (err.reason) {
    case 'invalid':
      return new ApiError(
        'unprocessable',
        err.message,
        // Paths within the rule, as /rules/validate gives them (`window.size`).
        err.problems.map((p) => ({ path: p.path.map(String).join('.'), message: p.message })),
      );
    case 'busy':
      return new ApiError('conflict', err.message, [
        { path: 'running', message: `${base}/backtests/${err.runningId}` },
      ]);
    case 'unknown_rule':
      return new ApiError('unprocessable', err.message, [{ path: 'ruleId', message: err.message }]);
    case 'unavailable':
      return new ApiError('unavailable', err.message);
  }
}

/** `/backtests` (SPEC §5): start a rule over stored readings as a job, follow it, read its records, cancel it. */
export function backtestsRoutes(service: BacktestService): Router {
  const router = Router();

  router.post('/backtests', (req, res) => {
    const body = parseBody(req);
    let job: BacktestJob;
    try {
      job = service.create({
        ...(body.rule !== undefined ? { rule: body.rule } : {}),
        ...(body.ruleId !== undefined ? { ruleId: body.ruleId } : {}),
        from: body.from,
        to: body.to,
        ...(body.devices ? { devices: body.devices } : {}),
      });
    } catch (err) {
      if (service.isRefusal(err)) {
        const e = refused(err, req.baseUrl);
        if (err.reason === 'busy') res.location(`${req.baseUrl}/backtests/${err.runningId}`);
        throw e;
      }
      throw err;
    }
    res.status(202).location(`${req.baseUrl}/backtests/${job.id}`).json(job);
  });

  router.get('/backtests', (_req, res) => {
    res.json({ items: service.list() });
  });

  router.get('/backtests/:id', (req, res) => {
    const job = service.get(req.params.id);
    if (job === null) throw new ApiError('not_found', `no backtest ${req.params.id}`);
    res.json(job);
  });

  router.get('/backtests/:id/records', (req, res) => {
    const p = parseQuery(backtestRecordsParams, req.query);
    const after = p.cursor !== undefined ? decodeCursor(p.cursor, 'asc', 1)[0] : undefined;
    const page = service.records(req.params.id, {
      ...(p.type ? { types: p.type } : {}),
      ...(after !== undefined ? { after } : {}),
      limit: p.limit,
    });
    if (page === null) throw new ApiError('not_found', `no backtest ${req.params.id}`);
    res.json({ items: page.items, next: page.next !== null ? encodeCursor([page.next], 'asc') : null });
  });

  router.delete('/backtests/:id', async (req, res) => {
    const done = await service.cancel(req.params.id);
    if (done === null) throw new ApiError('not_found', `no backtest ${req.params.id}`);
    if (done === 'deleted') {
      res.status(204).end();
      return;
    }
    res.json(service.get(req.params.id));
  });

  return router;
}

const summary = z.strictObject({
  readings: z.number().int(),
  windows: z.number().int(),
  results: z.number().int(),
  decisions: z.strictObject({ firing: z.number().int(), ok: z.number().int() }),
  late: z.number().int(),
});
export const backtestJob = z.strictObject({
  id: z.string(),
  state: z.enum(['running', 'done', 'failed', 'cancelled']),
  rule: z.unknown(),
  ruleId: z.string().optional(),
  from: iso,
  to: iso,
  devices: z.array(z.string()).optional(),
  progress: z.strictObject({ readings: z.number().int(), fraction: z.number().min(0).max(1) }),
  summary,
  records: z.number().int(),
  truncated: z.boolean(),
  startedAt: iso,
  finishedAt: iso.nullable(),
  error: z.string().nullable(),
});
const err = (description: string) => ({ description, schema: errorBody });
const E401 = err('missing or wrong bearer token');
const E404 = err('no such backtest');
const V1 = '/api/v1';

export const BACKTESTS_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'post',
    path: `${V1}/backtests`,
    operationId: 'createBacktest',
    summary:
      'Runs a rule (a spec, or the id of a running rule) over stored readings from–to as a job, off the event loop; one at a time',
    body: backtestBody,
    responses: {
      202: { description: 'started', schema: backtestJob },
      400: err('not a JSON body, or invalid from, to, devices'),
      401: E401,
      409: err('a backtest is running (its URL in details and Location)'),
      413: err('request body over api.maxBodySize'),
      422: err(
        'invalid rule: every problem with its path within the rule (window.size), as /rules/validate gives; or an unknown ruleId',
      ),
      503: err('the store is in memory: backtests need a file'),
    },
  },
  {
    method: 'get',
    path: `${V1}/backtests`,
    operationId: 'listBacktests',
    summary: 'Every kept backtest job, newest first (at most 20)',
    responses: {
      200: { description: 'the jobs', schema: z.strictObject({ items: z.array(backtestJob) }) },
      401: E401,
    },
  },
  {
    method: 'get',
    path: `${V1}/backtests/{id}`,
    operationId: 'getBacktest',
    summary: 'One job: state, progress, summary',
    params: { id: 'backtest id' },
    responses: { 200: { description: 'the job', schema: backtestJob }, 401: E401, 404: E404 },
  },
  {
    method: 'get',
    path: `${V1}/backtests/{id}/records`,
    operationId: 'listBacktestRecords',
    summary: "A page of the job's records in emission order, as tidegate replay prints them",
    params: { id: 'backtest id' },
    query: backtestRecordsParams,
    responses: {
      200: {
        description: 'a page of records',
        schema: z.strictObject({
          items: z.array(z.record(z.string(), z.unknown())),
          next: z.string().nullable(),
        }),
      },
      400: err('invalid query parameters'),
      401: E401,
      404: E404,
    },
  },
  {
    method: 'delete',
    path: `${V1}/backtests/{id}`,
    operationId: 'deleteBacktest',
    summary: 'Cancels a running job (200, the job cancelled) or deletes an ended one with its records (204)',
    params: { id: 'backtest id' },
    responses: {
      200: { description: 'cancelled', schema: backtestJob },
      204: { description: 'deleted' },
      401: E401,
      404: E404,
    },
  },
];
