import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Reading } from '../../src/model/reading.js';
import { EventBus } from '../../src/runtime/events.js';

const r: Reading = { device: 'd', metric: 'm', value: 1, ts: 0 };

describe('EventBus', () => {
  it('a listener that throws reaches neither the emitter nor the listeners after it', () => {
    const errors: [string, unknown][] = [];
    const bus = new EventBus((where, err) => errors.push([where, err]));
    const seen: string[] = [];
    bus.on('reading', () => seen.push('first'));
    bus.on(
      'reading',
      () => {
        throw new Error('boom');
      },
      'rules',
    );
    bus.on('reading', () => seen.push('third'));
    assert.doesNotThrow(() => bus.emit('reading', r, 'src'));
    assert.deepEqual(seen, ['first', 'third']);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.[0], 'rules/reading');
    assert.match(String(errors[0]?.[1]), /boom/);
  });

  it('unsubscribes the guarded listener', () => {
    const bus = new EventBus();
    let n = 0;
    const off = bus.on('reading', () => n++);
    bus.emit('reading', r, 'src');
    off();
    bus.emit('reading', r, 'src');
    assert.equal(n, 1);
  });
});
