import type { RequestHandler, Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import type { Metrics } from '../runtime/metrics.js';

/**
 * An error in the SPEC §5 shape for the statuses the API answers outside `ApiError`'s set:
 * 429 (rate limited) and 503 (stream clients exhausted).
 */
export function sendError(res: Response, status: number, code: string, message: string): void {
  res.status(status).json({ error: { code, message, details: [] } });
}

/**
 * Security headers for a JSON API: a Content-Security-Policy that allows nothing (a response
 * rendered by a browser may load, run and embed nothing), no framing, no sniffing, no referrer,
 * and no caching of answers that may carry sensor data. HSTS is left out: the API serves plain HTTP
 * on the gateway, and only a TLS terminator in front of it can promise HTTPS.
 */
export function securityHeaders(): RequestHandler[] {
  return [
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
          formAction: ["'none'"],
        },
      },
      strictTransportSecurity: false,
      xFrameOptions: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
    }),
    (_req, res, next) => {
      res.set('Cache-Control', 'no-store');
      next();
    },
  ];
}

/**
 * Rate limiting per client address (express-rate-limit's fixed window, IPv6 grouped by /56): a
 * client over `requestsPerMinute` is answered 429 with the SPEC error body and `RateLimit` headers
 * until its window resets. It runs before the token check, so guessing tokens is limited too.
 * 0 turns it off.
 */
export function rateLimiter(options: { requestsPerMinute: number; windowMs?: number }): RequestHandler {
  if (options.requestsPerMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: options.windowMs ?? 60_000,
    limit: options.requestsPerMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_req, res, _next, used) => {
      sendError(
        res,
        used.statusCode,
        'rate_limited',
        `more than ${options.requestsPerMinute} requests per ${Math.round((options.windowMs ?? 60_000) / 1000)} s from this address; retry later`,
      );
    },
  });
}

/**
 * Counts every answered request in `tidegate_api_requests_total{route,status}`. The route is the
 * pattern that matched (`/api/v1/devices/:id`), never the raw path, so that the label set stays
 * bounded whatever clients ask; requests no route matched are `unmatched`.
 */
export function requestMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    // The router sets `req.route` when a route matches, while `req.baseUrl` is still the mount path;
    // by the time the response closes an error may have unwound `baseUrl`, so both are taken then.
    let route = 'unmatched';
    let matched: unknown;
    Object.defineProperty(req, 'route', {
      configurable: true,
      enumerable: true,
      get: () => matched,
      set: (r: unknown) => {
        matched = r;
        const pattern = (r as { path?: unknown } | undefined)?.path;
        if (typeof pattern === 'string') route = req.baseUrl + pattern;
      },
    });
    res.once('close', () => {
      metrics.apiRequests.inc({ route, status: String(res.statusCode) });
    });
    next();
  };
}
