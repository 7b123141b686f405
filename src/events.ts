import { EventEmitter } from 'node:events';
import type { DecisionRecord, LateRecord, ResultRecord } from './engine/records.js';
import type { Reading, RejectReason } from './model/reading.js';

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
}

/** A typed event bus: listeners and emitters agree on the payload of each event. */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  on<E extends keyof GatewayEvents>(event: E, listener: (...args: GatewayEvents[E]) => void): () => void {
    this.emitter.on(event, listener as (...args: unknown[]) => void);
    return () => this.emitter.off(event, listener as (...args: unknown[]) => void);
  }

  emit<E extends keyof GatewayEvents>(event: E, ...args: GatewayEvents[E]): void {
    this.emitter.emit(event, ...args);
  }
}
