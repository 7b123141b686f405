import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verifyPassword } from '../../src/sources/password.js';
import { eventually, ROOT, runCli, startGateway } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/net.js';

describe('tidegate CLI', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('validate prints every problem with file, line and path, and exits 1', async () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(
      file,
      [
        'gateway: { id: gw-1 }',
        'api:',
        '  port: "eighty"',
        '  host: 0.0.0.0',
        'broker:',
        '  allowAnonymous: sometimes',
        'sources:',
        '  - { id: sim, type: simulator, interval: soon }',
        '  - { id: sim, type: zigbee }',
        'stroe: { path: x.db }',
        '',
      ].join('\n'),
    );
    const { code, stdout } = await runCli(['validate', '--config', file]);
    assert.equal(code, 1);
    const lines = stdout.trim().split('\n');
    const expectLine = (pattern: RegExp) =>
      assert.ok(
        lines.some((l) => pattern.test(l)),
        `no line matches ${pattern}:\n${stdout}`,
      );
    expectLine(/broken\.yaml:3:9: api\.port: expected a number, found "eighty"/);
    expectLine(/broken\.yaml:8:\d+: sources\[0\]\.interval: expected a duration/);
    expectLine(
      /broken\.yaml:6:19: broker\.allowAnonymous: expected true or false, or "loopback", found "sometimes"/,
    );
    expectLine(
      /broken\.yaml:9:\d+: sources\[1\]\.type: expected one of "mqtt", "simulator", "modbus", "serial", found "zigbee"/,
    );
    expectLine(/broken\.yaml:9:\d+: sources\[1\]\.id: duplicate source id "sim"$/);
    expectLine(
      /broken\.yaml:\d+:\d+: api\.token: the API binds to 0\.0\.0\.0, beyond loopback: set api\.token/,
    );
    expectLine(/broken\.yaml:10:1: stroe: unknown key$/);
    expectLine(/^7 problem\(s\) found$/);
  });

  it('validate accepts the shipped default and exits 0', async () => {
    const { code, stdout } = await runCli(['validate', '--config', join(ROOT, 'config/gateway.yaml')]);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /OK/);
  });

  it('run refuses a broken config with exit 78 and the problems on stderr', async () => {
    const file = join(dir, 'bad-run.yaml');
    writeFileSync(file, 'store: { flushInterval: never }\n');
    const { code, stderr } = await runCli(['run', '--config', file]);
    assert.equal(code, 78);
    assert.match(stderr, /bad-run\.yaml:1:\d+: store\.flushInterval: expected a duration/);
  });

  it('run refuses to serve the API beyond loopback without a token', async () => {
    const file = join(dir, 'open.yaml');
    writeFileSync(
      file,
      `api: { host: 0.0.0.0, port: 0 }\nbroker: { enabled: false }\nstore: { path: ${join(dir, 'open.db')} }\n`,
    );
    const { code, stderr } = await runCli(['run', '--config', file]);
    assert.equal(code, 78);
    assert.match(stderr, /api\.token: the API binds to 0\.0\.0\.0, beyond loopback/);
  });

  it('with a token beyond loopback, every route but /health needs it, and /health tells little without it', async () => {
    const file = join(dir, 'token.yaml');
    const token = 'a-long-enough-secret-token';
    writeFileSync(
      file,
      `api: { host: 0.0.0.0, port: 0, token: "\${MY_TOKEN}" }\nbroker: { enabled: false }\nstore: { path: ${join(dir, 'token.db')} }\n`,
    );
    const gw = await startGateway(file, { env: { MY_TOKEN: token } });
    try {
      const health = await gw.api('/api/v1/health');
      assert.equal(health.status, 200);
      assert.deepEqual(Object.keys((await health.json()) as object).sort(), ['status', 'version']);
      const full = await gw.api('/api/v1/health', { headers: { authorization: `Bearer ${token}` } });
      assert.ok('store' in ((await full.json()) as object), 'the full report with the token');
      const denied = await gw.api('/api/v1/readings');
      assert.equal(denied.status, 401);
      assert.equal(((await denied.json()) as { error: { code: string } }).error.code, 'unauthorized');
      assert.equal((await gw.api('/metrics')).status, 401);
      assert.equal(
        (await gw.api('/api/v1/readings', { headers: { authorization: 'Bearer wrong' } })).status,
        401,
      );
      assert.equal(
        (await gw.api('/api/v1/readings', { headers: { authorization: `Bearer ${token}` } })).status,
        200,
      );
    } finally {
      await gw.stop();
    }
  });

  it('hash-password prints a passwordHash that verifies', async () => {
    const { code, stdout } = await runCli(['hash-password'], { input: 's3cret\n' });
    assert.equal(code, 0);
    const hash = stdout.trim();
    assert.match(hash, /^scrypt\$16384\$8\$1\$/);
    assert.equal(await verifyPassword('s3cret', hash), true);
    assert.equal(await verifyPassword('s3cret\n', hash), false);
  });

  it('unknown commands and no command print usage and exit 2', async () => {
    assert.equal((await runCli(['frobnicate'])).code, 2);
    const none = await runCli([]);
    assert.equal(none.code, 2);
    assert.match(none.stdout, /Usage:/);
  });
});

describe('the embedded default (config/gateway.yaml)', () => {
  it('is healthy within 10 s, serves the API on 127.0.0.1 only, and stores simulated readings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidegate-default-'));
    const started = Date.now();
    // The shipped file as it is; only ports (to avoid clashes) and the store path are overridden.
    const gw = await startGateway(join(ROOT, 'config/gateway.yaml'), {
      env: {
        TIDEGATE_API__PORT: '0',
        TIDEGATE_BROKER__PORT: '0',
        TIDEGATE_STORE__PATH: join(dir, 'tidegate.db'),
      },
    });
    try {
      const health = await eventually(async () => {
        const res = await gw.api('/api/v1/health');
        return res.status === 200
          ? ((await res.json()) as {
              status: string;
              sources: { id: string }[];
              upstreams: { id: string; state: string }[];
            })
          : undefined;
      });
      assert.ok(Date.now() - started < 10_000, 'healthy within 10 s');
      assert.equal(health.status, 'ok');
      assert.deepEqual(health.sources.map((s) => s.id).sort(), ['local', 'sim']);
      // Results are forwarded to the embedded broker under tidegate/#.
      assert.deepEqual(
        health.upstreams.map((u) => [u.id, u.state]),
        [['local', 'connected']],
      );
      const apiLog = gw.logs.find((l) => l.msg === 'API listening');
      assert.equal(apiLog?.['host'], '127.0.0.1');
      const items = await eventually(async () => {
        const res = await gw.api('/api/v1/readings?device=sim-1&metric=temperature');
        const body = (await res.json()) as { items: { device: string; value: number }[] };
        return body.items.length > 0 ? body.items : undefined;
      }, 5_000);
      assert.equal(items[0]?.device, 'sim-1');
      assert.equal(typeof items[0]?.value, 'number');
      const devices = (await (await gw.api('/api/v1/devices')).json()) as {
        items: { id: string; status: string }[];
      };
      assert.deepEqual(
        devices.items.map((d) => [d.id, d.status]),
        [
          ['sim-1', 'online'],
          ['sim-2', 'online'],
          ['sim-3', 'online'],
        ],
      );
    } finally {
      const { code } = await gw.stop();
      assert.equal(code, 0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tidegate validate with rules', () => {
  it('prints every problem of a rules file with its file, line and path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidegate-rules-cli-'));
    try {
      writeFileSync(
        join(dir, 'rules.yaml'),
        [
          '- id: ok-rule',
          '  window: { type: tumbling, size: 10s }',
          '- id: Bad Id',
          '  window: { type: tumbling, size: soon }',
          '  aggregates: { avg: average }',
          '  when: "avg >"',
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'gw.yaml'),
        `rules: ${join(dir, 'rules.yaml')}\nstore: { path: ${join(dir, 'x.db')} }\n`,
      );
      const { code, stdout } = await runCli(['validate', '--config', join(dir, 'gw.yaml')]);
      assert.equal(code, 1);
      assert.match(stdout, /rules\.yaml:3:\d+: \[1\]\.id: /);
      assert.match(stdout, /rules\.yaml:4:\d+: \[1\]\.window\.size: /);
      assert.match(stdout, /rules\.yaml:5:\d+: \[1\]\.aggregates\.avg: /);
      assert.match(stdout, /rules\.yaml:6:\d+: \[1\]\.when: /);
      assert.doesNotMatch(stdout, /\[0\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('validate refuses what run refuses, with the same problems', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-agree-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The problem lines (`file:line:col: path: message`) of an output, in order. */
  const problemLines = (output: string, file: string) =>
    output.split('\n').filter((l) => l.startsWith(`${file}:`));

  /**
   * Writes `yaml` (the store in the temp dir, ports free unless the case sets them), then checks
   * that validate exits 1 (SPEC §7), run exits 78, and both print the same problems, one at `path`.
   */
  async function agree(name: string, yaml: string, path: RegExp): Promise<void> {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, `store: { path: ${join(dir, `${name}.db`)} }\n${yaml}`);
    const validated = await runCli(['validate', '--config', file]);
    const ran = await runCli(['run', '--config', file]);
    const found = problemLines(validated.stdout, file);
    assert.equal(validated.code, 1, `validate passed what run refuses:\n${validated.stdout}${ran.stderr}`);
    assert.ok(
      found.some((l) => path.test(l)),
      `no problem matches ${path}:\n${validated.stdout}`,
    );
    assert.equal(ran.code, 78, `run: ${ran.stderr}`);
    assert.deepEqual(problemLines(ran.stderr, file), found);
  }

  it('an mqtt upstream without url while the broker is disabled', async () => {
    await agree(
      'upstream-no-broker',
      'api: { port: 0 }\nbroker: { enabled: false }\nupstreams: [{ id: local, type: mqtt }]\n',
      /:\d+:\d+: upstreams\[0\]\.url: an mqtt upstream without url publishes into the embedded broker, but broker\.enabled is false$/,
    );
  });

  it('an mqtt source without url while the broker is disabled', async () => {
    await agree(
      'source-no-broker',
      'api: { port: 0 }\nbroker: { enabled: false }\nsources: [{ id: local, type: mqtt, topics: [{ filter: "s/{device}/{metric}" }] }]\n',
      /:\d+:\d+: sources\[0\]\.url: an mqtt source without url reads the embedded broker, but broker\.enabled is false$/,
    );
  });

  it('the API beyond loopback without a token', async () => {
    await agree(
      'api-open',
      'api: { host: 0.0.0.0, port: 0 }\nbroker: { enabled: false }\n',
      /:\d+:\d+: api\.token: the API binds to 0\.0\.0\.0, beyond loopback/,
    );
  });

  it('TLS files that cannot be read', async () => {
    const missing = join(dir, 'missing-ca.pem');
    await agree(
      'tls-missing',
      `api: { port: 0 }\nbroker: { enabled: false }\nupstreams: [{ id: cloud, type: mqtt, url: "mqtts://127.0.0.1:1", ca: ${missing} }]\n`,
      /:\d+:\d+: upstreams\[0\]\.ca: cannot read the file .*missing-ca\.pem: no such file$/,
    );
  });

  it('a nats upstream: its keys checked at their paths, its creds file read', async () => {
    const missing = join(dir, 'missing.creds');
    await agree(
      'nats-keys',
      `api: { port: 0 }\nbroker: { enabled: false }\nupstreams: [{ id: fleet, type: nats, servers: ["nats://127.0.0.1:1"], stream: FLEET, creds: ${missing} }]\n`,
      /:\d+:\d+: upstreams\[0\]\.creds: cannot read the file .*missing\.creds: no such file$/,
    );
    await agree(
      'nats-subject',
      'api: { port: 0 }\nbroker: { enabled: false }\nupstreams: [{ id: fleet, type: nats, servers: ["nats://127.0.0.1:1"], stream: FLEET, subject: "tidegate.{type}.{rule}" }]\n',
      /:\d+:\d+: upstreams\[0\]\.subject: expected \{gateway\} in the subject/,
    );
    await agree(
      'nats-gateway-dot',
      'gateway: { id: site.a }\napi: { port: 0 }\nbroker: { enabled: false }\nupstreams: [{ id: fleet, type: nats, servers: ["nats://127.0.0.1:1"], stream: FLEET }]\n',
      /:\d+:\d+: gateway\.id: a nats upstream puts the gateway id in one subject token: expected no dot, found "site\.a"$/,
    );
  });

  it('the API and the embedded broker on one port', async () => {
    const port = await freePort();
    await agree(
      'one-port',
      `api: { port: ${port} }\nbroker: { host: 127.0.0.1, port: ${port} }\n`,
      new RegExp(
        `:\\d+:\\d+: api\\.port: the API and the embedded broker both listen on 127\\.0\\.0\\.1:${port}`,
      ),
    );
  });
});
