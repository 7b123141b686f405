import { type Request, Router } from 'express';
import { z } from 'zod';
import type { RuleProblem } from '../../model/rule.js';
import type { RuleChange, RuleView } from '../../rules/catalog.js';
import { RuleChangeError } from '../../rules/catalog.js';
import { ApiError, type ApiErrorDetail } from '../errors.js';
import type { RouteDoc } from '../openapi.js';
import { errorBody } from '../schemas.js';

/** What the rules routes need from the running gateway (implemented by `RuleCatalog`). */
export interface RulesService {
  list(): RuleView[];
  get(id: string): RuleView | null;
  /** Every problem of a rule; empty when it is valid. Changes nothing. */
  validate(input: unknown): RuleProblem[];
  create(input: unknown): RuleChange;
  put(id: string, input: unknown): RuleChange;
  /** Returns how many groups (open windows, decision state) were discarded. */
  remove(id: string): number;
}

/** A rule problem as an API error detail: its path dotted (`window.size`, `aggregates.p95`). */
function detail(p: RuleProblem): ApiErrorDetail {
  return { path: p.path.map(String).join('.'), message: p.message };
}

function invalid(problems: RuleProblem[]): ApiError {
  const n = problems.length;
  return new ApiError(
    'unprocessable',
    `the rule is not valid: ${n} problem${n === 1 ? '' : 's'}`,
    problems.map(detail),
  );
}

/**
 * Rule bodies are JSON only: any other content type (or none) is a 400 — the SPEC's error codes
 * have no 415. express.json() (capped at api.maxBodySize → 413) has parsed it by now.
 */
function jsonBody(req: Request): unknown {
  if (!req.is('application/json')) {
    const found = req.get('content-type');
    throw new ApiError(
      'bad_request',
      `expected a JSON body (Content-Type: application/json), found ${found ? JSON.stringify(found) : 'no body'}`,
    );
  }
  return req.body as unknown;
}

function toApiError(err: unknown): unknown {
  if (!(err instanceof RuleChangeError)) return err;
  switch (err.reason) {
    case 'invalid':
      return invalid(err.problems);
    case 'exists':
    case 'read_only':
      return new ApiError('conflict', err.message);
    case 'unknown':
      return new ApiError('not_found', err.message);
  }
}

function changed(change: RuleChange) {
  return { ...change.rule, windows: change.windows, discardedGroups: change.discardedGroups };
}

/**
 * `/rules` (SPEC §5): list, create, read, replace, delete and validate rules. Changes apply at
 * once and atomically (an invalid rule changes nothing); config-file rules are read-only (409).
 */
export function rulesRoutes(rules: RulesService): Router {
  const router = Router();

  router.get('/rules', (_req, res) => {
    res.json({ items: rules.list() });
  });

  router.post('/rules/validate', (req, res) => {
    const problems = rules.validate(jsonBody(req));
    if (problems.length > 0) throw invalid(problems);
    res.json({ valid: true });
  });

  router.post('/rules', (req, res) => {
    const body = jsonBody(req);
    let change: RuleChange;
    try {
      change = rules.create(body);
    } catch (err) {
      throw toApiError(err);
    }
    res.status(201).location(`${req.baseUrl}/rules/${change.rule.id}`).json(changed(change));
  });

  router.get('/rules/:id', (req, res) => {
    const rule = rules.get(req.params.id);
    if (rule === null) throw new ApiError('not_found', `no rule ${req.params.id}`);
    res.json(rule);
  });

  router.put('/rules/:id', (req, res) => {
    const body = jsonBody(req);
    let change: RuleChange;
    try {
      change = rules.put(req.params.id, body);
    } catch (err) {
      throw toApiError(err);
    }
    res.status(change.created ? 201 : 200).json(changed(change));
  });

  router.delete('/rules/:id', (req, res) => {
    let groups: number;
    try {
      groups = rules.remove(req.params.id);
    } catch (err) {
      throw toApiError(err);
    }
    // 204 has no body: what happened to the windows travels in a header.
    res.set('Tidegate-Windows', `discarded; groups=${groups}`).status(204).end();
  });

  return router;
}

const ruleView = z.strictObject({
  id: z.string(),
  origin: z.enum(['config', 'api']),
  /** As the user wrote it (YAML → JSON for config rules). */
  spec: z.unknown(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
const ruleChanged = ruleView.extend({
  windows: z.enum(['empty', 'discarded']),
  discardedGroups: z.number().int().min(0),
});
/** A rule as SPEC §2 writes it; checked by `validateRule`, every problem → 422. */
const ruleBody = z.record(z.string(), z.unknown());
const err = (description: string) => ({ description, schema: errorBody });
const E400 = err('not a JSON body (Content-Type must be application/json) or malformed JSON');
const E401 = err('missing or wrong bearer token');
const E413 = err('request body over api.maxBodySize');
const E422 = err('invalid rule: every problem with its path');
const V1 = '/api/v1';

/** The rules routes in the OpenAPI document (mounted only when the gateway runs rules). */
export const RULES_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'get',
    path: `${V1}/rules`,
    operationId: 'listRules',
    summary: 'Every rule: config-file rules in file order, then API rules in creation order',
    responses: {
      200: { description: 'the rules', schema: z.strictObject({ items: z.array(ruleView) }) },
      401: E401,
    },
  },
  {
    method: 'post',
    path: `${V1}/rules`,
    operationId: 'createRule',
    summary: 'Creates a rule; it runs at once, after the other rules, with no windows',
    body: ruleBody,
    responses: {
      201: { description: 'created', schema: ruleChanged },
      400: E400,
      401: E401,
      409: err('a rule with this id exists'),
      413: E413,
      422: E422,
    },
  },
  {
    method: 'post',
    path: `${V1}/rules/validate`,
    operationId: 'validateRule',
    summary: 'Checks a rule and returns every problem with its path; changes nothing',
    body: ruleBody,
    responses: {
      200: { description: 'valid', schema: z.strictObject({ valid: z.literal(true) }) },
      400: E400,
      401: E401,
      413: E413,
      422: E422,
    },
  },
  {
    method: 'get',
    path: `${V1}/rules/{id}`,
    operationId: 'getRule',
    summary: 'One rule',
    params: { id: 'rule id' },
    responses: { 200: { description: 'the rule', schema: ruleView }, 401: E401, 404: err('no such rule') },
  },
  {
    method: 'put',
    path: `${V1}/rules/{id}`,
    operationId: 'putRule',
    summary:
      'Creates or replaces an API rule; a replaced rule starts fresh (windows and decision state discarded)',
    params: { id: 'rule id' },
    body: ruleBody,
    responses: {
      200: { description: 'replaced', schema: ruleChanged },
      201: { description: 'created', schema: ruleChanged },
      400: E400,
      401: E401,
      409: err('a config-file rule: read-only through the API'),
      413: E413,
      422: E422,
    },
  },
  {
    method: 'delete',
    path: `${V1}/rules/{id}`,
    operationId: 'deleteRule',
    summary: 'Deletes an API rule with its windows and decision state (header Tidegate-Windows)',
    params: { id: 'rule id' },
    responses: {
      204: { description: 'deleted' },
      401: E401,
      404: err('no such rule'),
      409: err('a config-file rule: read-only through the API'),
    },
  },
];
