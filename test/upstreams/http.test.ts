import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { httpUpstreamSchema } from '../../src/upstreams/config.js';
import { createUpstream } from '../../src/upstreams/create.js';
import { HttpUpstream } from '../../src/upstreams/http.js';
import { type HttpSink, startHttpSink } from '../helpers/http-sink.js';
import { freePort } from '../helpers/net.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { makeCertificates, type TestCertificates } from './certificates.js';
import { outboxItems } from './items.js';
import { timed } from './wait.js';

const log = silentLogger();
const TEST = { timeout: 10_000 };

function upstream(url: string, extra: Record<string, unknown> = {}): HttpUpstream {
  return new HttpUpstream(httpUpstreamSchema.parse({ id: 'ingest', type: 'http', url, ...extra }), { log });
}

describe('HttpUpstream', () => {
  let sink: HttpSink;
  const upstreams: HttpUpstream[] = [];

  before(async () => {
    sink = await startHttpSink();
  });
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
    sink.requests.length = 0;
    sink.behave('ok');
  });
  after(async () => {
    await sink.close();
  });

  async function started(extra: Record<string, unknown> = {}): Promise<HttpUpstream> {
    const up = upstream(sink.url, extra);
    upstreams.push(up);
    await up.start();
    return up;
  }

  it('POSTs the batch as one JSON array of envelopes, in order, and resolves on 2xx', TEST, async () => {
    const up = await started();
    assert.equal(up.type, 'http');
    const batch = outboxItems(50);
    await up.deliver(batch);
    assert.equal(sink.requests.length, 1);
    const req = sink.requests[0];
    assert.equal(req?.method, 'POST');
    assert.equal(req?.path, '/ingest');
    assert.equal(req?.headers['content-type'], 'application/json');
    assert.match(req?.headers['user-agent'] ?? '', /^tidegate\//);
    assert.deepEqual(sink.accepted(), [batch.map((b) => b.envelope)]);
    assert.equal(up.state(), 'connected');
    assert.equal(up.lastError(), null);
  });

  it('accepts any 2xx', TEST, async () => {
    const up = await started();
    sink.behave({ status: 204 });
    await up.deliver(outboxItems(2));
    sink.behave({ status: 202, body: '{"queued":2}' });
    await up.deliver(outboxItems(2, 3));
    assert.equal(sink.requests.length, 2);
  });

  it('sends the configured headers', TEST, async () => {
    const up = await started({ headers: { authorization: 'Bearer s3cret', 'X-Fleet': 'north' } });
    await up.deliver(outboxItems(1));
    assert.equal(sink.requests[0]?.headers['authorization'], 'Bearer s3cret');
    assert.equal(sink.requests[0]?.headers['x-fleet'], 'north');
  });

  it(
    'rejects a 500 with the status and the start of the body, and is offline until a success',
    TEST,
    async () => {
      const up = await started();
      sink.behave({ status: 500, body: `database unavailable ${'x'.repeat(500)}` });
      const outcome = await timed(up.deliver(outboxItems(3)));
      const message = outcome.error?.message ?? 'resolved';
      assert.match(message, new RegExp(`^POST ${sink.url} answered 500: database unavailable x+…$`));
      assert.ok(message.length < 300, message);
      assert.equal(up.state(), 'offline');
      assert.equal(up.lastError(), message);
      sink.behave('ok');
      await up.deliver(outboxItems(3));
      assert.equal(up.state(), 'connected');
      assert.equal(up.lastError(), null);
    },
  );

  it('rejects other statuses and redirects', TEST, async () => {
    const up = await started();
    sink.behave({ status: 413 });
    await assert.rejects(up.deliver(outboxItems(1)), /answered 413$/);
    sink.behave({ status: 303 });
    await assert.rejects(up.deliver(outboxItems(1)), /answered 303$/);
  });

  it('rejects after the timeout when the server never answers', TEST, async () => {
    const up = await started({ timeout: 300 });
    sink.behave('hang');
    const outcome = await timed(up.deliver(outboxItems(3)));
    assert.match(outcome.error?.message ?? 'resolved', /timed out after 300 ms$/);
    assert.ok(outcome.ms >= 250 && outcome.ms < 2000, `rejected after ${outcome.ms} ms`);
    assert.equal(sink.requests.length, 1);
    assert.equal(up.state(), 'offline');
  });

  it('rejects when the server closes the connection without answering', TEST, async () => {
    const up = await started();
    sink.behave('close');
    const outcome = await timed(up.deliver(outboxItems(3)));
    // The sink got the batch but never said so: that is a failure (it will be delivered again).
    assert.equal(sink.requests.length, 1);
    assert.match(outcome.error?.message ?? 'resolved', new RegExp(`^POST ${sink.url} failed: .+`));
    assert.ok(outcome.ms < 2000, `rejected after ${outcome.ms} ms`);
  });

  it('rejects when nothing listens, naming the cause', TEST, async () => {
    const port = await freePort();
    const up = upstream(`http://127.0.0.1:${port}/ingest`);
    upstreams.push(up);
    await up.start();
    await assert.rejects(up.deliver(outboxItems(1)), /failed: connect ECONNREFUSED 127\.0\.0\.1/);
  });

  it('an empty batch sends nothing', TEST, async () => {
    const up = await started();
    await up.deliver([]);
    assert.equal(sink.requests.length, 0);
  });

  it('close() aborts a request in flight and refuses later ones', TEST, async () => {
    const up = await started({ timeout: 5000 });
    sink.behave('hang');
    const delivery = timed(up.deliver(outboxItems(1)));
    while (sink.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    await up.close();
    const outcome = await delivery;
    assert.match(outcome.error?.message ?? 'resolved', /aborted: the upstream is closing/);
    assert.ok(outcome.ms < 2000);
    await assert.rejects(up.deliver(outboxItems(1)), /closed/);
  });

  it('is what createUpstream makes of an http entry', async () => {
    const up = await createUpstream(httpUpstreamSchema.parse({ id: 'x', type: 'http', url: sink.url }), {
      gatewayId: 'gw-1',
      log,
      metrics: new Metrics(),
    });
    assert.ok(up instanceof HttpUpstream);
  });
});

describe('HttpUpstream over https with a private CA', () => {
  let dir: TempDir;
  let certs: TestCertificates;
  let sink: HttpSink;
  const upstreams: HttpUpstream[] = [];

  before(async () => {
    dir = makeTempDir();
    certs = makeCertificates(dir);
    sink = await startHttpSink({
      tls: { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) },
    });
  });
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
    sink.requests.length = 0;
    sink.behave('ok');
  });
  after(async () => {
    await sink?.close();
    dir?.remove();
  });

  async function started(extra: Record<string, unknown> = {}): Promise<HttpUpstream> {
    const up = upstream(sink.url, extra);
    upstreams.push(up);
    await up.start();
    return up;
  }

  it('delivers when given the CA, with the same body and headers', TEST, async () => {
    const up = await started({ ca: certs.ca, headers: { authorization: 'Bearer s3cret' } });
    const batch = outboxItems(4);
    await up.deliver(batch);
    assert.deepEqual(sink.accepted(), [batch.map((b) => b.envelope)]);
    assert.equal(sink.requests[0]?.headers['content-type'], 'application/json');
    assert.equal(sink.requests[0]?.headers['authorization'], 'Bearer s3cret');
  });

  it('rejects statuses, timeouts and resets the same way', TEST, async () => {
    const up = await started({ ca: certs.ca, timeout: 300 });
    sink.behave({ status: 500, body: 'nope' });
    await assert.rejects(up.deliver(outboxItems(1)), /answered 500: nope$/);
    sink.behave('hang');
    const hung = await timed(up.deliver(outboxItems(1)));
    assert.match(hung.error?.message ?? 'resolved', /timed out after 300 ms$/);
    assert.ok(hung.ms < 2000, `rejected after ${hung.ms} ms`);
    sink.behave('close');
    await assert.rejects(up.deliver(outboxItems(1)), /failed: .+/);
    sink.behave('ok');
    await up.deliver(outboxItems(1));
    assert.equal(up.state(), 'connected');
  });

  it('refuses the server without the CA', TEST, async () => {
    const up = await started();
    await assert.rejects(up.deliver(outboxItems(1)), /failed: .*(certificate|UNABLE_TO_VERIFY)/i);
    assert.equal(sink.requests.length, 0);
  });

  it('start() fails with the file name when the CA file is missing', async () => {
    const up = upstream(sink.url, { ca: dir.file('missing.pem') });
    await assert.rejects(up.start(), /cannot read ca file .*missing\.pem: ENOENT/);
  });
});
