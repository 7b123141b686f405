import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { afterEach, describe, it } from 'node:test';
import { Forwarder, type ForwarderOptions } from '../../src/forward/forwarder.js';
import { silentLogger } from '../../src/runtime/log.js';
import { openDatabase } from '../../src/store/database.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { Outbox } from '../../src/store/outbox.js';
import type { OutboxItem, Upstream } from '../../src/upstreams/upstream.js';
import { makeTempDir } from '../helpers/tmp.js';
import { metricValue, reading, type StoreRig, storeRig, T0 } from './rig.js';

/** An upstream of our own interface, scripted: fails while `down`, records what it accepted. */
class ScriptedUpstream implements Upstream {
  readonly type = 'http' as const;
  readonly maxInFlight = 1;
  down = false;
  attempts = 0;
  received: number[] = [];
  constructor(readonly id: string) {}
  async start(): Promise<void> {}
  async deliver(batch: readonly OutboxItem[]): Promise<void> {
    this.attempts++;
    if (this.down) throw new Error('upstream down');
    this.received.push(...batch.map((b) => b.envelope.seq));
  }
  state() {
    return this.down ? ('offline' as const) : ('connected' as const);
  }
  lastError() {
    return this.down ? 'upstream down' : null;
  }
  async close(): Promise<void> {}
}

/** An upstream that pipelines: each batch waits until the test settles it, in any order. */
class HeldUpstream implements Upstream {
  readonly type = 'mqtt' as const;
  readonly maxInFlight = 3;
  readonly batches: { seqs: number[]; settle: (err?: Error) => void }[] = [];
  constructor(readonly id: string) {}
  async start(): Promise<void> {}
  deliver(batch: readonly OutboxItem[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batches.push({
        seqs: batch.map((b) => b.envelope.seq),
        settle: (err) => (err ? reject(err) : resolve()),
      });
    });
  }
  /** The seqs of the batches sent so far, one string per batch. */
  sent(): string[] {
    return this.batches.map((b) => b.seqs.join(','));
  }
  state() {
    return 'connected' as const;
  }
  lastError() {
    return null;
  }
  async close(): Promise<void> {}
}

/** Lets the forwarder's promise chain run (it awaits deliver(), then loops). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('Outbox', () => {
  let s: StoreRig;
  afterEach(() => s.close());

  it('gives strictly increasing seqs that are never reused, even after the newest rows are deleted', () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    const seqs = [1, 2, 3].map((i) => outbox.append('result', 'r', `{"i":${i}}`, T0));
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.equal(outbox.dropOldest(10, 0).dropped, 3);
    assert.equal(outbox.append('result', 'r', '{}', T0), 4);
  });

  it('keeps per-upstream cursors that never go back, and reports the backlog and its age', () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 5; i++) outbox.append('decision', 'r', '{}', T0 + i * 1000);
    assert.equal(outbox.cursor('a'), 0);
    outbox.saveCursor('a', 3);
    outbox.saveCursor('a', 2);
    assert.equal(outbox.cursor('a'), 3);
    assert.deepEqual(outbox.backlog(3, T0 + 10_000), { rows: 2, oldestAgeMs: 7000 });
    assert.deepEqual(outbox.backlog(5, T0 + 10_000), { rows: 0, oldestAgeMs: null });
    assert.deepEqual(
      outbox.after(1, 2).map((r) => r.seq),
      [2, 3],
    );
  });

  it('dropOldest says how many of the dropped rows were never forwarded', () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 10; i++) outbox.append('result', 'r', '{}', T0);
    assert.deepEqual(outbox.dropOldest(6, 4), { dropped: 6, unforwarded: 2 });
  });
});

describe('Forwarder', () => {
  let s: StoreRig;
  let forwarder: Forwarder | undefined;
  /** A started forwarder on the rig's clock; random() = 1 makes every backoff its ceiling. */
  function started(up: Upstream, outbox: Outbox, options: Omit<ForwarderOptions, 'gatewayId'>): Forwarder {
    const f = new Forwarder(
      up,
      outbox,
      { gatewayId: 'gw', ...options },
      { clock: s.clock, metrics: s.metrics, log: silentLogger(), random: () => 1 },
    );
    f.start();
    return f;
  }
  afterEach(async () => {
    await forwarder?.stop();
    s.close();
  });

  it('delivers in order, in batches, and saves its cursor only after the upstream accepted', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 25; i++) outbox.append('result', 'r', JSON.stringify({ i }), T0);
    const up = new ScriptedUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 10 });
    await settle();
    assert.deepEqual(
      up.received,
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    assert.equal(up.attempts, 3);
    assert.equal(outbox.cursor('cloud'), 25);
    assert.equal(await metricValue(s.metrics, 'tidegate_upstream_sent_total'), 25);
  });

  it('backs off with jitter while the upstream is down and redelivers the same batch after', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 3; i++) outbox.append('result', 'r', '{}', T0);
    const up = new ScriptedUpstream('cloud');
    up.down = true;
    forwarder = started(up, outbox, { batchSize: 10, minBackoff: 1000, maxBackoff: 8000 });
    await settle();
    assert.equal(up.attempts, 1);
    assert.equal(forwarder.status().state, 'backoff');
    // Delays double (random() = 1: the ceiling) up to maxBackoff: 1 s, 2 s, 4 s, 8 s, 8 s.
    for (const delay of [1000, 2000, 4000, 8000, 8000]) {
      s.clock.advance(delay - 1);
      await settle();
      const attempts: number = up.attempts;
      s.clock.advance(1);
      await settle();
      assert.equal(up.attempts, attempts + 1, `a retry after ${delay} ms`);
    }
    assert.equal(outbox.cursor('cloud'), 0);
    up.down = false;
    s.clock.advance(8000);
    await settle();
    assert.deepEqual(up.received, [1, 2, 3]);
    assert.equal(outbox.cursor('cloud'), 3);
    assert.equal(forwarder.status().state, 'connected');
    assert.equal(await metricValue(s.metrics, 'tidegate_upstream_errors_total'), 6);
  });

  it('pipelines up to maxInFlight batches and confirms them in order only', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 8; i++) outbox.append('result', 'r', '{}', T0);
    const up = new HeldUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 2 });
    await settle();
    assert.deepEqual(up.sent(), ['1,2', '3,4', '5,6'], 'three batches in flight, the fourth waits for room');
    up.batches[1]?.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 0, 'the second batch is confirmed, the first is not yet');
    assert.deepEqual(up.sent(), ['1,2', '3,4', '5,6', '7,8'], 'its room is used at once');
    up.batches[0]?.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 4, 'the first two, in order');
    // A record committed while batches are in flight goes out at once, not after them.
    outbox.append('decision', 'r', '{}', T0);
    forwarder.kick();
    await settle();
    assert.deepEqual(up.sent().slice(4), ['9']);
    for (const b of up.batches.slice(2)) b.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 9);
    assert.equal(await metricValue(s.metrics, 'tidegate_upstream_sent_total'), 9);
    assert.equal(forwarder.status().backlog, 0);
  });

  it('when a batch fails, resends it and every batch after it, even those confirmed', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 6; i++) outbox.append('result', 'r', '{}', T0);
    const up = new HeldUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 2, minBackoff: 1000, maxBackoff: 1000 });
    await settle();
    assert.deepEqual(up.sent(), ['1,2', '3,4', '5,6']);
    up.batches[0]?.settle();
    up.batches[2]?.settle();
    up.batches[1]?.settle(new Error('connection lost'));
    await settle();
    assert.equal(outbox.cursor('cloud'), 2, 'confirmed up to the failed batch');
    assert.equal(forwarder.status().state, 'backoff');
    assert.equal(forwarder.status().lastError, 'connection lost');
    s.clock.advance(999);
    await settle();
    assert.equal(up.batches.length, 3, 'nothing is sent during the backoff');
    s.clock.advance(1);
    await settle();
    assert.deepEqual(up.sent().slice(3), ['3,4'], 'from the cursor on, the first batch alone');
    up.batches[3]?.settle();
    await settle();
    assert.deepEqual(up.sent().slice(3), ['3,4', '5,6'], 'then the window opens again, in order');
    up.batches[4]?.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 6);
    assert.equal(forwarder.status().state, 'connected');
    assert.equal(await metricValue(s.metrics, 'tidegate_upstream_errors_total'), 1);
  });

  it('a batch that fails behind one still pending stops the sending until both settled', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 10; i++) outbox.append('result', 'r', '{}', T0);
    const up = new HeldUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 2, minBackoff: 1000, maxBackoff: 1000 });
    await settle();
    assert.deepEqual(up.sent(), ['1,2', '3,4', '5,6']);
    // The second fails while the first is still pending: a batch sent now (7,8) would reach the
    // peer before the resend of 3,4.
    up.batches[1]?.settle(new Error('no responders'));
    await settle();
    forwarder.kick();
    await settle();
    assert.deepEqual(up.sent(), ['1,2', '3,4', '5,6'], 'nothing sent after the failure');
    up.batches[0]?.settle();
    up.batches[2]?.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 2);
    assert.equal(up.batches.length, 3, 'nothing during the backoff either');
    s.clock.advance(1000);
    await settle();
    assert.deepEqual(up.sent().slice(3), ['3,4'], 'the resend starts at the failed batch, alone');
    up.batches[3]?.settle();
    await settle();
    assert.deepEqual(up.sent().slice(4), ['5,6', '7,8', '9,10'], 'then the whole window, in order');
    for (const b of up.batches.slice(4)) b.settle();
    await settle();
    assert.equal(outbox.cursor('cloud'), 10);
  });

  it('stop() waits for the batches in flight and confirms what was confirmed', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 4; i++) outbox.append('result', 'r', '{}', T0);
    const up = new HeldUpstream('cloud');
    const f = started(up, outbox, { batchSize: 2 });
    await settle();
    let stopped = false;
    const stopping = f.stop().then(() => {
      stopped = true;
    });
    await settle();
    assert.equal(stopped, false, 'two batches still in flight');
    up.batches[0]?.settle();
    up.batches[1]?.settle(new Error('closing'));
    await stopping;
    assert.equal(outbox.cursor('cloud'), 2);
  });

  it('an outbox row the store gives back unparsable goes as its raw text, counted, and the rest follows', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    outbox.append('result', 'r', JSON.stringify({ i: 1 }), T0);
    outbox.append('result', 'r', '{"i": 2', T0);
    outbox.append('result', 'r', JSON.stringify({ i: 3 }), T0);
    const up = new ScriptedUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 1 });
    await settle();
    assert.deepEqual(up.received, [1, 2, 3]);
    assert.equal(outbox.cursor('cloud'), 3);
    assert.equal(await metricValue(s.metrics, 'tidegate_internal_errors_total'), 1);
  });

  it('an unexpected throw in the loop is counted and backed off, and forwarding goes on', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 3; i++) outbox.append('result', 'r', JSON.stringify({ i }), T0);
    const up = new ScriptedUpstream('cloud');
    let reads = 0;
    Object.defineProperty(up, 'maxInFlight', {
      get: () => {
        if (reads++ === 0) throw new Error('a bug in an upstream');
        return 1;
      },
    });
    forwarder = started(up, outbox, { batchSize: 10, pollInterval: 1000 });
    await settle();
    assert.deepEqual(up.received, [], 'nothing during the backoff');
    assert.equal(await metricValue(s.metrics, 'tidegate_internal_errors_total'), 1);
    s.clock.advance(1000);
    await settle();
    assert.deepEqual(up.received, [1, 2, 3]);
  });

  it('resumes from its durable cursor after a restart', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 6; i++) outbox.append('result', 'r', '{}', T0);
    outbox.saveCursor('cloud', 4);
    const up = new ScriptedUpstream('cloud');
    forwarder = started(up, outbox, { batchSize: 10 });
    await settle();
    assert.deepEqual(up.received, [5, 6]);
  });
});

describe('StoreMaintenance: space goes back to the file system', () => {
  it('the database file shrinks after the outbox drains', async () => {
    const tmp = makeTempDir();
    const path = tmp.file('shrink.db');
    const s = storeRig({}, openDatabase(path, { synchronous: 'normal' }));
    try {
      const outbox = new Outbox(s.db);
      const body = JSON.stringify({ pad: 'x'.repeat(200) });
      s.db.transaction(() => {
        for (let i = 0; i < 20_000; i++) outbox.append('result', 'r', body, T0);
      })();
      s.db.pragma('wal_checkpoint(TRUNCATE)');
      const full = statSync(path).size;
      assert.ok(full > 4 * 1024 * 1024, `${full} bytes`);
      const m = new StoreMaintenance(
        s.db,
        { retention: 365 * 86_400_000, maxSize: 2 ** 40, maxOutboxRows: 1_000_000 },
        { clock: s.clock, metrics: s.metrics, log: silentLogger(), outbox, forwardedUpTo: () => 20_000 },
      );
      const pass = m.retain();
      s.clock.advance(0);
      await pass;
      assert.equal(outbox.bounds().rows, 0);
      const drained = statSync(path).size;
      assert.ok(drained < full / 4, `file ${full} → ${drained} bytes`);
    } finally {
      s.close();
      tmp.remove();
    }
  });
});

describe('StoreMaintenance: caps', () => {
  let s: StoreRig;
  afterEach(() => s.close());

  function maintenance(maxSize: number, maxOutboxRows: number, forwardedUpTo: () => number | null) {
    return new StoreMaintenance(
      s.db,
      { retention: 365 * 86_400_000, maxSize, maxOutboxRows },
      { clock: s.clock, metrics: s.metrics, log: silentLogger(), outbox: new Outbox(s.db), forwardedUpTo },
    );
  }

  it('over maxSize, deletes the oldest raw readings first and leaves the outbox alone', async () => {
    s = storeRig({ batchSize: 100_000 });
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 80_000; i++) s.writer.add(reading('d', 'm', i, T0 - 80_000_000 + i * 1000), 'src');
    s.writer.flush();
    for (let i = 0; i < 100; i++) outbox.append('result', 'r', '{}', T0);
    const m = maintenance(1024 * 1024, 1_000_000, () => 0);
    const before = m.usedBytes();
    assert.ok(before > 1024 * 1024, `the test needs more than 1 MiB, has ${before}`);
    const deleted = m.enforceCaps();
    assert.ok(deleted > 0);
    assert.ok(m.usedBytes() <= 1024 * 1024);
    const left = s.query.readings({ order: 'asc', limit: 1 }).items[0];
    assert.ok(left && left.ts > T0 - 80_000_000, 'the oldest readings went');
    assert.equal(outbox.bounds().rows, 100);
    assert.equal(await metricValue(s.metrics, 'tidegate_outbox_dropped_total'), 0);
  });

  it('drops the oldest unforwarded outbox rows, counted, only when the outbox alone is over the cap', async () => {
    s = storeRig();
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 1000; i++) outbox.append('result', 'r', '{}', T0);
    const m = maintenance(2 ** 40, 600, () => 100);
    assert.equal(m.enforceCaps(), 400);
    assert.deepEqual({ first: outbox.bounds().first, rows: outbox.bounds().rows }, { first: 401, rows: 600 });
    // 100 of the 400 were forwarded already: 300 are losses.
    assert.equal(await metricValue(s.metrics, 'tidegate_outbox_dropped_total'), 300);
  });
});
