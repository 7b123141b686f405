import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Response } from 'express';
import { Router } from 'express';
import { z } from 'zod';
import { type Reading, readingToJson } from '../../model/reading.js';
import { formatTimestamp } from '../../model/timestamp.js';
import type { Logger } from '../../runtime/log.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { ReadingsQuery } from '../../store/readings-query.js';
import { ApiError } from '../errors.js';
import { namesParam, parseQuery, timeParam } from '../query.js';

export const exportParams = z.strictObject({
  device: namesParam.optional(),
  metric: namesParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  format: z.enum(['ndjson', 'csv']).default('ndjson'),
});

/** Exports streamed at once; more are answered 503 (each holds a socket and reads the store). */
export const MAX_EXPORTS = 4;
/** Readings per chunk read from the store and written to the socket. */
const CHUNK = 2048;
/**
 * A chunk's text goes to the socket in pieces of at most this many characters: well under V8's
 * large-object size (128 KiB), so that a piece is allocated young and freed by the next scavenge.
 * One string per chunk (some 200 KB) would land in the large-object space, which only a full GC
 * frees: RSS would grow with the range until V8 decides on one.
 */
const PIECE = 32 * 1024;

const CSV_HEADER = 'device,metric,ts,value,unit,tags\r\n';

/** An RFC 4180 field: quoted (quotes doubled) when it holds a comma, a quote, CR or LF. */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV record, CRLF-terminated: tags as a JSON object, unit and tags empty when absent. */
export function csvLine(r: Reading): string {
  return `${csvField(r.device)},${csvField(r.metric)},${formatTimestamp(r.ts)},${r.value},${
    r.unit ? csvField(r.unit) : ''
  },${r.tags ? csvField(JSON.stringify(r.tags)) : ''}\r\n`;
}

function ndjsonLine(r: Reading): string {
  return `${JSON.stringify(readingToJson(r))}\n`;
}

/** Resolves when the socket drained, or the client went away (then the loop stops). */
function drained(res: Response): Promise<void> {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * `GET /readings/export` (SPEC §5): every matching reading in (ts, arrival) order, as NDJSON (the
 * input of `tidegate replay`) or CSV, with no row limit. It reads the next chunk only once the
 * socket took the last (back-pressure), so memory holds one chunk whatever the range, and stops
 * reading when the client goes away. Between chunks it yields to the event loop.
 */
export function exportRoutes(query: ReadingsQuery, deps: { metrics: Metrics; log: Logger }): Router {
  const router = Router();
  let active = 0;

  router.get('/readings/export', async (req, res) => {
    const p = parseQuery(exportParams, req.query);
    if (p.from !== undefined && p.to !== undefined && p.from >= p.to) {
      throw new ApiError('bad_request', 'from must be before to', [
        { path: 'from', message: 'not before to' },
      ]);
    }
    if (active >= MAX_EXPORTS) {
      throw new ApiError('unavailable', `too many exports at once (at most ${MAX_EXPORTS}); retry later`);
    }
    const history = query.history(
      {
        ...(p.device ? { devices: p.device } : {}),
        ...(p.metric ? { metrics: p.metric } : {}),
        ...(p.from !== undefined ? { from: p.from } : {}),
        ...(p.to !== undefined ? { to: p.to } : {}),
      },
      CHUNK,
    );
    const csv = p.format === 'csv';
    const line = csv ? csvLine : ndjsonLine;
    const counter = deps.metrics.exportedReadings.labels({ format: p.format });
    active++;
    deps.metrics.exportsActive.inc();
    try {
      res.status(200);
      res.setHeader(
        'Content-Type',
        csv ? 'text/csv; charset=utf-8; header=present' : 'application/x-ndjson; charset=utf-8',
      );
      res.setHeader('Content-Disposition', `attachment; filename="readings.${csv ? 'csv' : 'ndjson'}"`);
      if (csv) res.write(CSV_HEADER);
      else res.flushHeaders();
      while (!res.destroyed) {
        const chunk = history.next();
        if (chunk.length === 0) break;
        let text = '';
        let more = true;
        for (let i = 0; i < chunk.length; i++) {
          text += line(chunk[i] as Reading);
          if (text.length >= PIECE) {
            more = res.write(text);
            text = '';
          }
        }
        if (text !== '') more = res.write(text);
        counter.inc(chunk.length);
        if (more) await nextTurn();
        else await drained(res);
      }
      if (!res.destroyed) res.end();
    } catch (err) {
      // Headers are out: the client learns of the failure from a cut connection, not a status.
      deps.log.error({ err }, 'readings export failed');
      res.destroy(err as Error);
    } finally {
      active--;
      deps.metrics.exportsActive.dec();
    }
  });

  return router;
}
