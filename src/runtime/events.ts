/**
 * runtime/ — what every stage shares at run time: the clock (and the kept-up clock idleness is
 * measured on), the typed event bus, logging, metrics, internal-error reporting, the timeout race
 * (deadline.ts), host names, the version. Imports only model/ (the events' payloads).
 */
import { EventEmitter } from 'node:events';
import type { BacktestProgress, BacktestState, BacktestSummary } from '../model/backtest.js';
import type { Reading, RejectReason } from '../model/reading.js';
import type { DecisionRecord, LateRecord, ResultRecord } from '../model/records.js';

/** Every event of the gateway, in one typed map. */
export interface GatewayEvents {
  /** A reading passed validation and de-duplication and goes to the store and the rules. */
  reading: [reading: Reading, source: string];
  /** Something was refused. */
  rejected: [reason: RejectReason, source: string, message: string];
  /** A rule emitted a window's result (revision 0 on close, more for late readings within lateness). */
  result: [record: ResultRecord];
  /** A rule's decision changed state for a group. */
  decision: [record: DecisionRecord];
  /** A reading fitted no live window of a rule (the late side output). */
  late: [record: LateRecord];
  /** A backtest job started, progressed (a few times a second) or ended. */
  backtest: [event: BacktestEvent];
  /** A rule was created, replaced or deleted through the API (the rules service announces it). */
  rule: [event: RuleEvent];
}

/** What `/stream` says of a rule change (`event: rule`): fetch `/rules/{id}` for the rule itself. */
export interface RuleEvent {
  id: string;
  change: 'created' | 'replaced' | 'deleted';
  origin: 'config' | 'api';
}

/** What `/stream` says of a backtest job (`event: backtest`). */
export interface BacktestEvent {
  id: string;
  state: BacktestState;
  progress: BacktestProgress;
  summary: BacktestSummary;
}

/** Told of a listener that threw: `where` is `owner/event`. */
export type ListenerErrorHandler = (where: string, err: unknown) => void;

/**
 * A typed event bus: listeners and emitters agree on the payload of each event. Each listener runs
 * inside its own try/catch (synchronously: no promise per reading), so a throw reaches neither the
 * emitter (an MQTT handler, a Modbus poll) nor the listeners after it; it goes to `onListenerError`.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor(private readonly onListenerError: ListenerErrorHandler = reportToStderr) {
    this.emitter.setMaxListeners(100);
  }

  /** `owner` names the listener in the error report (`owner/event`). */
  on<E extends keyof GatewayEvents>(
    event: E,
    listener: (...args: GatewayEvents[E]) => void,
    owner = 'listener',
  ): () => void {
    const where = `${owner}/${event}`;
    const guarded = (...args: unknown[]) => {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (err) {
        this.onListenerError(where, err);
      }
    };
    this.emitter.on(event, guarded);
    return () => this.emitter.off(event, guarded);
  }

  emit<E extends keyof GatewayEvents>(event: E, ...args: GatewayEvents[E]): void {
    this.emitter.emit(event, ...args);
  }
}

function reportToStderr(where: string, err: unknown): void {
  process.stderr.write(`tidegate: listener ${where} threw: ${(err as Error)?.stack ?? String(err)}\n`);
}
