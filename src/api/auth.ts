import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import { ApiError } from './errors.js';
import { cookieValue, SAFE_METHODS, SESSION_COOKIE, type Sessions, sameOrigin } from './session.js';

const AUTHENTICATED = 'tidegateAuthenticated';

/**
 * The token check (SPEC §5) in constant time: both sides are hashed first so that neither the
 * token's content nor its length leaks through timing. A request carries the token as
 * `Authorization: Bearer <token>` or, from the dashboard, as a session cookie (`sessions`); a
 * request that changes something on a cookie must come from the gateway's own origin (403
 * otherwise). A request with an Authorization header is judged by it alone. `openPaths`
 * (`/api/v1/health`, `/api/v1/session`) stay open, and learn from `authenticated(res)` whether
 * credentials came with the request.
 */
export function bearerAuth(
  token: string | undefined,
  openPaths: readonly string[],
  sessions?: Sessions,
): RequestHandler {
  if (token === undefined) {
    return (_req, res, next) => {
      res.locals[AUTHENTICATED] = true;
      next();
    };
  }
  const check = tokenChecker(token);
  return (req, res, next) => {
    const authorization = req.get('authorization');
    let valid: boolean;
    if (authorization !== undefined || sessions === undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
      valid = m !== null && check(m[1]?.trim() ?? '');
    } else {
      valid = sessions.verify(cookieValue(req, SESSION_COOKIE)) !== null;
      if (valid && !SAFE_METHODS.has(req.method) && !sameOrigin(req)) {
        next(
          new ApiError(
            'forbidden',
            `a ${req.method} with the session cookie must come from this gateway's own origin (Origin header)`,
          ),
        );
        return;
      }
    }
    res.locals[AUTHENTICATED] = valid;
    if (valid || openPaths.includes(req.path)) return next();
    next(new ApiError('unauthorized', 'missing or wrong bearer token (Authorization: Bearer <api.token>)'));
  };
}

/** Did bearerAuth find the token on this request (or is none configured)? False when it didn't run. */
export function authenticated(res: Response): boolean {
  return res.locals[AUTHENTICATED] === true;
}

/** Compares a given token with `token` in constant time (over their SHA-256 hashes). */
export function tokenChecker(token: string): (given: string) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (given) => timingSafeEqual(createHash('sha256').update(given).digest(), expected);
}
