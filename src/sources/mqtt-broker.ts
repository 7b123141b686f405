import { createRequire } from 'node:module';
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket } from 'aedes';
import type { Clock } from '../runtime/clock.js';
import type { Logger, RateLimitedLog } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { BrokerConfig } from './broker-config.js';
import { type Acl, BrokerLogins, type PasswordVerifier } from './broker-login.js';
import { DEFAULT_LOGIN_LIMITS, type LoginThrottleLimits } from './login-throttle.js';
import { verifyPassword } from './password.js';
import { anyTopicMatches, filterWithin } from './topic-filter.js';
import type { TopicTemplate } from './topic-template.js';

/**
 * mqtt-packet, the encoder aedes writes packets with, builds a cache of 65 536 two-byte Buffers (one
 * per packet id) on the first packet it writes unless told not to: about 6 MB of heap for the life of
 * the process, to save one 2-byte allocation per packet. Turned off on the copy aedes itself loads
 * (resolved from aedes, whatever the layout of node_modules).
 */
function disablePacketNumberCache(): void {
  const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
  const mqttPacket = fromAedes('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } };
  mqttPacket.writeToStream.cacheNumbers = false;
}

/** A topic template and what to do with a message on it; registered by the MQTT sources. */
export interface BrokerRoute {
  template: TopicTemplate;
  /**
   * Ingests a message. With `durable` (QoS 1/2) it returns a promise that settles when the
   * message's readings are committed; without (QoS 0), nothing: no one waits for the commit.
   */
  onMessage(
    topic: string,
    named: { device?: string; metric?: string },
    payload: Buffer,
    durable: boolean,
  ): Promise<void> | undefined;
}

type DenyReason = 'auth' | 'anonymous' | 'throttled' | 'client_id' | 'acl_publish' | 'acl_subscribe';

/**
 * The embedded MQTT broker (aedes): users with scrypt-hashed passwords (failed logins throttled
 * per address), per-user topic ACLs, anonymous clients only when configured (or only from
 * loopback), a payload cap, `$SYS` closed to publishers. Client publishes are ingested in `authorizePublish`, before the PUBACK, so a QoS 1
 * acknowledgement means the readings are committed.
 */
export class EmbeddedBroker {
  private aedes: Aedes | null = null;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly acls = new WeakMap<Client, Acl>();
  /** Clients whose CONNECT has a zero-length ClientId that the protocol refuses (see preConnect). */
  private readonly missingClientId = new WeakSet<Client>();
  private readonly logins: BrokerLogins;
  private readonly loginLimits: LoginThrottleLimits;
  private readonly routes = new Set<BrokerRoute>();
  private boundPort = 0;

  constructor(
    private readonly config: BrokerConfig,
    private readonly deps: {
      metrics: Metrics;
      log: Logger;
      warn: RateLimitedLog;
      clock: Clock;
      onUnknownTopic(topic: string): void;
      /** The password check (scrypt); tests observe it. */
      verifyPassword?: PasswordVerifier;
      loginThrottle?: Partial<LoginThrottleLimits>;
    },
  ) {
    this.loginLimits = { ...DEFAULT_LOGIN_LIMITS, ...deps.loginThrottle };
    this.logins = new BrokerLogins(config, {
      verify: deps.verifyPassword ?? verifyPassword,
      limits: this.loginLimits,
      now: () => deps.clock.now(),
    });
  }

  async start(): Promise<void> {
    disablePacketNumberCache();
    const aedes = await Aedes.createBroker({
      id: 'tidegate',
      preConnect: (client, packet, done) => {
        if (refusesEmptyClientId(packet)) this.missingClientId.add(client);
        done(null, true);
      },
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => {
        const acl = this.acls.get(client);
        if (acl?.subscribe.some((allowed) => filterWithin(sub.topic, allowed))) {
          done(null, sub);
          return;
        }
        this.deny('acl_subscribe', client, `subscribe to ${sub.topic} denied`);
        done(null, null); // SUBACK 0x80: refused, the connection stays
      },
    });
    aedes.on('clientError', (client, err) =>
      this.deps.log.debug({ client: client?.id, err: err.message }, 'mqtt client error'),
    );
    aedes.on('connectionError', (client, err) =>
      this.deps.log.debug({ client: client?.id, err: err.message }, 'mqtt connection error'),
    );
    aedes.on('client', () => this.deps.metrics.brokerClients.set(aedes.connectedClients));
    aedes.on('clientDisconnect', () => this.deps.metrics.brokerClients.set(aedes.connectedClients));
    this.aedes = aedes;
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      this.limitPackets(aedes.handle(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.deps.log.error({ err }, 'embedded broker server error'));
    this.server = server;
    const address = server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : this.config.port;
    this.deps.log.info({ host: this.config.host, port: this.boundPort }, 'embedded MQTT broker listening');
  }

  async stop(): Promise<void> {
    const { aedes, server } = this;
    this.aedes = null;
    this.server = null;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of this.sockets) s.destroy();
      await closed;
    }
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }

  get port(): number {
    return this.boundPort;
  }

  get running(): boolean {
    return this.server !== null;
  }

  get clients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  addRoute(route: BrokerRoute): () => void {
    this.routes.add(route);
    return () => this.routes.delete(route);
  }

  /** Publishes on behalf of the gateway (results forwarded to `tidegate/#`), bypassing ACLs. */
  publish(topic: string, payload: Buffer | string, qos: 0 | 1 = 0): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) return Promise.reject(new Error('the embedded broker is not running'));
    const packet = {
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos,
      retain: false,
      dup: false,
    } as PublishPacket;
    return new Promise((resolve, reject) => aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Login checks (BrokerLogins) behind the ClientId rule, which aedes leaves to us: a refusal here
   * is answered with its CONNACK return code and the connection closed.
   */
  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const refuse = (returnCode: 2 | 4 | 5, reason: DenyReason, message: string) => {
      this.deny(reason, client, message);
      const err = new Error(message) as AuthenticateError;
      err.returnCode = returnCode;
      done(err, false);
    };
    if (this.missingClientId.has(client)) {
      refuse(
        2,
        'client_id',
        'a zero-length ClientId needs CleanSession 1 (MQTT 3.1.1) and is refused by MQTT 3.1',
      );
      return;
    }
    const address = remoteAddress(client);
    this.logins.check(address, username, password).then(
      (verdict) => {
        if (verdict.accepted) {
          this.acls.set(client, verdict.acl);
          done(null, true);
          return;
        }
        if (verdict.throttledNow) {
          const { failures, backoffMs } = this.loginLimits;
          this.deps.warn.warn(
            'broker:throttle',
            { address, failures, backoffMs },
            'too many failed logins: address throttled',
          );
        }
        refuse(verdict.returnCode, verdict.reason, verdict.message);
      },
      (err: Error) => refuse(4, 'auth', `login check failed: ${err.message}`),
    );
  }

  private authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    // A will published by the broker itself after its client left.
    if (!client) {
      done(null);
      return;
    }
    const topic = packet.topic;
    const acl = this.acls.get(client);
    if (topic.startsWith('$') || !acl || !anyTopicMatches(acl.publish, topic)) {
      this.deny('acl_publish', client, `publish to ${topic} denied`);
      done(new Error(`publish to ${topic} is not allowed`));
      return;
    }
    const payload = packet.payload as Buffer;
    if (payload.length > this.config.maxPayload) {
      this.deps.metrics.readingsRejected.inc({ reason: 'oversized' });
      this.deps.warn.warn(
        'broker:oversized',
        { client: client.id, topic, bytes: payload.length },
        'payload over broker.maxPayload',
      );
      done(new Error(`payload of ${payload.length} bytes is over broker.maxPayload`));
      return;
    }
    // QoS 0 has no acknowledgement to hold: nothing waits for the commit, no promise is made.
    const durable = packet.qos > 0;
    let routed = 0;
    let pending: Promise<void> | Promise<void>[] | undefined;
    for (const route of this.routes) {
      const named = route.template.match(topic);
      if (!named) continue;
      routed++;
      const stored = route.onMessage(topic, named, payload, durable);
      if (stored === undefined) continue;
      if (pending === undefined) pending = stored;
      else if (Array.isArray(pending)) pending.push(stored);
      else pending = [pending, stored];
    }
    if (routed === 0) this.deps.onUnknownTopic(topic);
    if (pending === undefined) {
      done(null);
      return;
    }
    // QoS 1/2: acknowledge only once stored; a failed commit closes the connection and the client resends.
    (Array.isArray(pending) ? Promise.all(pending) : pending).then(
      () => done(null),
      (err: Error) => done(err),
    );
  }

  /**
   * Refuses a packet as soon as its fixed header announces more than the largest publish allowed
   * (broker.maxPayload plus room for the topic and properties), before aedes buffers its body: a
   * client announcing 200 MB would otherwise have it held in memory. Hooks the client's parser
   * (aedes keeps it private); without one, the payload check in authorizePublish still applies.
   */
  private limitPackets(client: Client): void {
    const parser = (client as unknown as { _parser?: PacketParser })._parser;
    if (typeof parser?.parse !== 'function') return;
    const max = this.config.maxPayload + PACKET_OVERHEAD;
    const parse = parser.parse.bind(parser);
    parser.parse = (buf: Buffer) => {
      const left = parse(buf);
      const announced = parser.packet?.length ?? -1;
      if (announced > max && !client.conn.destroyed) {
        this.deps.metrics.readingsRejected.inc({ reason: 'oversized' });
        this.deps.warn.warn(
          'broker:oversized',
          { client: client.id, address: remoteAddress(client), bytes: announced },
          'packet over broker.maxPayload announced: connection closed',
        );
        client.conn.destroy();
      }
      return left;
    };
  }

  private deny(reason: DenyReason, client: Client, message: string): void {
    this.deps.metrics.brokerDenied.inc({ reason });
    this.deps.warn.warn(
      `broker:${reason}`,
      { client: client.id, address: remoteAddress(client), reason },
      message,
    );
  }
}

/** The part of mqtt-packet's parser that limitPackets uses: `packet.length` is the announced size. */
interface PacketParser {
  parse(buf: Buffer): number;
  packet?: { length: number };
}

/** A publish's bytes besides its payload: the topic (at most 65,535 bytes), its length, the packet id, properties. */
const PACKET_OVERHEAD = 65_536 + 1_024;

/**
 * [MQTT-3.1.3-8]: a zero-length ClientId with CleanSession 0 is refused with 0x02; MQTT 3.1 needs
 * 1 to 23 characters. aedes would assign an id and accept both.
 */
function refusesEmptyClientId(packet: ConnectPacket): boolean {
  return packet.clientId === '' && (!packet.clean || packet.protocolVersion === 3);
}

function remoteAddress(client: Client): string {
  const conn = client.conn as Partial<Socket> | undefined;
  return conn?.remoteAddress ?? '';
}
