import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Request, type Response, Router } from 'express';
import { z } from 'zod';
import { ApiError } from './errors.js';
import type { RouteDoc } from './openapi.js';
import { errorBody } from './schemas.js';

/** The dashboard's session cookie. */
export const SESSION_COOKIE = 'tidegate_session';

export interface SessionOptions {
  /** How long a session lasts after sign-in (ms); the cookie's Max-Age too. */
  maxAgeMs: number;
  /** Signed-out sessions remembered (until they would have expired anyway); beyond, the oldest go. */
  maxRevoked: number;
  now: () => number;
}

export const DEFAULT_SESSION_OPTIONS: SessionOptions = {
  maxAgeMs: 7 * 86_400_000,
  maxRevoked: 10_000,
  now: () => Date.now(),
};

/**
 * Dashboard sessions (SPEC §5, "Dashboard sign-in"): the sign-in form's token is exchanged for a
 * cookie `<id>.<expiry>.<mac>`, the MAC an HMAC-SHA256 under a key derived from `api.token`. The
 * gateway keeps nothing per session but the ones signed out (bounded by `maxRevoked`, each only
 * until its expiry), so a session survives a restart of the gateway (the commonest outage a
 * dashboard sees) and a change of `api.token` ends every session at once.
 */
export class Sessions {
  private readonly key: Buffer | null;
  /** Signed-out session ids → their expiry (ms), in sign-out order. */
  private readonly revoked = new Map<string, number>();
  readonly options: SessionOptions;

  constructor(token: string | undefined, options: Partial<SessionOptions> = {}) {
    this.options = { ...DEFAULT_SESSION_OPTIONS, ...options };
    this.key =
      token === undefined
        ? null
        : createHmac('sha256', token).update('tidegate dashboard session v1').digest();
  }

  /** Is there anything to sign in to (is `api.token` set)? */
  get required(): boolean {
    return this.key !== null;
  }

  /** A new session's cookie value. */
  issue(): string {
    if (this.key === null) throw new Error('no api.token: no sessions');
    const id = randomBytes(16).toString('base64url');
    const expires = this.options.now() + this.options.maxAgeMs;
    const body = `${id}.${expires.toString(36)}`;
    return `${body}.${this.mac(body)}`;
  }

  /** The session id of a valid, unexpired, not signed-out cookie value; else null. */
  verify(value: string | undefined): string | null {
    if (this.key === null || value === undefined) return null;
    const parts = value.split('.');
    if (parts.length !== 3) return null;
    const [id, exp, mac] = parts as [string, string, string];
    const given = Buffer.from(mac, 'base64url');
    const expected = Buffer.from(this.mac(`${id}.${exp}`), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const expires = Number.parseInt(exp, 36);
    if (!(expires > this.options.now()) || this.revoked.has(id)) return null;
    return id;
  }

  /** Signs a session out: its cookie is refused from now on, even if a copy of it is kept. */
  revoke(value: string | undefined): void {
    const id = this.verify(value);
    if (id === null) return;
    const expires = Number.parseInt((value as string).split('.')[1] as string, 36);
    const now = this.options.now();
    for (const [old, exp] of this.revoked) {
      if (exp <= now || this.revoked.size >= this.options.maxRevoked) this.revoked.delete(old);
      else break;
    }
    this.revoked.set(id, expires);
  }

  get revokedCount(): number {
    return this.revoked.size;
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key as Buffer)
      .update(body)
      .digest('base64url');
  }
}

/** The value of one cookie of a request (no cookie parser: this is the only cookie the API reads). */
export function cookieValue(req: Request, name: string): string | undefined {
  const header = req.get('cookie');
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Is the request over TLS? The gateway serves plain HTTP; behind a TLS terminator the terminator
 * says so in `X-Forwarded-Proto` (or the browser in `Origin`). Trusting either only ever adds
 * `Secure` to a cookie, which a client could do no harm with.
 */
function overTls(req: Request): boolean {
  const proto = req.get('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase();
  return proto === 'https' || (req.get('origin') ?? '').startsWith('https://');
}

function setCookie(req: Request, res: Response, value: string, maxAgeSeconds: number): void {
  res.append(
    'Set-Cookie',
    `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${overTls(req) ? '; Secure' : ''}`,
  );
}

/**
 * Does the request come from the gateway's own origin? `Origin` must name the host the request was
 * sent to (`Host`, or `X-Forwarded-Host` behind a proxy: a page on another origin can set neither).
 * Browsers send `Origin` with every POST, PUT and DELETE, same-origin ones included.
 */
export function sameOrigin(req: Request): boolean {
  const origin = req.get('origin');
  if (!origin || origin === 'null') return false;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  const target = req.get('x-forwarded-host')?.split(',')[0]?.trim() ?? req.get('host');
  return target !== undefined && host.toLowerCase() === target.toLowerCase();
}

export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

const signInBody = z.strictObject({ token: z.string().min(1).max(4096) });
const sessionState = z.strictObject({
  required: z.boolean().describe('false without api.token: there is no sign-in'),
  signedIn: z.boolean().describe('the request carries a valid bearer token or session cookie'),
});

/**
 * `/session`: the dashboard's sign-in (POST, the token in a JSON body → the session cookie), its
 * state (GET) and sign-out (DELETE). Open without credentials, like `/health`.
 */
export function sessionRoutes(
  sessions: Sessions,
  checkToken: (token: string) => boolean,
  signedIn: (res: Response) => boolean,
): Router {
  const router = Router();

  router.get('/session', (_req, res) => {
    res.json({ required: sessions.required, signedIn: signedIn(res) });
  });

  router.post('/session', (req, res) => {
    if (!sessions.required) {
      throw new ApiError(
        'conflict',
        'api.token is not set: there is no sign-in (the API is open on loopback)',
      );
    }
    // A sign-in made from another origin would sign the browser in to the attacker's session.
    if (req.get('origin') !== undefined && !sameOrigin(req)) {
      throw new ApiError('forbidden', 'sign-in from another origin');
    }
    if (!req.is('application/json')) {
      throw new ApiError(
        'bad_request',
        'expected a JSON body {"token": "…"} (Content-Type: application/json)',
      );
    }
    const parsed = signInBody.safeParse(req.body);
    if (!parsed.success) {
      throw new ApiError('bad_request', 'expected a JSON body {"token": "…"}', [
        { path: 'token', message: 'expected the api.token, a string' },
      ]);
    }
    if (!checkToken(parsed.data.token)) {
      throw new ApiError('unauthorized', 'wrong token', [{ path: 'token', message: 'not the api.token' }]);
    }
    setCookie(req, res, sessions.issue(), Math.floor(sessions.options.maxAgeMs / 1000));
    res.status(204).end();
  });

  router.delete('/session', (req, res) => {
    sessions.revoke(cookieValue(req, SESSION_COOKIE));
    setCookie(req, res, '', 0);
    res.status(204).end();
  });

  return router;
}

const err = (description: string) => ({ description, schema: errorBody });

export const SESSION_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'get',
    path: '/api/v1/session',
    operationId: 'getSession',
    summary: 'Whether the dashboard needs a sign-in (api.token is set) and whether this request is signed in',
    public: true,
    responses: { 200: { description: 'the sign-in state', schema: sessionState } },
  },
  {
    method: 'post',
    path: '/api/v1/session',
    operationId: 'signIn',
    summary:
      'Exchanges api.token for a session cookie (HttpOnly, SameSite=Strict, Secure behind TLS) that the API accepts like the bearer header',
    public: true,
    body: signInBody,
    responses: {
      204: { description: 'signed in: Set-Cookie tidegate_session' },
      400: err('not a JSON body {"token": "…"}'),
      401: err('wrong token'),
      403: err('sent from another origin'),
      409: err('api.token is not set: there is no sign-in'),
    },
  },
  {
    method: 'delete',
    path: '/api/v1/session',
    operationId: 'signOut',
    summary: 'Signs the session out: its cookie is cleared and refused from now on',
    public: true,
    responses: { 204: { description: 'signed out' }, 403: err('a cookie request from another origin') },
  },
];
