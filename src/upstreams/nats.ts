import { readFile } from 'node:fs/promises';
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import {
  type ConnectionOptions,
  connect,
  createInbox,
  credsAuthenticator,
  headers,
  type Msg,
  type NatsConnection,
} from '@nats-io/transport-node';
import { deadline } from '../runtime/deadline.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { NatsUpstreamConfig } from './config.js';
import { compileNatsSubject, type NatsSubjects, streamSubjectsOf } from './subject.js';
import {
  errorMessage,
  type OutboxItem,
  type Upstream,
  type UpstreamState,
  UpstreamUnavailableError,
} from './upstream.js';

/** JetStream's answer to a publish whose `Nats-Expected-Last-Subject-Sequence` did not hold. */
const WRONG_LAST_SEQUENCE = 10071;
/** JetStream's "JetStream system temporarily unavailable": no meta or stream leader, mostly during an election. */
const JS_TEMPORARILY_UNAVAILABLE = 10008;
/** How often a conditional first publish is tried again after "wrong last sequence". */
const RECHECKS = 3;

export interface NatsUpstreamOptions {
  /** Reconnection delays: from `min`, doubling per failed attempt, up to `max` (with jitter). */
  reconnect?: { min: number; max: number };
  /** How long `start()` waits for the first connection attempt to settle. */
  startWait?: number;
}

export interface NatsUpstreamDeps {
  gatewayId: string;
  log: Logger;
  metrics: Metrics;
}

/** A publish waiting for its PubAck. */
interface Pending {
  seq: number;
  ok(duplicate: boolean): void;
  fail(err: Error): void;
}

/** A JetStream PubAck, or its refusal. */
interface PubAck {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { code?: number; err_code?: number; description?: string };
}

class PublishRefused extends Error {
  override readonly name = 'PublishRefused';
  constructor(
    message: string,
    readonly errCode: number | null,
  ) {
    super(message);
  }
}

/**
 * A NATS JetStream stream (SPEC §4 "Beyond one machine"): each row is published to its subject
 * with the message id `{gateway}:{seq}`, and confirmed only by the stream's PubAck (a duplicate
 * too: the stream had it). Publishes are pipelined, up to `maxInFlight`, on one connection.
 *
 * Order: each gateway's rows must reach the stream in increasing seq. They do while nothing fails
 * (one connection, one stream leader). So after any failure nothing more is published until every
 * delivery in flight has settled; the next delivery (the forwarder's resend from its cursor) first
 * reads the stream's last message of this gateway (`last_by_subj`) and skips the rows it shows
 * stored — exact even outside the duplicate window — then publishes its first row alone,
 * conditional on the last sequence of its subject, and the rest only once that one is stored. A
 * new leader elected while a burst was on its way could otherwise store the end of the burst
 * before the resend of its start. A lost connection is never resumed: nats.js would send what it
 * buffered meanwhile after rows that were lost with the socket, so each connection is new.
 */
export class NatsUpstream implements Upstream {
  readonly type = 'nats' as const;
  readonly id: string;
  readonly maxInFlight: number;
  private readonly subjects: NatsSubjects;
  private connectOptions: ConnectionOptions | null = null;
  private nc: NatsConnection | null = null;
  private jsm: JetStreamManager | null = null;
  private inbox = '';
  private current: UpstreamState = 'connecting';
  private error: string | null = null;
  private closing = false;
  private wasConnected = false;
  private streamReady = false;
  private attempts = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  private readonly pending = new Map<number, Pending>();
  private token = 0;
  /** Deliveries not settled yet. */
  private outstanding = 0;
  /** A delivery failed: none is published until all have settled (the resend then starts anew). */
  private halted = false;
  /** The stream's last message of ours was read since the last failure or connection. */
  private checked = false;
  /** The lowest row the stream refused in this run of deliveries (checks that none after it was stored). */
  private refusedSeq: number | null = null;
  /** The highest seq the stream showed stored (its last message of this gateway). */
  private storedThrough = 0;
  /** Publishing phases run one after another, in the order deliver() was called. */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;

  constructor(
    private readonly config: NatsUpstreamConfig,
    private readonly deps: NatsUpstreamDeps,
    private readonly options: NatsUpstreamOptions = {},
  ) {
    this.id = config.id;
    this.maxInFlight = Math.max(1, Math.floor(config.maxInFlight / config.batchSize));
    this.subjects = compileNatsSubject(config.subject, deps.gatewayId);
    this.log = deps.log.child({ upstream: config.id });
    // The series from the start (at 0), as the forwarder's counters.
    deps.metrics.upstreamDuplicates.inc({ upstream: config.id }, 0);
  }

  async start(): Promise<void> {
    if (this.connectOptions) return;
    const { config } = this;
    const files: Partial<Record<'ca' | 'cert' | 'key' | 'creds', string>> = {};
    for (const k of ['ca', 'cert', 'key', 'creds'] as const) {
      const path = config[k];
      if (path === undefined) continue;
      try {
        files[k] = await readFile(path, 'utf8');
      } catch (err) {
        throw new Error(`upstream "${this.id}": cannot read ${k} file ${path}: ${errorMessage(err)}`);
      }
    }
    const tls =
      files.ca !== undefined || files.cert !== undefined || config.servers.some((s) => s.startsWith('tls:'))
        ? {
            ...(files.ca !== undefined ? { ca: files.ca } : {}),
            ...(files.cert !== undefined ? { cert: files.cert } : {}),
            ...(files.key !== undefined ? { key: files.key } : {}),
          }
        : undefined;
    this.connectOptions = {
      name: `tidegate-${this.deps.gatewayId}-${this.id}`,
      // Never resumed: see the class comment. Each connection is made by connectLoop().
      reconnect: false,
      timeout: config.timeout,
      // A server that stopped answering (not closed) is noticed within ~15 s.
      pingInterval: 5000,
      maxPingOut: 3,
      ...(config.user !== undefined ? { user: config.user, pass: config.password ?? '' } : {}),
      ...(config.token !== undefined ? { token: config.token } : {}),
      ...(files.creds !== undefined
        ? { authenticator: credsAuthenticator(new TextEncoder().encode(files.creds)) }
        : {}),
      ...(tls ? { tls } : {}),
    };
    const first = this.connectNow();
    await Promise.race([first, sleep(this.options.startWait ?? 3000)]);
  }

  /** One attempt to connect and check the stream; on failure, the next is scheduled with backoff. */
  private connectNow(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = this.attempt().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /**
   * A connection to the first of the servers (in turn, from a random one) that takes it. One at a
   * time, so that TLS checks each server's certificate against its own host: nats.js checks an IP
   * address against "localhost" otherwise.
   */
  private async connectAny(options: ConnectionOptions): Promise<NatsConnection> {
    const { servers } = this.config;
    const start = Math.floor(Math.random() * servers.length);
    const failures: string[] = [];
    for (let i = 0; i < servers.length; i++) {
      const url = new URL(servers[(start + i) % servers.length] as string);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      try {
        return await connect({
          ...options,
          servers: [`${url.hostname}:${url.port || 4222}`],
          ...(options.tls ? { tls: { ...options.tls, host } as typeof options.tls } : {}),
        });
      } catch (err) {
        failures.push(`${url.host}: ${errorMessage(err)}`);
      }
    }
    throw new Error(failures.join('; '));
  }

  private async attempt(): Promise<void> {
    const options = this.connectOptions;
    if (!options || this.closing) return;
    this.current = 'connecting';
    let nc: NatsConnection | null = null;
    try {
      nc = await this.connectAny(options);
      const jsm = await jetstreamManager(nc, { timeout: this.config.timeout, checkAPI: false });
      if (!this.streamReady) await this.ensureStream(jsm);
      if (this.closing) {
        await nc.close();
        return;
      }
      this.inbox = createInbox();
      nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.answered(msg) });
      this.streamReady = true;
      this.nc = nc;
      this.jsm = jsm;
      this.checked = false;
      this.attempts = 0;
      this.error = null;
      this.current = 'connected';
      this.log.info(
        { server: nc.getServer(), stream: this.config.stream },
        this.wasConnected ? 'nats upstream reconnected' : 'nats upstream connected',
      );
      this.wasConnected = true;
      const conn = nc;
      void conn.closed().then((err) => this.lost(conn, err ?? undefined));
    } catch (err) {
      this.error = describe(err, this.config.stream, this.config.timeout);
      this.current = 'offline';
      if (nc !== null) await nc.close().catch(() => {});
      this.log.warn({ err: this.error, attempt: this.attempts + 1 }, 'nats upstream: connecting failed');
      this.retryLater();
    }
  }

  /** The stream exists (or is created) and takes this gateway's subjects. */
  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    const { stream, createStream } = this.config;
    try {
      await jsm.streams.info(stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
      if (createStream === undefined) {
        throw new Error(`stream ${stream} does not exist: create it, or set createStream`);
      }
      const subjects = streamSubjectsOf(this.config.subject) as string;
      const created: Partial<StreamConfig> & { name: string } = {
        name: stream,
        subjects: [subjects],
        num_replicas: createStream.replicas,
        max_age: createStream.maxAge * 1_000_000,
        duplicate_window: createStream.duplicateWindow * 1_000_000,
      };
      await jsm.streams.add(created);
      this.log.info({ stream, subjects, replicas: createStream.replicas }, 'nats stream created');
    }
    const sample = this.subjects.render('result', 'rule');
    let taker: string;
    try {
      taker = await jsm.streams.find(sample);
    } catch (err) {
      throw new Error(
        `no stream takes subject ${sample} (stream ${stream}'s subjects?): ${errorMessage(err)}`,
      );
    }
    if (taker !== stream) throw new Error(`subject ${sample} goes to stream ${taker}, not ${stream}`);
  }

  private retryLater(): void {
    if (this.closing || this.retryTimer) return;
    const { min, max } = this.options.reconnect ?? { min: 200, max: 5000 };
    const ceiling = Math.min(max, min * 2 ** Math.min(20, this.attempts));
    this.attempts++;
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = null;
        void this.connectNow();
      },
      Math.round(ceiling / 2 + (Math.random() * ceiling) / 2),
    );
  }

  private lost(nc: NatsConnection, err: Error | undefined): void {
    if (this.nc !== nc) return;
    this.nc = null;
    this.jsm = null;
    if (this.closing) return;
    const why = err ? errorMessage(err) : 'closed by the server';
    this.error = `connection lost: ${why}`;
    this.current = 'offline';
    this.log.warn({ err: this.error }, 'nats upstream connection lost');
    this.failAll(new UpstreamUnavailableError(`connection to NATS lost (${why})`));
    this.retryLater();
  }

  deliver(batch: readonly OutboxItem[]): Promise<void> {
    if (this.closing) return Promise.reject(new UpstreamUnavailableError(`upstream ${this.id} is closed`));
    const nc = this.nc;
    if (nc === null) {
      return Promise.reject(
        new UpstreamUnavailableError(`not connected to NATS${this.error ? `: ${this.error}` : ''}`),
      );
    }
    if (this.halted && this.outstanding > 0) {
      return Promise.reject(new Error('an earlier delivery failed: waiting for those in flight to settle'));
    }
    if (this.outstanding === 0) {
      this.halted = false;
      this.refusedSeq = null;
    }
    this.outstanding++;
    const phase = this.tail.then(() => this.publish(nc, batch));
    this.tail = phase.catch(() => {});
    return phase
      .then((acked) => acked.done)
      .then(
        () => {
          this.outstanding--;
        },
        (err: unknown) => {
          this.outstanding--;
          this.halt();
          throw err;
        },
      );
  }

  private halt(): void {
    this.halted = true;
    this.checked = false;
  }

  /**
   * Publishes a batch (after the stream check that opens each run of deliveries); resolves once
   * every publish is on its way, with a promise of their acknowledgements.
   */
  private async publish(nc: NatsConnection, batch: readonly OutboxItem[]): Promise<{ done: Promise<void> }> {
    if (this.halted) throw new Error('an earlier delivery failed: not published');
    if (nc !== this.nc) throw new UpstreamUnavailableError('the connection to NATS was lost');
    let from = 0;
    if (!this.checked) from = await this.recheck(nc, batch);
    let skipped = 0;
    while (from < batch.length && (batch[from] as OutboxItem).envelope.seq <= this.storedThrough) {
      from++;
      skipped++;
    }
    if (skipped > 0) this.deps.metrics.upstreamDuplicates.inc({ upstream: this.id }, skipped);
    if (from === batch.length) return { done: Promise.resolve() };
    const items = from === 0 ? batch : batch.slice(from);
    return { done: this.send(nc, items) };
  }

  /**
   * Opens a run of deliveries: skips what the stream's last message of this gateway shows stored,
   * then publishes the first row left alone, on the condition that its subject's last message is
   * still the one just read; "wrong last sequence" means something landed meanwhile: read again.
   * Returns the index of the first row of `batch` still to publish.
   */
  private async recheck(nc: NatsConnection, batch: readonly OutboxItem[]): Promise<number> {
    for (let round = 0; ; round++) {
      const last = await this.lastStored(this.subjects.gatewayFilter);
      if (last !== null && last.gatewaySeq > this.storedThrough) {
        if (last.gatewaySeq >= (batch[0]?.envelope.seq ?? Number.POSITIVE_INFINITY)) {
          this.log.info(
            { storedThrough: last.gatewaySeq, from: batch[0]?.envelope.seq },
            'nats stream already has rows after the cursor: skipping them',
          );
        }
        this.storedThrough = last.gatewaySeq;
      }
      let first = 0;
      while (first < batch.length && (batch[first] as OutboxItem).envelope.seq <= this.storedThrough) first++;
      const probe = batch[first];
      // All of them stored: publish() skips (and counts) them; the next batch is checked again,
      // so that its first row still goes alone.
      if (probe === undefined) return 0;
      const subject = this.subjects.render(probe.envelope.type, probe.rule);
      const onSubject = await this.lastStored(subject);
      try {
        await this.send(nc, [probe], onSubject?.streamSeq ?? 0);
        this.checked = true;
        this.refusedSeq = null;
        this.deps.metrics.upstreamDuplicates.inc({ upstream: this.id }, first);
        return first + 1;
      } catch (err) {
        if (
          !(err instanceof PublishRefused) ||
          err.errCode !== WRONG_LAST_SEQUENCE ||
          round + 1 >= RECHECKS
        ) {
          throw err;
        }
        this.log.info(
          { seq: probe.envelope.seq, err: err.message },
          'nats stream moved on: reading it again',
        );
      }
    }
  }

  /** The stream's last message on `subject` (a filter): its stream seq and our seq (from its id). */
  private async lastStored(subject: string): Promise<{ streamSeq: number; gatewaySeq: number } | null> {
    const jsm = this.jsm;
    if (!jsm) throw new UpstreamUnavailableError('the connection to NATS was lost');
    let msg: Awaited<ReturnType<JetStreamManager['streams']['getMessage']>>;
    try {
      msg = await jsm.streams.getMessage(this.config.stream, { last_by_subj: subject });
    } catch (err) {
      throw new Error(
        `reading the last message on ${subject} of stream ${this.config.stream} failed: ${describe(err, this.config.stream, this.config.timeout)}`,
      );
    }
    if (msg === null) return null;
    return {
      streamSeq: msg.seq,
      gatewaySeq: seqOf(msg.header?.get('Nats-Msg-Id') ?? '', this.deps.gatewayId),
    };
  }

  /**
   * Publishes `items` in order without waiting; resolves when the stream acknowledged all of them,
   * rejects on the first refusal or after `timeout`. With `expectLast`, each is conditional on
   * its subject's last stream sequence (only used for one row).
   */
  private send(nc: NatsConnection, items: readonly OutboxItem[], expectLast?: number): Promise<void> {
    const { timeout } = this.config;
    const tokens: number[] = [];
    let unacked = items.length;
    let settle: (err: Error | null) => void = () => {};
    const acked = new Promise<void>((resolve, reject) => {
      let settled = false;
      settle = (err) => {
        if (settled) return;
        settled = true;
        for (const t of tokens) this.pending.delete(t);
        if (err) reject(err);
        else resolve();
      };
    });
    const metrics = this.deps.metrics;
    const gateway = this.deps.gatewayId;
    for (const item of items) {
      const { envelope } = item;
      const token = ++this.token;
      tokens.push(token);
      const subject = this.subjects.render(envelope.type, item.rule);
      this.pending.set(token, {
        seq: envelope.seq,
        ok: (duplicate) => {
          if (duplicate) metrics.upstreamDuplicates.inc({ upstream: this.id });
          if (--unacked === 0) settle(null);
        },
        fail: (err) => settle(err),
      });
      const h = headers();
      h.set('Nats-Msg-Id', `${gateway}:${envelope.seq}`);
      if (expectLast !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(expectLast));
      try {
        nc.publish(subject, JSON.stringify(envelope), { reply: `${this.inbox}.${token}`, headers: h });
      } catch (err) {
        settle(new UpstreamUnavailableError(`publishing to ${subject} failed: ${errorMessage(err)}`));
        break;
      }
    }
    return deadline(acked, timeout, {
      onTimeout: () => {
        const err = new Error(
          `stream ${this.config.stream} acknowledged ${items.length - unacked} of ${items.length} messages within ${timeout} ms`,
        );
        settle(err);
        return err;
      },
    });
  }

  /** A reply on our inbox: the PubAck (or refusal) of one publish. */
  private answered(msg: Msg): void {
    const token = Number(msg.subject.slice(msg.subject.lastIndexOf('.') + 1));
    const p = this.pending.get(token);
    if (p === undefined) return; // its batch timed out or failed already
    this.pending.delete(token);
    const ack = this.parseAck(msg, p.seq);
    if (ack instanceof Error) {
      if (this.refusedSeq === null || p.seq < this.refusedSeq) this.refusedSeq = p.seq;
      p.fail(ack);
      return;
    }
    if (this.refusedSeq !== null && p.seq > this.refusedSeq && ack.duplicate !== true) {
      // Nothing published after a refusal should be stored before the resend; say so if it was.
      this.log.error(
        { seq: p.seq, refused: this.refusedSeq },
        'nats stream stored a row published after one it refused: they are out of order in the stream',
      );
      this.refusedSeq = null;
    }
    p.ok(ack.duplicate === true);
  }

  /** The PubAck in a reply, or why the publish was refused. */
  private parseAck(msg: Msg, seq: number): PubAck | Error {
    if (msg.headers?.code === 503) {
      return new PublishRefused(
        `no responders for row ${seq}: stream ${this.config.stream} has no leader now (an election?)`,
        null,
      );
    }
    let ack: PubAck;
    try {
      ack = JSON.parse(msg.string()) as PubAck;
    } catch {
      return new Error(`row ${seq}: an answer that is not a PubAck: ${msg.string().slice(0, 200)}`);
    }
    if (ack.error) {
      const code = ack.error.err_code ?? null;
      return new PublishRefused(
        `stream ${this.config.stream} refused row ${seq}: ${ack.error.description ?? 'no description'}${code !== null ? ` (${code})` : ''}${code === JS_TEMPORARILY_UNAVAILABLE ? ': the JetStream cluster has no leader now (an election?)' : ''}`,
        code,
      );
    }
    return ack;
  }

  private failAll(err: Error): void {
    for (const p of [...this.pending.values()]) p.fail(err);
    this.pending.clear();
  }

  state(): UpstreamState {
    return this.current;
  }

  lastError(): string | null {
    return this.error;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.failAll(new UpstreamUnavailableError(`upstream ${this.id} is closing`));
    await this.connecting?.catch(() => {});
    const nc = this.nc;
    this.nc = null;
    this.jsm = null;
    if (nc !== null) await Promise.race([nc.close().catch(() => {}), sleep(1000)]);
    this.current = 'offline';
  }
}

/** Our seq from a message id `{gateway}:{seq}`; 0 for an id that is not ours. */
export function seqOf(msgId: string, gateway: string): number {
  if (!msgId.startsWith(`${gateway}:`)) return 0;
  const seq = Number(msgId.slice(gateway.length + 1));
  return Number.isSafeInteger(seq) && seq > 0 ? seq : 0;
}

/** What a failed JetStream call means, in words a user can act on. */
function describe(err: unknown, stream: string, timeout: number): string {
  const message = errorMessage(err);
  if (/jetstream is not enabled|no responders/i.test(message)) {
    return `no responders (${message}): JetStream or stream ${stream} has no leader now (an election?), or JetStream is not enabled for this account`;
  }
  if (/\b10008\b|temporarily unavailable/i.test(message)) {
    return `${message}: the JetStream cluster has no leader now (an election?)`;
  }
  if (/^timeout$|TIMEOUT/i.test(message)) {
    return `no answer within ${timeout} ms (a leader election, or an overloaded server)`;
  }
  return message;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
