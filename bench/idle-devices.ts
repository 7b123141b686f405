/**
 * Heap per device in the engine with 3 rules (tumbling with a decision, sliding, session; groupBy
 * device): while its windows are open, and once it is idle and its groups are forgotten.
 * Run with `node --expose-gc build/bench/idle-devices.js [devices]`.
 */

import { compileRules } from '../src/engine/compile.js';
import { RuleEngine } from '../src/engine/engine.js';
import { validateRules } from '../src/model/rule.js';
import { ManualClock } from '../src/runtime/clock.js';
import { machine } from './machine.js';

const N = Number(process.argv[2] ?? 50_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
  (gc as () => void)();
  (gc as () => void)();
  return process.memoryUsage().heapUsed;
}

const checked = validateRules([
  {
    id: 'hot',
    match: { metric: 'temp' },
    window: { type: 'tumbling', size: '10s' },
    aggregates: { avg: 'avg', hi: 'max' },
    when: 'hi > 90',
  },
  {
    id: 'trend',
    match: { metric: 'temp' },
    window: { type: 'sliding', size: '30s', slide: '10s' },
    aggregates: { p95: 'p95' },
  },
  {
    id: 'runs',
    match: { metric: 'temp' },
    window: { type: 'session', gap: '5s' },
    aggregates: { n: 'count' },
  },
]);
if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
const clock = new ManualClock(Date.UTC(2026, 0, 1));
const engine = new RuleEngine(compileRules(checked.rules), { clock, live: true });
const names = Array.from({ length: N }, (_, i) => `device-${i}`);
const before = heap();
for (const device of names) engine.process({ device, metric: 'temp', value: 20, ts: clock.now() });
const open = heap();
// Idle (default idleTimeout: 2 × the window), every window closed and expired, states persisted.
for (let s = 0; s < 120; s++) {
  clock.advance(1_000);
  engine.tick();
  engine.takeChangedDecisionStates();
}
const idle = heap();
const stats = engine.stats();
console.log(machine());
console.log(`devices: ${N}, rules: 3 — in memory: ${stats.groups} groups, forgotten: ${stats.rested}`);
console.log(`heap per device with open windows: ${((open - before) / N).toFixed(0)} B`);
console.log(`heap per idle device (groups forgotten): ${((idle - before) / N).toFixed(0)} B`);
