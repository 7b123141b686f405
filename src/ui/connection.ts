import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import { api, setApiHook, V1 } from './api.js';
import { Observable } from './state.js';

/**
 * The tab's link to the gateway: whether it can be reached (the offline banner), whether the
 * session is signed in, the one Server-Sent-Events connection of the tab, and the resync that
 * every page runs over REST when the gateway is back.
 */

/** False while the gateway cannot be reached: the banner shows. */
export const online = new Observable(true);
/** Bumped when the gateway is back after an outage: pages fetch again what they show. */
export const resyncs = new Observable(0);
/**
 * Bumped each time the tab's stream (re)opens: what a page follows from the stream alone (the
 * rules) it fetches again then, since events sent while it was closed are not sent again.
 */
export const streamOpens = new Observable(0);
/**
 * `unknown` until `/session` answered; `open` without api.token; `signed-out` shows the sign-in
 * form (also when the session ended: a 401 on any request).
 */
export const auth = new Observable<'unknown' | 'open' | 'signed-in' | 'signed-out'>('unknown');
/** Why the sign-in form shows, when it is not the first visit. */
export const authNote = new Observable<string | null>(null);

const PROBE_MS = 1000;
let probing: ReturnType<typeof setTimeout> | null = null;

/** Asks `/health` until it answers; the banner shows while it does not. */
function probe(): void {
  if (probing !== null) return;
  const attempt = async () => {
    try {
      const res = await fetch(`${V1}/health`, { cache: 'no-store', signal: AbortSignal.timeout(3000) });
      await res.arrayBuffer();
      probing = null;
      back();
    } catch {
      online.set(false);
      probing = setTimeout(attempt, PROBE_MS);
    }
  };
  probing = setTimeout(attempt, 0);
}

function back(): void {
  if (online.value) {
    // The stream failed while REST still works (a 503 for too many clients, say): reopen it later.
    stream.reopenSoon();
    return;
  }
  online.set(true);
  resyncs.set(resyncs.value + 1);
  stream.reopen();
}

setApiHook({
  unreachable: probe,
  reached() {
    if (!online.value) probe();
  },
  unauthorized() {
    if (auth.value === 'signed-in') {
      authNote.set('Your session has ended: sign in again.');
      auth.set('signed-out');
    }
  },
});

window.addEventListener('online', probe);

/** Reads the sign-in state: whether a token is needed and whether this browser has a session. */
export async function checkSession(): Promise<void> {
  for (;;) {
    try {
      const s = await api<{ required: boolean; signedIn: boolean }>(`${V1}/session`);
      auth.set(!s.required ? 'open' : s.signedIn ? 'signed-in' : 'signed-out');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, PROBE_MS));
    }
  }
}

type StreamHandler = (type: string, data: unknown) => void;

/**
 * What the stream carries on a page that asks for nothing: backtest progress only, a trickle. It
 * stays open all the same, so that a gateway going away shows at once (its socket closes).
 */
const IDLE_QUERY = '?type=backtest';

/**
 * The tab's one EventSource, always open while signed in. A page says which events it wants
 * (`/stream` query: `type`, `device`, `rule`); changing page replaces the connection, so that a
 * tab never holds two. On an
 * error it is closed and the gateway probed: the banner shows if it is down, and the stream opens
 * again (after the pages' resync) when it is back.
 */
class Stream {
  private source: EventSource | null = null;
  private query = IDLE_QUERY;
  private handler: StreamHandler | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  use(query: string, handler: StreamHandler): () => void {
    this.handler = handler;
    this.want(query);
    return () => {
      if (this.handler !== handler) return;
      this.handler = null;
      // The next page usually asks for its own stream at once: only if none does, go idle.
      setTimeout(() => {
        if (this.handler === null) this.want(IDLE_QUERY);
      }, 0);
    };
  }

  private want(query: string): void {
    if (query === this.query && this.source !== null) return;
    this.query = query;
    this.reopen();
  }

  reopen(): void {
    this.close();
    if (auth.value === 'signed-out' || auth.value === 'unknown') return;
    const source = new EventSource(`${V1}/stream${this.query}`);
    this.source = source;
    const dispatch = (e: MessageEvent) => {
      if (this.source !== source || this.handler === null) return;
      let data: unknown;
      try {
        data = JSON.parse(e.data as string);
      } catch {
        return;
      }
      this.handler(e.type, data);
    };
    for (const type of ['reading', 'result', 'decision', 'late', 'backtest', 'rule']) {
      source.addEventListener(type, dispatch as EventListener);
    }
    source.addEventListener('open', () => {
      if (this.source === source) streamOpens.set(streamOpens.value + 1);
    });
    source.addEventListener('error', () => {
      if (this.source !== source) return;
      this.close();
      probe();
    });
  }

  /** The connection is open now (its `open` event came and no error since). */
  get isOpen(): boolean {
    return this.source !== null && this.source.readyState === EventSource.OPEN;
  }

  reopenSoon(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.source === null) this.reopen();
    }, 3000);
  }

  private close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.source?.close();
    this.source = null;
  }
}

export const stream = new Stream();

// Signed in: the page's stream opens; signed out: it closes.
auth.subscribe(() => stream.reopen());

/**
 * Subscribes the page to stream events: `query` picks them (`?type=reading&device=x`), `handler`
 * gets each one. The handler may change between renders; the connection only when `query` does.
 */
export function useStream(query: string | null, handler: StreamHandler): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    if (query === null) return;
    return stream.use(query, (type, data) => ref.current(type, data));
  }, [query]);
}

/**
 * Runs `load` now, on every resync, and every `everyMs` while the tab is visible. "Now" is right
 * after the render (a layout effect), not after the next paint: a load only sends requests, and
 * the page's data is then a frame sooner.
 */
export function useRefresh(load: () => void, deps: unknown[], everyMs?: number): void {
  const ref = useRef(load);
  ref.current = load;
  useLayoutEffect(() => {
    ref.current();
    const offResync = resyncs.subscribe(() => ref.current());
    let timer: ReturnType<typeof setInterval> | null = null;
    if (everyMs !== undefined) {
      timer = setInterval(() => {
        if (!document.hidden && online.value) ref.current();
      }, everyMs);
    }
    const onVisible = () => {
      if (!document.hidden && everyMs !== undefined) ref.current();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      offResync();
      if (timer !== null) clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, deps);
}
