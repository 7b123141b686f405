import type { ApiView } from '../../src/api/server.js';

/**
 * What the API reads of a running gateway, as a test double of plain values: a gateway with no
 * sources, broker or upstreams. Tests override what they look at.
 */
export function testView(overrides: Partial<ApiView> = {}): ApiView {
  return {
    gatewayId: 'gw-test',
    version: '9.9.9',
    startedAt: 0,
    staleAfter: 60_000,
    now: () => 0,
    sources: () => [],
    broker: () => null,
    store: () => ({ path: ':memory:', bytes: 0, pendingWrites: 0, lastError: null }),
    upstreams: () => [],
    outbox: () => ({ rows: 0, lastSeq: null }),
    ...overrides,
  };
}
