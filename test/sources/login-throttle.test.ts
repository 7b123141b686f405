import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoginThrottle } from '../../src/sources/login-throttle.js';

const limits = { failures: 3, windowMs: 60_000, backoffMs: 30_000, maxAddresses: 1_000 };

describe('LoginThrottle', () => {
  it('throttles an address for the backoff after `failures` failures within the window', () => {
    let now = 5_000_000;
    const throttle = new LoginThrottle(limits, () => now);
    assert.equal(throttle.failed('10.0.0.1'), false);
    assert.equal(throttle.failed('10.0.0.1'), false);
    assert.equal(throttle.throttled('10.0.0.1'), false);
    assert.equal(throttle.failed('10.0.0.1'), true, 'the third failure starts the backoff');
    assert.equal(throttle.throttled('10.0.0.1'), true);
    assert.equal(throttle.throttled('10.0.0.2'), false);
    now += 29_999;
    assert.equal(throttle.throttled('10.0.0.1'), true);
    now += 1;
    assert.equal(throttle.throttled('10.0.0.1'), false);
    // The count started afresh with the backoff.
    assert.equal(throttle.failed('10.0.0.1'), false);
  });

  it('stays bounded under a flood of addresses, and the flood does not lift a running backoff', () => {
    const throttle = new LoginThrottle(limits, () => 5_000_000);
    for (let i = 0; i < 3; i++) throttle.failed('192.0.2.1');
    let largest = 0;
    for (let i = 0; i < 100_000; i++) {
      throttle.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      largest = Math.max(largest, throttle.size);
    }
    assert.equal(largest, limits.maxAddresses);
    assert.equal(throttle.throttled('192.0.2.1'), true, 'throttled addresses are the last to be forgotten');
  });

  it('when every address remembered is throttled, forgets the one that failed longest ago', () => {
    const now = 5_000_000;
    const throttle = new LoginThrottle({ ...limits, failures: 1, maxAddresses: 2 }, () => now);
    throttle.failed('10.0.0.1');
    throttle.failed('10.0.0.2');
    throttle.failed('10.0.0.3');
    assert.equal(throttle.size, 2);
    assert.deepEqual(
      ['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((a) => throttle.throttled(a)),
      [false, true, true],
    );
  });

  it('forgets an address whose window passed without a backoff', () => {
    let now = 5_000_000;
    const throttle = new LoginThrottle(limits, () => now);
    throttle.failed('10.0.0.1');
    now += 60_000;
    assert.equal(throttle.throttled('10.0.0.1'), false);
    assert.equal(throttle.size, 0);
  });

  it('counts an IPv4-mapped IPv6 address as its IPv4 address, and IPv6 addresses by their /56', () => {
    const throttle = new LoginThrottle(limits, () => 0);
    throttle.failed('192.0.2.7');
    throttle.failed('::ffff:192.0.2.7');
    throttle.failed('192.0.2.7');
    assert.equal(throttle.throttled('::ffff:192.0.2.7'), true);
    // One host can pick any address of its /64, usually of a /56: rotating them must not help.
    throttle.failed('2001:db8:0:1::1');
    throttle.failed('2001:db8:0:2::abcd');
    throttle.failed('2001:db8:0:ff:1:2:3:4');
    assert.equal(throttle.throttled('2001:db8:0:42::9'), true);
    assert.equal(throttle.throttled('2001:db8:0:100::1'), false, 'the next /56');
  });
});
