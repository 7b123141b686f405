import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

/**
 * The QoS 1 load of bench/backtest.ts, in a process of its own: one connection publishes
 * `per-message` readings per message at `rate` readings/s for `seconds`, and measures each
 * message's publish → PUBACK time (tidegate acknowledges after the commit). Prints one JSON line:
 * `{"sent", "acked", "latenciesMs": [...]}` (every message's latency, in publish order).
 */
const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '10000' },
    'per-message': { type: 'string', default: '10' },
    devices: { type: 'string', default: '100' },
    device: { type: 'string', default: 'live' },
  },
});
const perMessage = Number(args['per-message']);
const messagesPerSecond = Number(args.rate) / perMessage;
const devices = Number(args.devices);
const client = await mqtt.connectAsync(String(args.url), { reconnectPeriod: 0, clean: true });
const latencies: number[] = [];
let sent = 0;
let acked = 0;
const t0 = performance.now();
const end = t0 + Number(args.seconds) * 1000;
let next = t0;
while (performance.now() < end) {
  // Paced by the schedule, not by acknowledgements: a slow gateway shows as latency, not as less load.
  const due = Math.floor(((performance.now() - t0) / 1000) * messagesPerSecond);
  while (sent < due) {
    const device = `${args.device}-${sent % devices}`;
    const ts = Date.now();
    const body = JSON.stringify(
      Array.from({ length: perMessage }, (_, i) => ({ value: (sent + i) % 100, ts: ts - perMessage + i })),
    );
    const at = performance.now();
    const index = sent++;
    client.publish(`load/${device}/temp`, body, { qos: 1 }, (err) => {
      if (err) return;
      acked++;
      latencies[index] = performance.now() - at;
    });
  }
  next += 5;
  await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
}
const drainUntil = performance.now() + 30_000;
while (acked < sent && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
await client.endAsync();
process.stdout.write(
  `${JSON.stringify({ sent, acked, latenciesMs: latencies.filter((l) => l !== undefined) })}\n`,
);
