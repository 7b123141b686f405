import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { jetstream, jetstreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort } from './net.js';
import { makeTempDir, type TempDir } from './tmp.js';

/** Debian's server (`apt install nats-server`, 2.9.10 on bookworm). */
export const NATS_SERVER = '/usr/sbin/nats-server';

/** Debian's package may run its own server on the default port: never ours. */
const DEFAULT_PORT = 4222;
const READY_WITHIN_MS = 20_000;
const EXIT_WITHIN_MS = 5_000;

export interface NatsNode {
  readonly name: string;
  /** Client port on 127.0.0.1. */
  readonly port: number;
  readonly url: string;
  readonly clusterPort: number;
  /** The HTTP monitor (`/healthz`, `/jsz`). */
  readonly httpPort: number;
  /** The process id while it runs, else null. */
  pid(): number | null;
  /** SIGKILL, and waits for the exit: its connections close, nothing is flushed. */
  kill(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again with the same ports and store; resolves once `/healthz?js-enabled-only=true` answers 200. */
  start(): Promise<void>;
  /** What its store holds of `stream` (from its own `/jsz`), or null when it has no copy. */
  streamState(stream: string): Promise<{ messages: number; lastSeq: number } | null>;
}

export interface NatsAuth {
  user?: string;
  password?: string;
  token?: string;
}

export interface NatsTls {
  /** PEM files: the CA, the server's certificate and key. */
  ca: string;
  cert: string;
  key: string;
  /** Require client certificates signed by `ca`; the helper's own connection then uses this one. */
  client?: { cert: string; key: string };
}

export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  /** Every node's client URL. */
  readonly servers: string[];
  /** A management connection (to any running node; reconnects). */
  connection(): Promise<NatsConnection>;
  /** Creates a stream (retried while the meta leader is being elected), and waits for its leader. */
  createStream(config: Partial<StreamConfig> & { name: string; subjects: string[] }): Promise<StreamInfo>;
  /** The node that leads `stream` now (waits, bounded, while it has none). */
  leaderOf(stream: string, timeoutMs?: number): Promise<NatsNode>;
  /** Waits until every replica of `stream` is current with its leader. */
  replicasCurrent(stream: string, timeoutMs?: number): Promise<StreamInfo>;
  /**
   * Returns once every message id published to the stream before the call is outside its
   * duplicate window: a probe id published now, then again until the stream stores it anew
   * (bounded by `timeoutMs`). `subject` must be one the stream takes, outside the test's filters.
   */
  outsideDuplicateWindow(subject: string, timeoutMs?: number): Promise<void>;
  /** Every message of `stream` on `filter`, in stream order, read by an ordered consumer. */
  read(stream: string, filter?: string): Promise<StoredEnvelope[]>;
  /** Stops every node (by pid) and removes the store dirs. */
  close(): Promise<void>;
}

/** A message as a consumer of the stream sees it. */
export interface StoredEnvelope {
  streamSeq: number;
  subject: string;
  msgId: string;
  gateway: string;
  seq: number;
  type: string;
  body: unknown;
}

/** Every child still running when the test process exits is killed, whatever failed before. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts an `n`-node JetStream cluster on 127.0.0.1 (3 by default): random free ports for clients,
 * routes and the monitor, a config file and a store dir per node in a temp dir, `server_name`,
 * `cluster.name` and `cluster.routes`. Resolves once every node's `/healthz?js-enabled-only=true`
 * answers 200.
 */
export async function startNatsCluster(
  options: { size?: number; auth?: NatsAuth; tls?: NatsTls } = {},
): Promise<NatsCluster> {
  const size = options.size ?? 3;
  const dir = makeTempDir('tidegate-nats-');
  const ports: number[] = [];
  while (ports.length < size * 3) {
    const p = await freePort();
    if (p !== DEFAULT_PORT && !ports.includes(p)) ports.push(p);
  }
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    port: ports[i * 3] as number,
    clusterPort: ports[i * 3 + 1] as number,
    httpPort: ports[i * 3 + 2] as number,
  }));
  const nodes = specs.map((spec) => makeNode(spec, specs, dir, options));
  let mgmt: NatsConnection | null = null;
  const cluster: NatsCluster = {
    nodes,
    servers: nodes.map((n) => n.url),
    async connection() {
      if (mgmt === null || mgmt.isClosed()) {
        mgmt = await connect({
          servers: nodes.filter((n) => n.pid() !== null).map((n) => `127.0.0.1:${n.port}`),
          maxReconnectAttempts: -1,
          reconnectTimeWait: 100,
          ...(options.auth?.user !== undefined
            ? { user: options.auth.user, pass: options.auth.password }
            : {}),
          ...(options.auth?.token !== undefined ? { token: options.auth.token } : {}),
          ...(options.tls
            ? {
                tls: {
                  caFile: options.tls.ca,
                  ...(options.tls.client
                    ? { certFile: options.tls.client.cert, keyFile: options.tls.client.key }
                    : {}),
                  // nats.js would check the certificate against "localhost" for an IP address.
                  ...{ host: '127.0.0.1' },
                },
              }
            : {}),
        });
      }
      return mgmt;
    },
    async createStream(config) {
      const jsm = await jetstreamManager(await cluster.connection(), { timeout: 5000, checkAPI: false });
      const info = await retrying(`creating stream ${config.name}`, READY_WITHIN_MS, () =>
        jsm.streams.add({ num_replicas: size, ...config }),
      );
      if (size > 1) await cluster.leaderOf(config.name);
      return info;
    },
    async leaderOf(stream, timeoutMs = READY_WITHIN_MS) {
      const jsm = await jetstreamManager(await cluster.connection(), { timeout: 2000, checkAPI: false });
      return retrying(`a leader of stream ${stream}`, timeoutMs, async () => {
        const info = await jsm.streams.info(stream);
        const node = nodes.find((n) => n.name === info.cluster?.leader);
        if (!node) throw new Error(`stream ${stream} has no leader`);
        return node;
      });
    },
    async replicasCurrent(stream, timeoutMs = READY_WITHIN_MS) {
      const jsm = await jetstreamManager(await cluster.connection(), { timeout: 2000, checkAPI: false });
      return retrying(`every replica of ${stream} current`, timeoutMs, async () => {
        const info = await jsm.streams.info(stream);
        const replicas = info.cluster?.replicas ?? [];
        if (!info.cluster?.leader || replicas.length !== size - 1 || !replicas.every((r) => r.current)) {
          throw new Error(`replicas of ${stream}: ${JSON.stringify(info.cluster)}`);
        }
        return info;
      });
    },
    async outsideDuplicateWindow(subject, timeoutMs = 30_000) {
      const js = jetstream(await cluster.connection(), { timeout: 5000 });
      const id = `probe-${Date.now()}-${Math.random()}`;
      await js.publish(subject, 'probe', { msgID: id });
      await retrying('the duplicate window to pass', timeoutMs, async () => {
        const ack = await js.publish(subject, 'probe', { msgID: id });
        if (ack.duplicate) throw new Error(`${id} is still a duplicate`);
      });
    },
    async read(stream, filter = '>') {
      // Right after a node was killed, the stream may be electing a leader: creating the consumer
      // then times out. Such a read is tried again (from scratch), for at most 60 s in all.
      const deadline = Date.now() + 60_000;
      for (;;) {
        try {
          return await readOnce(await cluster.connection(), stream, filter, deadline);
        } catch (err) {
          const retriable = /timeout|no responders|not enabled|503/i.test(
            String((err as Error)?.message ?? err),
          );
          if (!retriable || Date.now() > deadline) throw err;
          await sleep(500);
        }
      }
    },
    async close() {
      const c = mgmt;
      mgmt = null;
      if (c !== null) await Promise.race([c.close(), sleep(2000)]);
      await Promise.all(nodes.map((n) => n.stop()));
      dir.remove();
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

/** One read of a whole stream (or the subjects of `filter`) through an ordered consumer. */
async function readOnce(
  nc: Awaited<ReturnType<NatsCluster['connection']>>,
  stream: string,
  filter: string,
  deadline: number,
): Promise<StoredEnvelope[]> {
  const js = jetstream(nc, { timeout: 5000 });
  const consumer = await js.consumers.get(stream, { filter_subjects: filter });
  const out: StoredEnvelope[] = [];
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 2000, expires: 1000 });
      let n = 0;
      for await (const m of batch) {
        n++;
        const e = m.json<{ gateway: string; seq: number; type: string; body: unknown }>();
        out.push({
          streamSeq: m.seq,
          subject: m.subject,
          msgId: m.headers?.get('Nats-Msg-Id') ?? '',
          gateway: e.gateway,
          seq: e.seq,
          type: e.type,
          body: e.body,
        });
      }
      if (n === 0) break;
      if (Date.now() > deadline) throw new Error(`reading ${stream} took over 60 s`);
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  return out;
}

interface NodeSpec {
  name: string;
  port: number;
  clusterPort: number;
  httpPort: number;
}

function makeNode(
  spec: NodeSpec,
  all: NodeSpec[],
  dir: TempDir,
  options: { auth?: NatsAuth; tls?: NatsTls },
): NatsNode {
  const store = dir.file(spec.name);
  mkdirSync(store, { recursive: true });
  const conf = dir.file(`${spec.name}.conf`);
  const q = JSON.stringify;
  const lines = [
    `server_name: ${spec.name}`,
    `listen: "127.0.0.1:${spec.port}"`,
    `http: "127.0.0.1:${spec.httpPort}"`,
    `jetstream { store_dir: ${q(store)}, max_memory_store: 64MB, max_file_store: 1GB }`,
  ];
  if (all.length > 1) {
    lines.push(
      'cluster {',
      '  name: tidegate-test',
      `  listen: "127.0.0.1:${spec.clusterPort}"`,
      `  routes: [${all
        .filter((o) => o.name !== spec.name)
        .map((o) => q(`nats-route://127.0.0.1:${o.clusterPort}`))
        .join(', ')}]`,
      '}',
    );
  }
  const { auth, tls } = options;
  if (auth?.user !== undefined) {
    lines.push(`authorization { user: ${q(auth.user)}, password: ${q(auth.password ?? '')} }`);
  } else if (auth?.token !== undefined) {
    lines.push(`authorization { token: ${q(auth.token)} }`);
  }
  if (tls) {
    const verify = tls.client ? ', verify: true' : '';
    lines.push(`tls { ca_file: ${q(tls.ca)}, cert_file: ${q(tls.cert)}, key_file: ${q(tls.key)}${verify} }`);
  }
  writeFileSync(conf, `${lines.join('\n')}\n`);

  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stderr = '';

  const stop = async (signal: 'SIGTERM' | 'SIGKILL') => {
    const child = proc;
    if (!child) return;
    child.kill(signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), EXIT_WITHIN_MS);
    await exited;
    clearTimeout(killer);
  };

  return {
    ...spec,
    url: `nats://127.0.0.1:${spec.port}`,
    pid: () => proc?.pid ?? null,
    kill: () => stop('SIGKILL'),
    stop: () => stop('SIGTERM'),
    async start() {
      if (proc) return;
      stderr = '';
      const child = spawn(NATS_SERVER, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      proc = child;
      running.add(child);
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-8000);
      });
      let gone = false;
      exited = new Promise<void>((resolve) => {
        const done = () => {
          gone = true;
          running.delete(child);
          if (proc === child) proc = null;
          resolve();
        };
        child.once('exit', done);
        child.once('error', (err) => {
          stderr += err.message;
          done();
        });
      });
      const deadline = Date.now() + READY_WITHIN_MS;
      for (;;) {
        if (gone) throw new Error(`nats-server ${spec.name} exited at start: ${stderr.trim()}`);
        if ((await status(`http://127.0.0.1:${spec.httpPort}/healthz?js-enabled-only=true`)) === 200) return;
        if (Date.now() > deadline) {
          await stop('SIGKILL');
          throw new Error(
            `nats-server ${spec.name} not healthy within ${READY_WITHIN_MS} ms: ${stderr.trim()}`,
          );
        }
        await sleep(50);
      }
    },
    async streamState(stream) {
      const res = await fetch(`http://127.0.0.1:${spec.httpPort}/jsz?accounts=true&streams=true`);
      const jsz = (await res.json()) as {
        account_details?: {
          stream_detail?: { name: string; state: { messages: number; last_seq: number } }[];
        }[];
      };
      for (const account of jsz.account_details ?? []) {
        for (const s of account.stream_detail ?? []) {
          if (s.name === stream) return { messages: s.state.messages, lastSeq: s.state.last_seq };
        }
      }
      return null;
    },
  };
}

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** `attempt()` again every 100 ms until it resolves, for at most `timeoutMs`. */
async function retrying<T>(what: string, timeoutMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
