import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every Prometheus metric of one gateway, on its own registry (so several gateways can run in one
 * process, as the tests do). Names follow SPEC §5.
 */
export class Metrics {
  readonly registry = new Registry();

  /** Run when the registry is scraped, so that gauges of state (store size, backlog) are current. */
  private readonly collectHooks: (() => void)[] = [];
  private collecting = false;
  private readonly refresh = () => this.runCollectHooks();

  /** Counted through a CounterTally by ingest: its collect adds the tally at each scrape. */
  readonly readingsIngested = new Counter({
    name: 'tidegate_readings_ingested_total',
    help: 'Readings accepted from a source',
    labelNames: ['source'] as const,
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly readingsRejected = new Counter({
    name: 'tidegate_readings_rejected_total',
    help: 'Readings or payloads refused, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly readingsDuplicate = new Counter({
    name: 'tidegate_readings_duplicate_total',
    help: 'Readings received again with the same device, metric, ts and value, and ignored',
    registers: [this.registry],
  });

  readonly readingsStored = new Counter({
    name: 'tidegate_readings_stored_total',
    help: 'Raw readings committed to the store',
    registers: [this.registry],
  });

  readonly storeCommits = new Counter({
    name: 'tidegate_store_commits_total',
    help: 'Group commits of the store writer',
    registers: [this.registry],
  });

  readonly storeCheckpoints = new Histogram({
    name: 'tidegate_store_checkpoint_seconds',
    help: "WAL checkpoints the store writer ran between its commits, by result (busy: readers held part of the WAL back), and each one's time in the writer's thread",
    labelNames: ['result'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly internalErrors = new Counter({
    name: 'tidegate_internal_errors_total',
    help: 'Unexpected errors caught where they would have escaped (a listener, a loop), by where',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });

  readonly storeErrors = new Counter({
    name: 'tidegate_store_errors_total',
    help: 'Store writes that failed and were retried',
    registers: [this.registry],
  });

  readonly storePending = new Gauge({
    name: 'tidegate_store_pending_readings',
    help: 'Readings and rule outputs not yet committed (queued, or in the commit under way)',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly ruleGroups = new Gauge({
    name: 'tidegate_rule_groups',
    help: 'Rule groups (each with its windows and decision state): in memory, or forgotten while idle',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly idleClockBehind = new Gauge({
    name: 'tidegate_idle_clock_behind_seconds',
    help: 'Wall time since start that did not count toward idleness: the gateway was behind its input',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly devicesKnown = new Gauge({
    name: 'tidegate_devices_known',
    help: 'Devices known to the gateway (ingest.maxDevices bounds them)',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly storeBytes = new Gauge({
    name: 'tidegate_store_bytes',
    help: 'Size of the SQLite database file and its WAL',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly retentionDeleted = new Counter({
    name: 'tidegate_retention_deleted_total',
    help: 'Raw readings deleted for being older than store.retention',
    registers: [this.registry],
  });

  readonly windowsClosed = new Counter({
    name: 'tidegate_windows_closed_total',
    help: 'Windows whose first result (revision 0) was emitted',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });

  readonly resultRevisions = new Counter({
    name: 'tidegate_result_revisions_total',
    help: 'Results re-emitted (revision > 0) for late readings within allowed lateness',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });

  readonly decisions = new Counter({
    name: 'tidegate_decisions_total',
    help: 'Decision transitions, by the state entered',
    labelNames: ['rule', 'state'] as const,
    registers: [this.registry],
  });

  readonly lateDropped = new Counter({
    name: 'tidegate_late_dropped_total',
    help: 'Readings that fitted no live window of a rule (the late side output)',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });

  readonly upstreamSent = new Counter({
    name: 'tidegate_upstream_sent_total',
    help: 'Outbox rows acknowledged by an upstream',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly upstreamDuplicates = new Counter({
    name: 'tidegate_upstream_duplicates_total',
    help: 'Outbox rows an upstream already had (a nats stream: a PubAck that said duplicate, or a row its last message showed stored), counted as delivered',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: 'tidegate_upstream_errors_total',
    help: 'Failed deliveries to an upstream (each is retried)',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly outboxBacklog = new Gauge({
    name: 'tidegate_outbox_backlog',
    help: 'Outbox rows an upstream has not acknowledged yet',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly outboxOldestAge = new Gauge({
    name: 'tidegate_outbox_oldest_age_seconds',
    help: 'Age of the oldest outbox row an upstream has not acknowledged',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly outboxDropped = new Counter({
    name: 'tidegate_outbox_dropped_total',
    help: 'Outbox rows dropped unforwarded because the store was over its cap',
    registers: [this.registry],
  });

  readonly capDeleted = new Counter({
    name: 'tidegate_store_cap_deleted_total',
    help: 'Rows deleted to keep the database under store.maxSize / outbox.maxRows, by table',
    labelNames: ['table'] as const,
    registers: [this.registry],
  });

  readonly brokerDenied = new Counter({
    name: 'tidegate_broker_denied_total',
    help: 'Embedded broker refusals: auth (failed login), throttled (login refused after repeated failures from the address), anonymous, client_id (zero-length ClientId without CleanSession), acl_publish, acl_subscribe',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly brokerClients = new Gauge({
    name: 'tidegate_broker_clients',
    help: 'Clients connected to the embedded broker',
    registers: [this.registry],
  });

  readonly sourceUp = new Gauge({
    name: 'tidegate_source_up',
    help: '1 while a source (or a device of it) is connected, 0 while offline or in error',
    labelNames: ['source', 'device'] as const,
    registers: [this.registry],
  });

  readonly modbusRequests = new Counter({
    name: 'tidegate_modbus_requests_total',
    help: 'Modbus requests sent, by outcome (ok, timeout, exception, crc, error)',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly sourceErrors = new Counter({
    name: 'tidegate_source_errors_total',
    help: 'Errors reported by a source (connection, protocol), by kind',
    labelNames: ['source', 'kind'] as const,
    registers: [this.registry],
  });

  readonly streamClients = new Gauge({
    name: 'tidegate_stream_clients',
    help: 'Clients connected to the /api/v1/stream Server-Sent Events',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly streamPendingBytes = new Gauge({
    name: 'tidegate_stream_pending_bytes',
    help: 'Bytes written to stream clients and not yet taken by their sockets',
    registers: [this.registry],
    collect: this.refresh,
  });

  readonly streamDropped = new Counter({
    name: 'tidegate_stream_dropped_total',
    help: 'Stream clients disconnected for not reading fast enough (over the pending-bytes cap)',
    registers: [this.registry],
  });

  readonly exportsActive = new Gauge({
    name: 'tidegate_exports_active',
    help: 'Readings exports being streamed now (/readings/export)',
    registers: [this.registry],
  });

  readonly exportedReadings = new Counter({
    name: 'tidegate_export_readings_total',
    help: 'Readings written to export responses',
    labelNames: ['format'] as const,
    registers: [this.registry],
  });

  readonly backtests = new Counter({
    name: 'tidegate_backtests_total',
    help: 'Backtest jobs ended, by how (done, failed, cancelled)',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  readonly backtestReadings = new Counter({
    name: 'tidegate_backtest_readings_total',
    help: 'Stored readings run through backtest jobs',
    registers: [this.registry],
  });

  readonly apiRequests = new Counter({
    name: 'tidegate_api_requests_total',
    help: 'API requests answered, by route pattern and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tidegate_' });
  }

  /** Registers a refresh of gauges that describe state rather than count events; run at each scrape. */
  onCollect(hook: () => void): void {
    this.collectHooks.push(hook);
  }

  /**
   * prom-client calls each metric's `collect` synchronously at the start of a scrape; several gauges
   * share these hooks, so they run once per scrape (the flag clears after the current tick).
   */
  private runCollectHooks(): void {
    if (this.collecting) return;
    this.collecting = true;
    queueMicrotask(() => {
      this.collecting = false;
    });
    for (const hook of this.collectHooks) {
      try {
        hook();
      } catch {
        // A part that cannot report now (e.g. stopping) keeps its last value; the scrape goes on.
      }
    }
  }
}

/**
 * Counts into a counter of one label in plain numbers, added to the counter when the registry is
 * scraped (an `onCollect` hook; the counter needs `collect: refresh`). For counts made for every
 * message: prom-client hashes the labels on each `inc`, which costs more than the message's own work.
 */
export class CounterTally<L extends string> {
  private readonly counts = new Map<string, number>();

  constructor(
    metrics: Metrics,
    private readonly counter: Counter<L>,
    private readonly label: L,
  ) {
    metrics.onCollect(() => this.flush());
  }

  add(labelValue: string, n: number): void {
    this.counts.set(labelValue, (this.counts.get(labelValue) ?? 0) + n);
  }

  /** Adds what was counted since the last flush to the counter. */
  flush(): void {
    for (const [value, n] of this.counts) {
      if (n === 0) continue;
      this.counter.inc({ [this.label]: value } as Partial<Record<L, string>>, n);
      this.counts.set(value, 0);
    }
  }
}
