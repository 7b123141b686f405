import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ApiServer, createApp } from './api/server.js';
import { BacktestJobs } from './backtest/jobs.js';
import type { GatewayConfig } from './config/schema.js';
import { Forwarder } from './forward/forwarder.js';
import { dedupeHorizon, RecentDuplicates } from './ingest/duplicates.js';
import { Ingest } from './ingest/ingest.js';
import { StoredDuplicates } from './ingest/stored-duplicates.js';
import { ReadingRejection } from './model/reading.js';
import { LiveRules } from './rules/live.js';
import { type Clock, systemClock } from './runtime/clock.js';
import { EventBus } from './runtime/events.js';
import { InternalErrors } from './runtime/internal-errors.js';
import { KeptUpClock } from './runtime/kept-up-clock.js';
import { createLogger, type Logger, RateLimitedLog } from './runtime/log.js';
import { Metrics } from './runtime/metrics.js';
import { VERSION } from './runtime/version.js';
import { createSource } from './sources/create.js';
import { EmbeddedBroker } from './sources/mqtt-broker.js';
import type { Source } from './sources/source.js';
import { BacktestStore, backtestsPath, openBacktestsDatabase } from './store/backtest-store.js';
import { type Db, openDatabase } from './store/database.js';
import { StoreMaintenance } from './store/maintenance.js';
import { Outbox } from './store/outbox.js';
import { OutputsQuery } from './store/outputs-query.js';
import { ReadingWriter } from './store/reading-writer.js';
import { ReadingsQuery } from './store/readings-query.js';
import { RuleStore } from './store/rule-store.js';
import { createUpstream } from './upstreams/create.js';
import type { Upstream } from './upstreams/upstream.js';

export interface GatewayOptions {
  clock?: Clock;
  /**
   * The clock idleness is measured on (SPEC §2): by default the time the gateway kept up with its
   * input (KeptUpClock) on the system clock, or the injected `clock` itself.
   */
  idleClock?: Clock;
  log?: Logger;
  /** Collect process metrics (CPU, RSS, event-loop lag) into /metrics; on for `tidegate run`. */
  processMetrics?: boolean;
  /**
   * A failure the gateway cannot go on after (the store writer's worker died): `tidegate run`
   * stops and exits 1 (systemd restarts it). Default: logged only (the store then refuses readings).
   */
  onFatal?: (err: Error) => void;
}

/**
 * The composition root: builds every part from the configuration, starts them in dependency order
 * (store → broker → sources → API) and stops them in reverse, flushing the store last.
 */
export class Gateway {
  readonly clock: Clock;
  private readonly idleClock: Clock;
  private readonly keptUp: KeptUpClock | null;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly bus: EventBus;
  private readonly errors: InternalErrors;
  private readonly warn: RateLimitedLog;
  private db: Db | null = null;
  private writer: ReadingWriter | null = null;
  private maintenance: StoreMaintenance | null = null;
  private outbox: Outbox | null = null;
  private upstreams: Upstream[] = [];
  private forwarders: Forwarder[] = [];
  private backtests: BacktestJobs | null = null;
  private jobsDb: Db | null = null;
  private rules: LiveRules | null = null;
  private ingest: Ingest | null = null;
  private broker: EmbeddedBroker | null = null;
  private sources: Source[] = [];
  private api: ApiServer | null = null;
  private startedAt = 0;
  private stopping: Promise<void> | null = null;

  private readonly onFatal: ((err: Error) => void) | undefined;

  constructor(
    readonly config: GatewayConfig,
    options: GatewayOptions = {},
  ) {
    this.onFatal = options.onFatal;
    this.clock = options.clock ?? systemClock;
    this.keptUp = options.idleClock || options.clock ? null : new KeptUpClock(systemClock);
    this.idleClock = options.idleClock ?? this.keptUp ?? this.clock;
    this.log = options.log ?? createLogger(config.log.level);
    this.metrics = new Metrics({ processMetrics: options.processMetrics ?? false });
    // Gauges of state are read when Prometheus scrapes, not only when someone asks /health.
    this.metrics.onCollect(() => {
      this.metrics.storeBytes.set(this.storeBytes());
      for (const f of this.forwarders) f.status();
      const engine = this.rules?.engine.stats();
      if (engine) {
        this.metrics.ruleGroups.set({ state: 'live' }, engine.groups);
        this.metrics.ruleGroups.set({ state: 'forgotten' }, engine.rested);
      }
      if (this.ingest) this.metrics.devicesKnown.set(this.ingest.knownDevices);
      if (this.keptUp) this.metrics.idleClockBehind.set(this.keptUp.behindMs / 1000);
    });
    this.warn = new RateLimitedLog(this.log, () => this.clock.now());
    this.errors = new InternalErrors(this.metrics, this.warn);
    this.bus = new EventBus((where, err) => this.errors.report(where, err));
  }

  async start(): Promise<void> {
    this.startedAt = this.clock.now();
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info(
      { gateway: this.config.gateway.id, version: VERSION, rules: this.config.rules.length },
      'tidegate started',
    );
  }

  private async startParts(): Promise<void> {
    const { config } = this;
    const db = openDatabase(config.store.path, { synchronous: config.store.synchronous });
    this.db = db;
    // Without upstreams nothing is written to the outbox at all.
    const outbox = new Outbox(db);
    this.outbox = outbox;
    const forwarding = config.upstreams.length > 0 ? outbox : undefined;
    const writer = this.startWriter(db, forwarding);
    // Always running, even without rules: rules can be created through the API at any time.
    this.keptUp?.start();
    const rules = new LiveRules(config.rules, {
      ...this.commonDeps(),
      idleClock: this.idleClock,
      db,
      writer,
      bus: this.bus,
      store: new RuleStore(db),
      outbox: forwarding,
    });
    this.rules = rules;
    // Without raw readings in the store, recent readings are remembered in memory (bounded), as far
    // back as the rules running at each sweep need: rules created through the API count too.
    const duplicates = config.store.readings
      ? new StoredDuplicates(writer)
      : new RecentDuplicates(() => dedupeHorizon(rules.compiled()), 200_000);
    rules.start(duplicates);
    const ingest = new Ingest(
      { maxFutureSkew: config.ingest.maxFutureSkew, maxDevices: config.ingest.maxDevices },
      {
        ...this.commonDeps(),
        warn: this.warn,
        bus: this.bus,
        writer,
        duplicates,
        knownDevices: db.prepare('SELECT id FROM devices').pluck().all() as string[],
      },
    );
    this.ingest = ingest;
    if (config.broker.enabled) {
      this.broker = new EmbeddedBroker(config.broker, {
        ...this.commonDeps(),
        warn: this.warn,
        onUnknownTopic: (topic) =>
          ingest.reject(
            'broker',
            new ReadingRejection('unknown_topic', `no mqtt source's topics match ${topic}`),
            topic,
          ),
      });
    }
    // Sources first, then the broker listens: a publish must never arrive before the mqtt source
    // that owns its topic has registered (it would be acknowledged as an unknown topic, and lost).
    for (const sc of config.sources) {
      const source = await createSource(sc, {
        ...this.commonDeps(),
        ingest,
        warn: this.warn,
        gatewayId: config.gateway.id,
        maxMetricsPerMessage: config.ingest.maxMetricsPerMessage,
        profiles: config.profiles,
        broker: this.broker,
      });
      this.sources.push(source);
      await source.start();
    }
    await this.broker?.start();
    await this.startUpstreams(outbox);
    writer.onCommit(() => {
      for (const f of this.forwarders) f.kick();
    });
    this.startMaintenance(db, outbox);
    const jobsPath = config.store.path === ':memory:' ? ':memory:' : backtestsPath(config.store.path);
    this.jobsDb = openBacktestsDatabase(jobsPath, config.store.synchronous);
    this.backtests = new BacktestJobs(
      new BacktestStore(this.jobsDb),
      { ...this.commonDeps(), rules: rules.catalog, bus: this.bus },
      { database: config.store.path, jobsDatabase: jobsPath },
    );
    if (config.api.enabled) {
      const app = createApp(config.api, {
        query: new ReadingsQuery(db, () => writer.syncSummaries()),
        outputs: new OutputsQuery(db),
        metrics: this.metrics,
        log: this.log,
        view: this.view(),
        bus: this.bus,
        rules: rules.catalog,
        backtests: this.backtests,
        // Built beside this module by `npm run build` (dist/ui).
        dashboardDir: fileURLToPath(new URL('./ui/', import.meta.url)),
      });
      this.api = new ApiServer(config.api, app, this.log);
      await this.api.start();
    }
  }

  /** The collaborators most parts take. */
  private commonDeps() {
    return { clock: this.clock, metrics: this.metrics, log: this.log };
  }

  private startWriter(db: Db, forwarding: Outbox | undefined): ReadingWriter {
    const { store, outbox } = this.config;
    const writer = new ReadingWriter(
      db,
      {
        batchSize: store.batchSize,
        flushInterval: store.flushInterval,
        summaryInterval: store.summaryInterval,
        outputFlushInterval: store.outputFlushInterval,
        maxPending: store.maxPending,
        storeReadings: store.readings,
        forwardReadings:
          forwarding && outbox.readings
            ? { outbox: forwarding, interval: outbox.readingsInterval }
            : undefined,
        // The commits in a worker thread of their own, off this event loop (a file store only).
        worker: store.path === ':memory:' ? undefined : { path: store.path, synchronous: store.synchronous },
      },
      { ...this.commonDeps(), onFatal: this.onFatal },
    );
    this.writer = writer;
    writer.start();
    return writer;
  }

  /** After the forwarders exist, so that the caps know which outbox rows were forwarded. */
  private startMaintenance(db: Db, outbox: Outbox): void {
    const { store } = this.config;
    this.maintenance = new StoreMaintenance(
      db,
      {
        retention: store.retention,
        maxSize: store.maxSize,
        maxOutboxRows: this.config.outbox.maxRows,
        capInterval: store.maintenanceInterval,
      },
      {
        ...this.commonDeps(),
        outbox,
        forwardedUpTo: () =>
          this.forwarders.length ? Math.min(...this.forwarders.map((f) => f.cursor)) : null,
        syncSummaries: () => this.writer?.syncSummaries(),
      },
    );
    this.maintenance.start();
  }

  private async startUpstreams(outbox: Outbox): Promise<void> {
    const broker = this.broker;
    for (const uc of this.config.upstreams) {
      const upstream = await createUpstream(uc, {
        gatewayId: this.config.gateway.id,
        log: this.log,
        metrics: this.metrics,
        ...(broker
          ? {
              embeddedPublish: (topic: string, payload: Buffer, qos: 0 | 1) =>
                broker.publish(topic, payload, qos),
            }
          : {}),
      });
      this.upstreams.push(upstream);
      await upstream.start();
      const forwarder = new Forwarder(
        upstream,
        outbox,
        { gatewayId: this.config.gateway.id, batchSize: uc.batchSize },
        this.commonDeps(),
      );
      this.forwarders.push(forwarder);
      forwarder.start();
    }
  }

  private view() {
    return {
      gatewayId: this.config.gateway.id,
      version: VERSION,
      startedAt: this.startedAt,
      staleAfter: this.config.ingest.staleAfter,
      now: () => this.clock.now(),
      sources: () => this.sources.map((s) => s.status()),
      broker: () =>
        this.broker
          ? { listening: this.broker.running, port: this.broker.port, clients: this.broker.clients }
          : null,
      store: () => {
        const bytes = this.storeBytes();
        this.metrics.storeBytes.set(bytes);
        return {
          path: this.config.store.path,
          bytes,
          pendingWrites: this.writer?.pendingCount ?? 0,
          lastError: this.writer?.lastError?.message ?? null,
        };
      },
      upstreams: () => this.forwarders.map((f) => f.status()),
      outbox: () => {
        const b = this.outbox?.bounds();
        return { rows: b?.rows ?? 0, lastSeq: b?.last ?? null };
      },
    };
  }

  /** Stops everything, flushing the store; safe to call twice or after a failed start. */
  stop(): Promise<void> {
    this.stopping ??= this.stopParts();
    return this.stopping;
  }

  private async stopParts(): Promise<void> {
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        this.log.error({ err }, `stopping ${what} failed`);
      }
    };
    await step('api', () => this.api?.stop());
    await step('backtests', () => this.backtests?.stop());
    await step('backtests file', () => this.jobsDb?.close());
    for (const s of this.sources.reverse()) await step(`source ${s.id}`, () => s.stop());
    for (const f of this.forwarders) await step(`forwarder ${f.id}`, () => f.stop());
    for (const u of this.upstreams) await step(`upstream ${u.id}`, () => u.close());
    await step('broker', () => this.broker?.stop());
    this.rules?.stop();
    this.keptUp?.stop();
    this.maintenance?.stop();
    await step('store writer', () => this.writer?.stop());
    await step('database', () => this.db?.close());
    this.log.info('tidegate stopped');
  }

  get apiPort(): number {
    return this.api?.port ?? 0;
  }

  get brokerPort(): number {
    return this.broker?.port ?? 0;
  }

  /** Commits what waits in the store writer now (tests, shutdown). */
  flush(): number {
    return this.writer?.flush() ?? 0;
  }

  private storeBytes(): number {
    let total = 0;
    for (const suffix of ['', '-wal']) {
      try {
        total += statSync(this.config.store.path + suffix).size;
      } catch {
        // not there (yet)
      }
    }
    return total;
  }
}
