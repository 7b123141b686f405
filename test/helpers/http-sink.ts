import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';

/**
 * How the sink answers: `ok` (200), a status of choice (with an optional body), `hang` (reads the
 * request, never answers), `close` (reads the request, then destroys the socket unanswered).
 */
export type SinkBehaviour = 'ok' | 'hang' | 'close' | { status: number; body?: string };

export interface SinkRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** How the sink answered it. */
  behaviour: SinkBehaviour;
}

export interface HttpSink {
  /** http(s)://127.0.0.1:PORT/ingest */
  readonly url: string;
  readonly port: number;
  /** Every request received, in order, answered or not. */
  readonly requests: SinkRequest[];
  /** The JSON bodies of the requests it answered 2xx, in order. */
  accepted(): unknown[];
  behave(behaviour: SinkBehaviour): void;
  /** Closes the server and every connection (hanging ones too). */
  close(): Promise<void>;
}

/** A local HTTP (or, with a certificate, HTTPS) ingest endpoint on a free 127.0.0.1 port. */
export async function startHttpSink(
  options: { tls?: { cert: string | Buffer; key: string | Buffer } } = {},
): Promise<HttpSink> {
  const requests: SinkRequest[] = [];
  const sockets = new Set<Socket>();
  let behaviour: SinkBehaviour = 'ok';
  const server: Server = options.tls ? createHttpsServer(options.tls) : createHttpServer();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = behaviour;
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        behaviour: now,
      });
      if (now === 'hang') return;
      if (now === 'close') {
        req.socket.destroy();
        return;
      }
      const status = now === 'ok' ? 200 : now.status;
      const body = now === 'ok' ? '{"ok":true}' : (now.body ?? '');
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}/ingest`,
    port,
    requests,
    accepted: () =>
      requests
        .filter(
          (r) =>
            r.behaviour === 'ok' ||
            (typeof r.behaviour === 'object' && r.behaviour.status >= 200 && r.behaviour.status < 300),
        )
        .map((r) => JSON.parse(r.body) as unknown),
    behave(b) {
      behaviour = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
