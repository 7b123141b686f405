import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { Logger } from '../runtime/log.js';
import { VERSION } from '../runtime/version.js';
import type { HttpUpstreamConfig } from './config.js';
import { errorMessage, type OutboxItem, type Upstream, type UpstreamState } from './upstream.js';

/** How much of a refusing answer's body goes into the error message. */
const SNIPPET = 200;

interface Answer {
  status: number;
  /** The start of the body (at least SNIPPET characters when there are that many). */
  text: string;
}

/** One POST; rejects only when no answer came (network, timeout). */
type Post = (body: string, headers: Record<string, string>, signal: AbortSignal) => Promise<Answer>;

/**
 * An HTTP ingest endpoint: each batch is one POST of a JSON array of envelopes; any 2xx accepts
 * the whole batch, anything else (another status, a redirect, a timeout, a reset) refuses it.
 * There is no connection to watch: the state is `offline` after a failed delivery and
 * `connected` otherwise.
 */
export class HttpUpstream implements Upstream {
  readonly type = 'http' as const;
  /** One POST at a time: two requests in flight could be handled out of order. */
  readonly maxInFlight = 1;
  readonly id: string;
  private post: Post | null = null;
  private error: string | null = null;
  /** Aborts requests in flight on close. */
  private readonly closing = new AbortController();
  /** The url without its query (which may carry a key), for messages. */
  private readonly where: string;

  constructor(
    private readonly config: HttpUpstreamConfig,
    private readonly deps: { log: Logger },
  ) {
    this.id = config.id;
    const url = new URL(config.url);
    this.where = url.origin + url.pathname;
  }

  async start(): Promise<void> {
    if (this.post) return;
    const { ca } = this.config;
    if (ca === undefined) {
      this.post = fetchPost(this.config.url);
      return;
    }
    let pem: Buffer;
    try {
      pem = await readFile(ca);
    } catch (err) {
      throw new Error(`upstream "${this.id}": cannot read ca file ${ca}: ${errorMessage(err)}`);
    }
    // fetch takes no CA of its own without undici's Agent (a dependency); node:https does.
    this.post = httpsPost(this.config.url, pem);
  }

  async deliver(batch: readonly OutboxItem[]): Promise<void> {
    if (this.closing.signal.aborted) throw new Error(`upstream ${this.id} is closed`);
    if (!this.post) throw new Error(`upstream ${this.id} is not started`);
    if (batch.length === 0) return;
    const { timeout } = this.config;
    const body = JSON.stringify(batch.map((item) => item.envelope));
    const headers = {
      'content-type': 'application/json',
      'user-agent': `tidegate/${VERSION}`,
      ...this.config.headers,
    };
    const timer = AbortSignal.timeout(timeout);
    let answer: Answer;
    try {
      answer = await this.post(body, headers, AbortSignal.any([timer, this.closing.signal]));
    } catch (err) {
      const why = timer.aborted
        ? `timed out after ${timeout} ms`
        : this.closing.signal.aborted
          ? 'aborted: the upstream is closing'
          : `failed: ${networkMessage(err)}`;
      throw this.fail(`POST ${this.where} ${why}`);
    }
    if (answer.status < 200 || answer.status > 299) {
      const text = answer.text.length > SNIPPET ? `${answer.text.slice(0, SNIPPET)}…` : answer.text;
      throw this.fail(
        `POST ${this.where} answered ${answer.status}${text.trim() === '' ? '' : `: ${text.trim()}`}`,
      );
    }
    if (this.error !== null) this.deps.log.info({ upstream: this.id }, 'http upstream accepting again');
    this.error = null;
  }

  private fail(message: string): Error {
    this.error = message;
    return new Error(message);
  }

  state(): UpstreamState {
    return this.error === null ? 'connected' : 'offline';
  }

  lastError(): string | null {
    return this.error;
  }

  async close(): Promise<void> {
    this.closing.abort();
  }
}

function fetchPost(url: string): Post {
  return async (body, headers, signal) => {
    // A redirect is not an acknowledgement: a 303 followed as GET could answer 200.
    const res = await fetch(url, { method: 'POST', body, headers, signal, redirect: 'manual' });
    if (res.status >= 200 && res.status <= 299) {
      // Read to the end so the connection goes back to the pool.
      await res.arrayBuffer();
      return { status: res.status, text: '' };
    }
    return { status: res.status, text: await readStart(res) };
  };
}

async function readStart(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length <= SNIPPET) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text;
}

function httpsPost(url: string, ca: Buffer): Post {
  return (body, headers, signal) =>
    new Promise<Answer>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          ca,
          signal,
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status <= 299;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (ok) return;
            text += chunk;
            if (text.length > SNIPPET) {
              res.destroy();
              resolve({ status, text });
            }
          });
          res.on('end', () => resolve({ status, text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}

/** fetch says only "fetch failed"; the cause (ECONNREFUSED, ENOTFOUND, a reset) is what helps. */
function networkMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return errorMessage(e);
}
