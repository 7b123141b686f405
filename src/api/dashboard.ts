import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Request, RequestHandler, Response } from 'express';

/**
 * The dashboard's pages, each at a stable URL: `/`, `/devices`, `/devices/{id}`, `/rules`,
 * `/rules/new`, `/rules/{id}`, `/alerts`. Every one is answered with `index.html`; the dashboard's
 * script draws the page the URL names.
 */
const PAGE_RE = /^\/(?:(?:devices|rules)(?:\/[^/]+)?|alerts)?\/?$/;
const ASSET_RE = /^\/assets\/([A-Za-z0-9][A-Za-z0-9._-]*)$/;

/**
 * The policy of the dashboard's page: its own scripts, styles and fetches only (`/stream` too),
 * no inline script or handler, no framing. Without `upgrade-insecure-requests` (helmet's default
 * has it): on a LAN the gateway serves plain HTTP, and upgraded asset URLs would not load.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

interface StaticFile {
  type: string;
  /** The file itself and, when the build made them, its brotli and gzip forms. */
  identity: Buffer;
  br?: Buffer;
  gzip?: Buffer;
}

/**
 * Reads the built dashboard (`npm run build` → `dist/ui`: `index.html` and `assets/` with hashed
 * names, each with `.br` and `.gz` beside it) once, at the first request: some 300 KB in all.
 * Null when it was not built.
 */
function load(dir: string): Map<string, StaticFile> | null {
  let names: string[];
  try {
    names = readdirSync(join(dir, 'assets')).map((n) => `assets/${n}`);
  } catch {
    return null;
  }
  const files = new Map<string, StaticFile>();
  for (const name of ['index.html', ...names]) {
    if (name.endsWith('.br') || name.endsWith('.gz')) continue;
    const ext = name.slice(name.lastIndexOf('.'));
    const type = TYPES[ext];
    if (type === undefined) continue;
    const read = (suffix: string) => {
      try {
        return readFileSync(join(dir, name + suffix));
      } catch {
        return undefined;
      }
    };
    const identity = read('');
    if (identity === undefined) return null;
    const br = read('.br');
    const gzip = read('.gz');
    files.set(name, { type, identity, ...(br ? { br } : {}), ...(gzip ? { gzip } : {}) });
  }
  return files.has('index.html') ? files : null;
}

/** The encodings a request accepts (q=0 excluded), e.g. `gzip, br;q=0.9`. */
function accepts(req: Request, encoding: string): boolean {
  for (const part of (req.get('accept-encoding') ?? '').split(',')) {
    const [name, ...params] = part.trim().split(';');
    if (name?.trim().toLowerCase() !== encoding) continue;
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    return q === undefined || Number(q) > 0;
  }
  return false;
}

function send(req: Request, res: Response, file: StaticFile): void {
  let body = file.identity;
  if (file.br && accepts(req, 'br')) {
    body = file.br;
    res.set('Content-Encoding', 'br');
  } else if (file.gzip && accepts(req, 'gzip')) {
    body = file.gzip;
    res.set('Content-Encoding', 'gzip');
  }
  res.set({ 'Content-Type': file.type, 'Content-Length': String(body.length), Vary: 'Accept-Encoding' });
  res.status(200);
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

/**
 * Serves the dashboard (SPEC §5 `GET /`) from the built files in `dir`, before the token check:
 * the page and its scripts hold no data, and the sign-in form must load without the token.
 * `index.html` is sent `no-store` (a new build takes effect at the next load); the assets, whose
 * names carry their content's hash, are cached for a year as `immutable`; the brotli or gzip form
 * the browser accepts is sent as it was compressed at build time. Anything else passes on.
 */
export function dashboard(dir: string): RequestHandler {
  let files: Map<string, StaticFile> | null | undefined;
  return function dashboardFiles(req, res, next) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const asset = ASSET_RE.exec(req.path)?.[1];
    if (asset === undefined && !PAGE_RE.test(req.path)) return next();
    files ??= load(dir);
    if (files === null) {
      res
        .status(404)
        .type('text/plain')
        .send('The dashboard is not built: run `npm run build` (it writes dist/ui).\n');
      return;
    }
    if (asset !== undefined) {
      const file = files.get(`assets/${asset}`);
      if (file === undefined) return next();
      res.set('Cache-Control', 'public, max-age=31536000, immutable');
      send(req, res, file);
      return;
    }
    res.set({
      'Cache-Control': 'no-store',
      'Content-Security-Policy': DASHBOARD_CSP,
      // Not helmet's no-referrer: under it a browser sends `Origin: null` with the page's own
      // POST, PUT and DELETE, which the session cookie's origin check must refuse.
      'Referrer-Policy': 'same-origin',
    });
    send(req, res, files.get('index.html') as StaticFile);
  };
}
