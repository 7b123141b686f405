import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { ApiError } from './errors.js';

/**
 * Bearer-token check (SPEC §5) in constant time: both sides are hashed first so that neither the
 * token's content nor its length leaks through timing. `/api/v1/health` stays open for probes.
 */
export function bearerAuth(token: string | undefined, openPaths: readonly string[]): RequestHandler {
  if (token === undefined) return (_req, _res, next) => next();
  const expected = createHash('sha256').update(token).digest();
  return (req, _res, next) => {
    if (openPaths.includes(req.path)) return next();
    const header = req.get('authorization') ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    const given = createHash('sha256')
      .update(m?.[1]?.trim() ?? '')
      .digest();
    if (!m || !timingSafeEqual(given, expected)) {
      return next(
        new ApiError('unauthorized', 'missing or wrong bearer token (Authorization: Bearer <api.token>)'),
      );
    }
    next();
  };
}
