// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} in plain strings is the config syntax under test
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { ConfigError, type ConfigProblem, formatPath, formatProblem } from '../../src/schema/problems.js';
import { hashPassword, verifyPassword } from '../../src/sources/password.js';
import { makeTempDir } from '../helpers/tmp.js';

const FILE = 'conf/gateway.yaml';

/** YAML from lines, so that the line numbers in assertions can be read off the array index + 1. */
function yaml(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

function problemsOf(text: string, env: Record<string, string> = {}): ConfigProblem[] {
  try {
    parseConfigText(text, FILE, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(err.problems.length > 0, 'a ConfigError lists at least one problem');
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

function findProblem(problems: ConfigProblem[], path: string): ConfigProblem {
  const p = problems.find((x) => formatPath(x.path) === path);
  assert.ok(p, `no problem at ${path}; problems: ${problems.map(formatProblem).join(' | ')}`);
  return p;
}

describe('parseConfigText: defaults', () => {
  it('turns an empty file into a full config', () => {
    for (const text of ['', '# only a comment\n', '---\n']) {
      const c = parseConfigText(text, FILE, {});
      assert.equal(c.gateway.id, 'gw-1');
      assert.equal(c.log.level, 'info');
      assert.equal(c.api.host, '127.0.0.1');
      assert.equal(c.api.port, 8080);
      assert.equal(c.api.token, undefined);
      assert.equal(c.api.insecure, false);
      assert.equal(c.broker.enabled, true);
      assert.equal(c.broker.host, '0.0.0.0');
      assert.equal(c.broker.port, 1883);
      assert.equal(c.broker.allowAnonymous, false);
      assert.equal(c.broker.maxPayload, 64 * 1024);
      assert.deepEqual(c.broker.users, []);
      assert.equal(c.ingest.maxFutureSkew, 5 * 60_000);
      assert.equal(c.ingest.maxMetricsPerMessage, 256);
      assert.deepEqual(c.sources, []);
      assert.equal(c.store.path, 'data/tidegate.db');
      assert.equal(c.store.flushInterval, 200);
      assert.equal(c.store.retention, 7 * 86_400_000);
      assert.equal(c.store.synchronous, 'normal');
      assert.equal(c.store.readings, true);
    }
  });

  it('parses durations to ms and sizes to bytes, filling defaults beside given keys', () => {
    const c = parseConfigText(
      yaml(
        'broker: { maxPayload: 1MiB }',
        'ingest: { maxFutureSkew: 30s }',
        'store: { retention: 2d, flushInterval: 1s }',
        'api: { maxBodySize: 64KiB }',
        'sources:',
        '  - { id: sim, type: simulator, interval: 250ms }',
      ),
      FILE,
      {},
    );
    assert.equal(c.broker.maxPayload, 1024 * 1024);
    assert.equal(c.broker.port, 1883);
    assert.equal(c.ingest.maxFutureSkew, 30_000);
    assert.equal(c.store.retention, 2 * 86_400_000);
    assert.equal(c.store.flushInterval, 1000);
    assert.equal(c.store.path, 'data/tidegate.db');
    assert.equal(c.api.maxBodySize, 64 * 1024);
    const sim = c.sources[0];
    assert.ok(sim && sim.type === 'simulator');
    assert.equal(sim.interval, 250);
    assert.equal(sim.devices, 3);
  });

  it('fills topic defaults of an mqtt source', () => {
    const c = parseConfigText(
      yaml(
        'sources:',
        '  - id: local',
        '    type: mqtt',
        '    topics: [{ filter: "sensors/{device}/{metric}" }]',
      ),
      FILE,
      {},
    );
    const s = c.sources[0];
    assert.ok(s && s.type === 'mqtt');
    assert.deepEqual(s.topics[0], { filter: 'sensors/{device}/{metric}', qos: 0, payload: 'auto' });
  });

  it('accepts the shipped default config/gateway.yaml', () => {
    const file = fileURLToPath(new URL('../../../config/gateway.yaml', import.meta.url));
    const c = parseConfigText(readFileSync(file, 'utf8'), file, {});
    assert.equal(c.api.host, '127.0.0.1');
    assert.ok(c.sources.some((s) => s.type === 'simulator'));
  });
});

describe('parseConfigText: environment', () => {
  it('replaces ${VAR} and ${VAR:-default} inside values', () => {
    const text = yaml(
      'gateway: { id: "gw-${SITE}" }',
      'store: { path: "${DATA:-/var/lib/tidegate}/db.sqlite" }',
      'api: { token: "${TIDEGATE_TOKEN}" }',
    );
    const c = parseConfigText(text, FILE, { SITE: 'north', TIDEGATE_TOKEN: 'abcdefghijklmnop' });
    assert.equal(c.gateway.id, 'gw-north');
    assert.equal(c.store.path, '/var/lib/tidegate/db.sqlite');
    assert.equal(c.api.token, 'abcdefghijklmnop');

    const d = parseConfigText(text, FILE, { SITE: 'south', DATA: '/data' });
    assert.equal(d.store.path, '/data/db.sqlite');
    assert.equal(d.api.token, undefined, 'an unset ${TIDEGATE_TOKEN} means no token');
  });

  it('substitutes a whole-value ${VAR} into a number field as a number', () => {
    // A user of Telegraf writes `port: ${API_PORT}` and expects it to work.
    const c = parseConfigText(yaml('api:', '  port: ${API_PORT}'), FILE, { API_PORT: '9000' });
    assert.equal(c.api.port, 9000);
  });

  it('TIDEGATE_API__TOKEN sets the token', () => {
    const c = parseConfigText('', FILE, { TIDEGATE_API__TOKEN: 's3cret-token-of-20c' });
    assert.equal(c.api.token, 's3cret-token-of-20c');
  });

  it('TIDEGATE_API__TOKEN made only of digits is still a token (a string), not a number', () => {
    const c = parseConfigText(yaml('api:', '  host: 0.0.0.0'), FILE, {
      TIDEGATE_API__TOKEN: '8273645509182736',
    });
    assert.equal(c.api.token, '8273645509182736');
  });

  it('finds keys case-insensitively and parses the value like the file would', () => {
    const c = parseConfigText(yaml('store:', '  flushInterval: 200ms'), FILE, {
      TIDEGATE_STORE__FLUSHINTERVAL: '1s',
      TIDEGATE_API__PORT: '9090',
      TIDEGATE_API__INSECURE: 'true',
      TIDEGATE_BROKER__ALLOWANONYMOUS: 'loopback',
    });
    assert.equal(c.store.flushInterval, 1000);
    assert.equal(c.api.port, 9090);
    assert.equal(c.api.insecure, true);
    assert.equal(c.broker.allowAnonymous, 'loopback');
  });

  it('overrides a key of a list item by index', () => {
    const text = yaml(
      'sources:',
      '  - { id: a, type: simulator, interval: 1s }',
      '  - { id: b, type: simulator }',
    );
    const c = parseConfigText(text, FILE, {
      TIDEGATE_SOURCES__0__INTERVAL: '5s',
      TIDEGATE_SOURCES__1__DEVICES: '7',
    });
    const [a, b] = c.sources;
    assert.ok(a?.type === 'simulator' && b?.type === 'simulator');
    assert.equal(a.interval, 5000);
    assert.equal(b.devices, 7);
  });

  it('finds a camelCase key of a list item that the file does not write', () => {
    const text = yaml('sources:', '  - { id: a, type: simulator }');
    const c = parseConfigText(text, FILE, { TIDEGATE_SOURCES__0__OUTOFORDER: '0.5' });
    const a = c.sources[0];
    assert.ok(a?.type === 'simulator');
    assert.equal(a.outOfOrder, 0.5);
  });

  it('ignores variables that are not overrides', () => {
    const c = parseConfigText('', FILE, { TIDEGATE_TOKEN: 'x', TIDEGATE_API: 'x', PATH: '/bin' });
    assert.equal(c.api.token, undefined);
  });

  it('refuses to override a section or a list, naming the variable', () => {
    const problems = problemsOf(yaml('gateway:', '  id: gw-1', 'broker:', '  users: []'), {
      TIDEGATE_STORE: 'x', // no __: not an override at all
      TIDEGATE_BROKER__USERS: 'nobody',
      TIDEGATE_GATEWAY__ID__X: 'y',
    });
    const users = findProblem(problems, 'broker.users');
    assert.equal(users.env, 'TIDEGATE_BROKER__USERS');
    assert.match(users.message, /section or list/);
    assert.match(formatProblem(users), /\(from TIDEGATE_BROKER__USERS\)/);
    const id = problems.find((p) => p.env === 'TIDEGATE_GATEWAY__ID__X');
    assert.ok(id, 'a key inside a scalar is a problem too');
    assert.match(id.message, /scalar/);
  });

  it('refuses to override a whole list item or a nested section', () => {
    const problems = problemsOf(
      yaml('broker:', '  anonymous: { publish: ["#"] }', 'sources:', '  - { id: a, type: simulator }'),
      { TIDEGATE_SOURCES__0: 'x', TIDEGATE_BROKER__ANONYMOUS: 'none' },
    );
    const item = findProblem(problems, 'sources[0]');
    assert.equal(item.env, 'TIDEGATE_SOURCES__0');
    assert.match(item.message, /section or list/);
    const anon = findProblem(problems, 'broker.anonymous');
    assert.equal(anon.env, 'TIDEGATE_BROKER__ANONYMOUS');
    assert.match(anon.message, /section or list/);
  });

  it('refuses an override of a list item that does not exist', () => {
    const problems = problemsOf(yaml('sources:', '  - { id: a, type: simulator }'), {
      TIDEGATE_SOURCES__3__INTERVAL: '5s',
    });
    const p = problems.find((x) => x.env === 'TIDEGATE_SOURCES__3__INTERVAL');
    assert.ok(p, problems.map(formatProblem).join(' | '));
  });

  it('names the variable when an overridden value is wrong', () => {
    const problems = problemsOf('', { TIDEGATE_STORE__FLUSHINTERVAL: 'soon' });
    const p = findProblem(problems, 'store.flushInterval');
    assert.equal(p.env, 'TIDEGATE_STORE__FLUSHINTERVAL');
    assert.match(p.message, /duration/);
  });

  it('names the variable when an override names an unknown key', () => {
    const problems = problemsOf(yaml('api:', '  port: 8080'), { TIDEGATE_API__PROT: '1' });
    const p = problems.find((x) => formatPath(x.path).toLowerCase() === 'api.prot');
    assert.ok(p, problems.map(formatProblem).join(' | '));
    assert.equal(
      p.env,
      'TIDEGATE_API__PROT',
      'the key is not in the file: the user must learn where it came from',
    );
  });
});

describe('parseConfigText: problems', () => {
  // Several mistakes at once; each line number below is the index in this list + 1.
  const broken = yaml(
    /* 1 */ 'gateway:',
    /* 2 */ '  id: gw-1',
    /* 3 */ 'api:',
    /* 4 */ '  port: "eighty"',
    /* 5 */ '  colour: blue',
    /* 6 */ 'broker:',
    /* 7 */ '  allowAnonymous: maybe',
    /* 8 */ 'sources:',
    /* 9 */ '  - id: local',
    /* 10 */ '    type: mqtt',
    /* 11 */ '    topics: [{ filter: "sensors/{device}/{metric}" }]',
    /* 12 */ '  - id: meters',
    /* 13 */ '    type: zigbee',
    /* 14 */ '  - id: local',
    /* 15 */ '    type: simulator',
    /* 16 */ '    interval: often',
    /* 17 */ 'store:',
    /* 18 */ '  retention: 7 days',
    /* 19 */ '  readings: yes please',
  );

  it('lists every problem, each with file, line, column and path', () => {
    const problems = problemsOf(broken);
    const expected: [string, number][] = [
      ['api.port', 4],
      ['api.colour', 5],
      ['broker.allowAnonymous', 7],
      ['sources[1].type', 13],
      ['sources[2].id', 14],
      ['sources[2].interval', 16],
      ['store.retention', 18],
      ['store.readings', 19],
    ];
    for (const [path, line] of expected) {
      const p = findProblem(problems, path);
      assert.equal(p.file, FILE, path);
      assert.equal(p.line, line, `${path} line`);
      assert.equal(typeof p.column, 'number', `${path} column`);
    }
    assert.equal(problems.length, expected.length, problems.map(formatProblem).join('\n'));
  });

  it('puts the column at the value (or at the key, for an unknown key)', () => {
    const problems = problemsOf(broken);
    assert.equal(findProblem(problems, 'api.port').column, 9);
    assert.equal(findProblem(problems, 'api.colour').column, 3);
    assert.equal(findProblem(problems, 'sources[1].type').column, 11);
  });

  it('says what was expected and what was found', () => {
    const problems = problemsOf(broken);
    assert.match(findProblem(problems, 'api.port').message, /expected a number, found "eighty"/);
    assert.match(findProblem(problems, 'api.colour').message, /unknown key/);
    assert.match(
      findProblem(problems, 'sources[1].type').message,
      /"mqtt".*"simulator".*"modbus".*"serial".*found "zigbee"/,
    );
    assert.match(findProblem(problems, 'sources[2].id').message, /duplicate source id "local"/);
    assert.match(findProblem(problems, 'sources[2].interval').message, /duration.*found "often"/);
    assert.match(findProblem(problems, 'store.retention').message, /found "7 days"/);
    assert.match(
      findProblem(problems, 'store.readings').message,
      /expected true or false, found "yes please"/,
    );
  });

  it('puts every problem into the error message, one line each', () => {
    try {
      parseConfigText(broken, FILE, {});
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const lines = err.message.split('\n');
      assert.equal(lines.length, err.problems.length);
      assert.ok(
        lines.includes('conf/gateway.yaml:4:9: api.port: expected a number, found "eighty"'),
        err.message,
      );
    }
  });

  it('reports wrong types in nested lists with their index', () => {
    const problems = problemsOf(
      yaml(
        'sources:',
        '  - id: local',
        '    type: mqtt',
        '    topics:',
        '      - { filter: "a/{device}/{metric}", qos: 2 }',
      ),
    );
    const p = findProblem(problems, 'sources[0].topics[0].qos');
    assert.equal(p.line, 5);
  });

  it('refuses an invalid topic template', () => {
    const problems = problemsOf(
      yaml('sources:', '  - id: local', '    type: mqtt', '    topics: [{ filter: "sensors/#/{device}" }]'),
    );
    const p = findProblem(problems, 'sources[0].topics[0].filter');
    assert.equal(p.line, 4);
    assert.match(p.message, /topic/);
  });

  it('refuses a top level that is not a mapping', () => {
    for (const text of ['- a\n- b\n', '42\n', 'just text\n']) {
      const problems = problemsOf(text);
      assert.equal(problems.length, 1);
      assert.deepEqual(problems[0]?.path, []);
      assert.match(problems[0]?.message ?? '', /mapping/);
    }
  });

  it('refuses an unknown section', () => {
    const p = findProblem(problemsOf(yaml('gateway: { id: a }', 'upstream: []')), 'upstream');
    assert.equal(p.line, 2);
    assert.equal(p.column, 1);
  });

  it('reports YAML syntax errors with their line', () => {
    const problems = problemsOf(yaml('api:', '  port: 8080', 'broker: { port: 1883', 'store:', '  path: x'));
    assert.ok(problems.every((p) => p.message.startsWith('YAML:')));
    // The flow map opens on line 3 and is found unclosed on line 4.
    assert.ok(
      problems.every((p) => p.line === 3 || p.line === 4),
      problems.map(formatProblem).join('|'),
    );
  });

  it('reports a bad indentation as a YAML error on its line', () => {
    const problems = problemsOf(yaml('gateway:', '  id: a', 'api:', '  port: 1', '    host: x'));
    assert.ok(problems.length > 0);
    assert.ok(
      problems.every((p) => p.message.startsWith('YAML:') && (p.line === 4 || p.line === 5)),
      problems.map(formatProblem).join('|'),
    );
  });

  it('refuses values below a minimum, saying which', () => {
    const problems = problemsOf(
      yaml('store:', '  retention: 30s', 'sources:', '  - { id: s, type: simulator, devices: 0 }'),
    );
    const retention = findProblem(problems, 'store.retention');
    assert.equal(retention.line, 2);
    assert.match(retention.message, /at least 60000 ms, found "30s"/);
    const devices = findProblem(problems, 'sources[0].devices');
    assert.equal(devices.line, 4);
    assert.match(devices.message, /≥ 1, found number 0/);
  });

  it('refuses a duration above its maximum, saying which', () => {
    const problems = problemsOf(yaml('store:', '  summaryInterval: 2h'));
    const interval = findProblem(problems, 'store.summaryInterval');
    assert.equal(interval.line, 2);
    assert.match(interval.message, /at most 3600000 ms, found "2h"/);
    assert.equal(
      parseConfigText(yaml('store:', '  summaryInterval: 1h'), FILE, {}).store.summaryInterval,
      3_600_000,
    );
  });

  it('reports a duplicate key as a YAML error at its second occurrence', () => {
    const problems = problemsOf(yaml('api:', '  port: 1', 'broker: {}', 'api:', '  port: 2'));
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.line, 4);
    assert.match(problems[0]?.message ?? '', /unique/i);
  });

  it('refuses a token shorter than 16 characters', () => {
    const p = findProblem(problemsOf(yaml('api:', '  token: short')), 'api.token');
    assert.equal(p.line, 2);
    assert.match(p.message, /16/);
  });
});

describe('parseConfigText: the bind rule', () => {
  it('refuses api.host 0.0.0.0 without token and without insecure, at api.token', () => {
    const problems = problemsOf(yaml('api:', '  host: 0.0.0.0'));
    assert.equal(problems.length, 1);
    const p = findProblem(problems, 'api.token');
    assert.equal(p.file, FILE);
    assert.equal(p.line, 2);
    assert.match(p.message, /0\.0\.0\.0/);
    assert.match(p.message, /api\.token/);
    assert.match(p.message, /insecure/);
  });

  it('refuses every non-loopback host, including an empty token from an unset variable', () => {
    for (const host of ['0.0.0.0', '192.168.1.10', '::', 'gateway.local']) {
      const problems = problemsOf(yaml('api:', `  host: "${host}"`, '  token: "${TIDEGATE_TOKEN}"'));
      findProblem(problems, 'api.token');
    }
  });

  it('reports the bind rule beside other problems', () => {
    const problems = problemsOf(yaml('api:', '  host: 0.0.0.0', '  port: x'));
    findProblem(problems, 'api.token');
    findProblem(problems, 'api.port');
  });

  it('accepts a non-loopback host with a token of at least 16 characters', () => {
    const c = parseConfigText(yaml('api:', '  host: 0.0.0.0', '  token: 0123456789abcdef'), FILE, {});
    assert.equal(c.api.token, '0123456789abcdef');
  });

  it('accepts a non-loopback host with a token from the environment', () => {
    const c = parseConfigText(yaml('api:', '  host: 0.0.0.0'), FILE, {
      TIDEGATE_API__TOKEN: 'abcdefghijklmnopq',
    });
    assert.equal(c.api.host, '0.0.0.0');
  });

  it('accepts a non-loopback host with insecure: true', () => {
    const c = parseConfigText(yaml('api:', '  host: 0.0.0.0', '  insecure: true'), FILE, {});
    assert.equal(c.api.insecure, true);
    assert.equal(c.api.token, undefined);
  });

  it('accepts loopback hosts without a token', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) {
      const c = parseConfigText(yaml('api:', `  host: "${host}"`), FILE, {});
      assert.equal(c.api.host, host);
    }
  });
});

describe('parseConfigText: what run would refuse', () => {
  it('refuses an mqtt upstream without url while the broker is disabled, at its url', () => {
    const problems = problemsOf(
      yaml('broker: { enabled: false }', 'upstreams:', '  - { id: local, type: mqtt }'),
    );
    assert.equal(problems.length, 1);
    const p = findProblem(problems, 'upstreams[0].url');
    assert.equal(p.line, 3);
    assert.match(p.message, /without url publishes into the embedded broker, but broker\.enabled is false/);
    const sourced = problemsOf(
      yaml(
        'broker: { enabled: false }',
        'sources:',
        '  - { id: a, type: mqtt, topics: [{ filter: "s/{device}" }] }',
      ),
    );
    assert.match(findProblem(sourced, 'sources[0].url').message, /reads the embedded broker/);
  });

  it('accepts an mqtt upstream without url beside the embedded broker, or with a url without it', () => {
    parseConfigText(yaml('upstreams:', '  - { id: local, type: mqtt }'), FILE, {});
    parseConfigText(
      yaml('broker: { enabled: false }', 'upstreams:', '  - { id: cloud, type: mqtt, url: "mqtt://h:1883" }'),
      FILE,
      {},
    );
  });

  it('refuses TLS files that cannot be read, at their path, and names the variable one came from', () => {
    const dir = makeTempDir();
    try {
      const problems = problemsOf(
        yaml(
          'sources:',
          `  - { id: ext, type: mqtt, url: "mqtts://h:8883", cert: ${dir.file('c.pem')}, key: ${dir.path}, topics: [{ filter: "s/{device}" }] }`,
          'upstreams:',
          `  - { id: cloud, type: mqtt, url: "mqtts://h:8883", ca: ${dir.file('ca.pem')} }`,
          `  - { id: ingest, type: http, url: "https://h/in", ca: ca.pem }`,
        ),
        { TIDEGATE_UPSTREAMS__1__CA: dir.file('from-env.pem') },
      );
      assert.equal(problems.length, 4, problems.map(formatProblem).join(' | '));
      const cert = findProblem(problems, 'sources[0].cert');
      assert.equal(cert.line, 2);
      assert.equal(cert.message, `cannot read the file ${dir.file('c.pem')}: no such file`);
      assert.equal(
        findProblem(problems, 'sources[0].key').message,
        `cannot read the file ${dir.path}: not a file`,
      );
      assert.match(findProblem(problems, 'upstreams[0].ca').message, /ca\.pem: no such file$/);
      const fromEnv = findProblem(problems, 'upstreams[1].ca');
      assert.equal(fromEnv.env, 'TIDEGATE_UPSTREAMS__1__CA');
      assert.match(fromEnv.message, /from-env\.pem: no such file$/);
    } finally {
      dir.remove();
    }
  });

  it('accepts TLS files that can be read', () => {
    const dir = makeTempDir();
    try {
      writeFileSync(dir.file('ca.pem'), 'PEM');
      const c = parseConfigText(
        yaml('upstreams:', `  - { id: ingest, type: http, url: "https://h/in", ca: ${dir.file('ca.pem')} }`),
        FILE,
        {},
      );
      assert.equal(c.upstreams[0]?.type === 'http' && c.upstreams[0].ca, dir.file('ca.pem'));
    } finally {
      dir.remove();
    }
  });

  it('refuses a passwordHash that no password can match, as the broker would at every login', async () => {
    const good = await hashPassword('s3cret');
    const [, n, r, p, salt, key] = good.split('$');
    const userWith = (hash: string) =>
      yaml('broker:', '  users:', `    - { username: u, passwordHash: "${hash}" }`);
    assert.equal(parseConfigText(userWith(good), FILE, {}).broker.users[0]?.passwordHash, good);
    for (const hash of [
      `scrypt$1000$${r}$${p}$${salt}$${key}`, // N not a power of two
      `scrypt$${2 ** 21}$${r}$${p}$${salt}$${key}`, // N too large
      `scrypt$${n}$0$${p}$${salt}$${key}`,
      `scrypt$${n}$${r}$99$${salt}$${key}`,
      `scrypt$${n}$${r}$${p}$${salt}$${(key ?? '').slice(0, 8)}`, // a short key
    ]) {
      assert.equal(await verifyPassword('s3cret', hash), false, hash);
      const problem = findProblem(problemsOf(userWith(hash)), 'broker.users[0].passwordHash');
      assert.equal(problem.line, 3);
      assert.match(problem.message, /no password can match/, hash);
    }
  });

  it('accepts the API beyond loopback without a token while the API is disabled', () => {
    const c = parseConfigText(yaml('api: { enabled: false, host: 0.0.0.0 }'), FILE, {});
    assert.equal(c.api.enabled, false);
  });

  it('refuses the API and the broker on one port where their hosts overlap, at api.port', () => {
    for (const [apiHost, brokerHost] of [
      ['127.0.0.1', '127.0.0.1'],
      ['127.0.0.1', '0.0.0.0'],
      ['::', '10.0.0.2'],
    ]) {
      const problems = problemsOf(
        yaml(
          `api: { host: "${apiHost}", port: 9000, token: 0123456789abcdef }`,
          `broker: { host: "${brokerHost}", port: 9000 }`,
        ),
      );
      assert.equal(problems.length, 1, `${apiHost} ${brokerHost}`);
      assert.match(findProblem(problems, 'api.port').message, /both listen on .*9000/);
    }
  });

  it('accepts one port on two distinct addresses, port 0, or with either part disabled', () => {
    parseConfigText(yaml('api: { port: 9000 }', 'broker: { host: 10.0.0.2, port: 9000 }'), FILE, {});
    parseConfigText(yaml('api: { port: 0 }', 'broker: { port: 0 }'), FILE, {});
    parseConfigText(yaml('api: { port: 1883 }', 'broker: { enabled: false }'), FILE, {});
    parseConfigText(yaml('api: { port: 1883, enabled: false }'), FILE, {});
  });
});

describe('formatProblem', () => {
  it('writes file:line:col: path: message', () => {
    assert.equal(
      formatProblem({
        file: 'g.yaml',
        line: 12,
        column: 5,
        path: ['api', 'port'],
        message: 'expected a number',
      }),
      'g.yaml:12:5: api.port: expected a number',
    );
    assert.equal(
      formatProblem({
        file: 'g.yaml',
        line: 3,
        column: 7,
        path: ['sources', 2, 'topics', 0, 'qos'],
        message: 'm',
      }),
      'g.yaml:3:7: sources[2].topics[0].qos: m',
    );
  });

  it('writes the file alone without a line, and (top level) for an empty path', () => {
    assert.equal(formatProblem({ file: 'g.yaml', path: [], message: 'm' }), 'g.yaml: (top level): m');
  });

  it('names the environment variable a value came from', () => {
    assert.equal(
      formatProblem({
        file: 'g.yaml',
        line: 1,
        column: 1,
        path: ['api', 'token'],
        env: 'TIDEGATE_API__TOKEN',
        message: 'm',
      }),
      'g.yaml:1:1: api.token (from TIDEGATE_API__TOKEN): m',
    );
  });
});

describe('loadConfig', () => {
  it('reads a file and locates problems in it', () => {
    const dir = makeTempDir();
    try {
      const file = dir.file('gateway.yaml');
      writeFileSync(file, yaml('store:', '  flushInterval: 5s'));
      const c: GatewayConfig = loadConfig(file, {});
      assert.equal(c.store.flushInterval, 5000);
      writeFileSync(file, yaml('store:', '  flushInterval: never'));
      assert.throws(
        () => loadConfig(file, {}),
        (err: unknown) =>
          err instanceof ConfigError && err.message.startsWith(`${file}:2:18: store.flushInterval:`),
      );
    } finally {
      dir.remove();
    }
  });

  it('names the file it cannot read', () => {
    const dir = makeTempDir();
    try {
      const file = dir.file('missing.yaml');
      assert.throws(
        () => loadConfig(file, {}),
        (err: unknown) =>
          err instanceof ConfigError && err.problems[0]?.file === file && /cannot read/.test(err.message),
      );
    } finally {
      dir.remove();
    }
  });
});
