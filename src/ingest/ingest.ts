/**
 * ingest/ — the one door every reading passes (SPEC §1): validation, the device limit, duplicates
 * (in memory, or backed by the store), counting and logging rejections, then the hand-off: queued
 * for the store's group commit and announced on the bus to the rules. May import model/, store/
 * (the writer), engine/compile.ts (types, for the duplicates' horizon) and runtime/.
 */

import {
  type Decoded,
  type Reading,
  type ReadingCandidate,
  type ReadingLimits,
  ReadingRejection,
  validateReading,
} from '../model/reading.js';
import type { Clock } from '../runtime/clock.js';
import type { EventBus } from '../runtime/events.js';
import type { RateLimitedLog } from '../runtime/log.js';
import { CounterTally, type Metrics } from '../runtime/metrics.js';
import type { ReadingWriter } from '../store/reading-writer.js';
import type { DuplicateFilter } from './duplicates.js';

/** Distinct metric names interned (a cache: beyond it, a new name's readings keep their own string). */
const MAX_METRIC_NAMES = 4096;

/**
 * `name` in a string of its own. A name cut from a longer text (a topic: V8 makes a slice of 13
 * characters or more a view of its parent) would keep that whole text alive for as long as the
 * name is kept: a device's for as long as the gateway knows it, and behind a template ending in `#`
 * a topic can be 64 KiB. Names are [A-Za-z0-9_.:-] (validated), so latin1 is exact.
 */
function ownString(name: string): string {
  return Buffer.from(name, 'latin1').toString('latin1');
}

export interface IngestOptions {
  maxFutureSkew: number;
  /** Devices known at most (SPEC §6 `ingest.maxDevices`); absent: no limit. */
  maxDevices?: number;
}

export interface IngestOutcome {
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Resolves once the accepted readings are committed (for QoS 1 acknowledgements). */
  durable(): Promise<void>;
}

/** What `submit` returns: an object with a method, not a closure made for every message. */
class SubmitOutcome implements IngestOutcome {
  constructor(
    readonly accepted: number,
    readonly duplicates: number,
    readonly rejected: number,
    private readonly writer: ReadingWriter,
  ) {}

  durable(): Promise<void> {
    // A redelivered duplicate may arrive before the original's commit: it too waits for the commit.
    return this.accepted + this.duplicates > 0 ? this.writer.afterCommit() : Promise.resolve();
  }
}

type Verdict = 'accepted' | 'duplicate' | 'rejected';

/**
 * Where every source delivers: one place that validates readings (SPEC §1), counts and logs
 * rejections, queues good readings for the store and announces them on the bus. A bad reading
 * never stops the good ones of the same message.
 */
export class Ingest {
  constructor(
    private readonly options: IngestOptions,
    private readonly deps: {
      clock: Clock;
      metrics: Metrics;
      warn: RateLimitedLog;
      bus: EventBus;
      writer: ReadingWriter;
      /** Drops readings seen before (SPEC §1); absent, the store's unique index still stores them once. */
      duplicates?: DuplicateFilter;
      /** The devices the store knows at start: they count toward `maxDevices` and keep working. */
      knownDevices?: Iterable<string>;
    },
  ) {
    this.known = new Map();
    for (const d of deps.knownDevices ?? []) this.known.set(d, d);
    this.ingested = new CounterTally(deps.metrics, deps.metrics.readingsIngested, 'source');
  }

  /**
   * Every device accepted so far (and those the store knew), bounded by `maxDevices`: each name →
   * the one string of it that readings carry on (see internMetric).
   */
  private readonly known: Map<string, string>;
  /** Metric names → the one string of each that readings carry on; at most MAX_METRIC_NAMES. */
  private readonly metricNames = new Map<string, string>();
  /** `readingsIngested{source}`, added to the counter at each scrape rather than per message. */
  private readonly ingested: CounterTally<'source'>;

  get knownDevices(): number {
    return this.known.size;
  }

  /** Metric names readings share (at most MAX_METRIC_NAMES). */
  get internedMetrics(): number {
    return this.metricNames.size;
  }

  /** Readings decoded from one message of `source`. */
  submit(source: string, decoded: Decoded, context?: string): IngestOutcome {
    for (const r of decoded.rejections) this.reject(source, r, context);
    let accepted = 0;
    let duplicates = 0;
    let rejected = decoded.rejections.length;
    // One receive time and one set of limits for the whole message.
    const limits = { now: this.deps.clock.now(), maxFutureSkew: this.options.maxFutureSkew };
    for (const c of decoded.candidates) {
      const verdict = this.admit(source, c, limits, context);
      if (verdict === 'accepted') accepted++;
      else if (verdict === 'duplicate') duplicates++;
      else rejected++;
    }
    this.count(source, accepted, duplicates);
    return new SubmitOutcome(accepted, duplicates, rejected, this.deps.writer);
  }

  /** One candidate: accepted as a new reading, ignored as a duplicate (SPEC §1), or rejected. */
  accept(
    source: string,
    candidate: ReadingCandidate,
    now = this.deps.clock.now(),
    context?: string,
  ): Verdict {
    const limits = { now, maxFutureSkew: this.options.maxFutureSkew };
    const verdict = this.admit(source, candidate, limits, context);
    this.count(source, verdict === 'accepted' ? 1 : 0, verdict === 'duplicate' ? 1 : 0);
    return verdict;
  }

  /** Counts what a message (or one reading) brought: once, not per reading, and no label lookup. */
  private count(source: string, accepted: number, duplicates: number): void {
    if (accepted > 0) this.ingested.add(source, accepted);
    if (duplicates > 0) this.deps.metrics.readingsDuplicate.inc(duplicates);
  }

  /** `accept` without the counting, which its callers do. */
  private admit(
    source: string,
    candidate: ReadingCandidate,
    limits: ReadingLimits,
    context?: string,
  ): Verdict {
    const reading = validateReading(candidate, limits);
    if (reading instanceof ReadingRejection) {
      this.reject(source, reading, context);
      return 'rejected';
    }
    const device = this.known.get(reading.device);
    const newDevice = device === undefined;
    if (newDevice) {
      if (this.known.size >= (this.options.maxDevices ?? Number.POSITIVE_INFINITY)) {
        this.reject(
          source,
          new ReadingRejection(
            'device_limit',
            `device ${reading.device} is new and ${this.known.size} devices are known (ingest.maxDevices)`,
          ),
          context,
        );
        return 'rejected';
      }
      reading.device = ownString(reading.device);
    } else reading.device = device;
    this.internMetric(reading);
    // Checked before the duplicate filter remembers the reading, so a refused one can come again.
    if (!this.deps.writer.hasRoom()) {
      this.reject(
        source,
        new ReadingRejection('store_overflow', 'the store is not keeping up; reading refused'),
        context,
      );
      return 'rejected';
    }
    if (this.deps.duplicates?.isDuplicate(reading)) return 'duplicate';
    // Arrived when its message did (the limits' receive time): one clock read per message.
    this.deps.writer.add(reading, source, limits.now);
    if (newDevice) this.known.set(reading.device, reading.device);
    // The rules run first: the records this reading causes share its commit (the crash rebuild
    // treats every record before the last committed reading as stored).
    this.deps.bus.emit('reading', reading, source);
    this.deps.writer.commitIfFull();
    return 'accepted';
  }

  /**
   * A message's names are new strings (cut from its topic or payload), and an accepted reading's
   * live on until the batch that holds them is committed, 200 ms or more: long enough to survive
   * V8's young collections, be copied by each and be promoted. Readings carry the first string seen
   * of their device (`known`) and of their metric instead, which are old, and the message's copies
   * die young. (At 50 k readings/s, one per message, the young collections' time fell by a third.)
   */
  private internMetric(reading: Reading): void {
    const names = this.metricNames;
    const metric = names.get(reading.metric);
    if (metric !== undefined) reading.metric = metric;
    else if (names.size < MAX_METRIC_NAMES) {
      const own = ownString(reading.metric);
      names.set(own, own);
      reading.metric = own;
    }
  }

  /** Counts and logs (rate-limited) a refusal. */
  reject(source: string, rejection: ReadingRejection, context?: string): void {
    this.deps.metrics.readingsRejected.inc({ reason: rejection.reason });
    this.deps.bus.emit('rejected', rejection.reason, source, rejection.message);
    this.deps.warn.warn(
      `reject:${source}:${rejection.reason}`,
      { source, reason: rejection.reason, ...(context ? { context } : {}) },
      `rejected: ${rejection.message}`,
    );
  }
}
