import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { ApiError } from './errors.js';

const AUTHENTICATED = 'tidegateAuthenticated';

/**
 * Bearer-token check (SPEC §5) in constant time: both sides are hashed first so that neither the
 * token's content nor its length leaks through timing. `openPaths` (`/api/v1/health`) stay open
 * for probes, and learn from `authenticated(res)` whether the token came with the request.
 */
export function bearerAuth(token: string | undefined, openPaths: readonly string[]): RequestHandler {
  if (token === undefined) {
    return (_req, res, next) => {
      res.locals[AUTHENTICATED] = true;
      next();
    };
  }
  const expected = createHash('sha256').update(token).digest();
  return (req, res, next) => {
    const valid = carriesToken(req, expected);
    res.locals[AUTHENTICATED] = valid;
    if (valid || openPaths.includes(req.path)) return next();
    next(new ApiError('unauthorized', 'missing or wrong bearer token (Authorization: Bearer <api.token>)'));
  };
}

/** Did bearerAuth find the token on this request (or is none configured)? False when it didn't run. */
export function authenticated(res: Response): boolean {
  return res.locals[AUTHENTICATED] === true;
}

function carriesToken(req: Request, expected: Buffer): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
  const given = createHash('sha256')
    .update(m?.[1]?.trim() ?? '')
    .digest();
  return m !== null && timingSafeEqual(given, expected);
}
