import type { OutboxItem } from '../../src/upstreams/upstream.js';

/**
 * `n` outbox items with seq from `firstSeq`: results and decisions of rule `boiler-overheat`
 * and, every fifth, a raw reading (no rule).
 */
export function outboxItems(n: number, firstSeq = 1, gateway = 'gw-1'): OutboxItem[] {
  return Array.from({ length: n }, (_, i) => {
    const seq = firstSeq + i;
    if (i % 5 === 4) {
      return {
        rule: null,
        envelope: {
          gateway,
          seq,
          type: 'reading',
          body: { device: 'boiler-1', metric: 'temperature', value: seq, ts: '2026-11-24T10:00:00.000Z' },
        },
      };
    }
    const type = i % 2 === 0 ? 'result' : 'decision';
    return {
      rule: 'boiler-overheat',
      envelope: {
        gateway,
        seq,
        type,
        body: { type, rule: 'boiler-overheat', key: { device: 'boiler-1' }, n: seq },
      },
    };
  });
}
