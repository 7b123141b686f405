import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../model/reading.js';
import { RULE_ID_RE } from '../../model/rule.js';
import { formatTimestamp } from '../../model/timestamp.js';
import type { LateFilter, OutputsFilter, OutputsQuery } from '../../store/outputs-query.js';
import { ApiError } from '../errors.js';
import {
  decodeCursor,
  encodeCursor,
  limitParam,
  namesParam,
  orderParam,
  parseQuery,
  single,
  timeParam,
} from '../query.js';

const rulesParam = single.transform((text, ctx) => {
  const ids = text.split(',').map((s) => s.trim());
  const bad = ids.find((id) => !RULE_ID_RE.test(id));
  if (bad !== undefined) {
    ctx.issues.push({
      code: 'custom',
      input: text,
      message: `expected rule ids, found ${JSON.stringify(bad)}`,
    });
    return z.NEVER;
  }
  return ids;
});

/** A group key as JSON: `{"device":"boiler-1"}`; fields not named are not filtered. */
const keyParam = single.transform((text, ctx) => {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const ok =
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.entries(v).every(([k, x]) => NAME_RE.test(k) && (x === null || typeof x === 'string'));
  if (!ok) {
    ctx.issues.push({
      code: 'custom',
      input: text,
      message: 'expected a JSON object of group fields to strings or null, e.g. {"device":"boiler-1"}',
    });
    return z.NEVER;
  }
  return v as Record<string, string | null>;
});

export const listParams = z.strictObject({
  rule: rulesParam.optional(),
  key: keyParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: limitParam,
  order: orderParam,
  cursor: z.string().optional(),
});

export const alertParams = z.strictObject({ rule: rulesParam.optional() });

export const lateParams = z.strictObject({
  rule: rulesParam.optional(),
  device: namesParam.optional(),
  metric: namesParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: limitParam,
  order: orderParam,
  cursor: z.string().optional(),
});

function checkRange(p: { from?: number | undefined; to?: number | undefined }): void {
  if (p.from !== undefined && p.to !== undefined && p.from >= p.to) {
    throw new ApiError('bad_request', 'from must be before to', [{ path: 'from', message: 'not before to' }]);
  }
}

function lateFilterOf(p: z.output<typeof lateParams>): LateFilter {
  checkRange(p);
  return {
    ...(p.rule ? { rules: p.rule } : {}),
    ...(p.device ? { devices: p.device } : {}),
    ...(p.metric ? { metrics: p.metric } : {}),
    ...(p.from !== undefined ? { from: p.from } : {}),
    ...(p.to !== undefined ? { to: p.to } : {}),
    order: p.order,
    limit: p.limit,
    ...(p.cursor !== undefined ? { after: decodeCursor(p.cursor, p.order, 1)[0] as number } : {}),
  };
}

function filterOf(p: z.output<typeof listParams>): OutputsFilter {
  checkRange(p);
  return {
    ...(p.rule ? { rules: p.rule } : {}),
    ...(p.key ? { key: p.key } : {}),
    ...(p.from !== undefined ? { from: p.from } : {}),
    ...(p.to !== undefined ? { to: p.to } : {}),
    order: p.order,
    limit: p.limit,
    ...(p.cursor !== undefined ? { after: decodeCursor(p.cursor, p.order, 1)[0] as number } : {}),
  };
}

/** `/results`, `/decisions`, `/late` (stored rule outputs) and `/alerts` (what is firing now). */
export function outputsRoutes(query: OutputsQuery): Router {
  const router = Router();

  router.get('/results', (req, res) => {
    const p = parseQuery(listParams, req.query);
    const page = query.results(filterOf(p));
    res.json({
      items: page.items.map((r) => ({
        type: 'result',
        rule: r.rule,
        key: r.key,
        start: formatTimestamp(r.start),
        end: formatTimestamp(r.end),
        count: r.count,
        values: r.values,
        revision: r.revision,
      })),
      next: page.next === null ? null : encodeCursor([page.next], p.order),
    });
  });

  router.get('/decisions', (req, res) => {
    const p = parseQuery(listParams, req.query);
    const page = query.decisions(filterOf(p));
    res.json({
      items: page.items.map((d) => ({
        type: 'decision',
        rule: d.rule,
        key: d.key,
        state: d.state,
        at: formatTimestamp(d.at),
        values: d.values,
      })),
      next: page.next === null ? null : encodeCursor([page.next], p.order),
    });
  });

  router.get('/late', (req, res) => {
    const p = parseQuery(lateParams, req.query);
    const page = query.late(lateFilterOf(p));
    res.json({
      items: page.items.map((l) => ({
        type: 'late',
        rule: l.rule,
        reading: { device: l.device, metric: l.metric, value: l.value, ts: formatTimestamp(l.ts) },
        emittedAt: formatTimestamp(l.emittedAt),
      })),
      next: page.next === null ? null : encodeCursor([page.next], p.order),
    });
  });

  router.get('/alerts', (req, res) => {
    const p = parseQuery(alertParams, req.query);
    res.json({
      items: query.alerts(p.rule).map((a) => ({
        rule: a.rule,
        key: a.key,
        state: 'firing',
        since: a.since === null ? null : formatTimestamp(a.since),
        values: a.values,
      })),
    });
  });

  return router;
}
