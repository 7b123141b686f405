import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { RateLimitedLog, silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { EmbeddedBroker } from '../../src/sources/mqtt-broker.js';
import { hashPassword, verifyPassword } from '../../src/sources/password.js';
import { sendConnect } from '../helpers/mqtt-connect.js';

const PASSWORD = 'correct horse battery staple';

/** The hashes the broker asked to verify a password against, in order. */
type VerifyLog = string[];

describe('embedded broker logins over real TCP (hand-written CONNECT packets)', () => {
  let aliceHash = '';
  const brokers: EmbeddedBroker[] = [];

  before(async () => {
    aliceHash = await hashPassword(PASSWORD);
  });

  after(async () => {
    for (const b of brokers) await b.stop();
  });

  const startBroker = async (
    options: {
      clock?: ManualClock;
      throttle?: { failures?: number; windowMs?: number; backoffMs?: number; maxAddresses?: number };
      allowAnonymous?: string;
    } = {},
  ) => {
    const config = parseConfigText(
      `broker:
  host: 127.0.0.1
  port: 0
  allowAnonymous: ${options.allowAnonymous ?? 'false'}
  users:
    - { username: alice, passwordHash: "${aliceHash}", publish: ["sensors/#"] }
`,
      'test.yaml',
      {},
    );
    const clock = options.clock ?? new ManualClock(0);
    const log = silentLogger();
    const metrics = new Metrics();
    const verified: VerifyLog = [];
    const broker = new EmbeddedBroker(config.broker, {
      metrics,
      log,
      warn: new RateLimitedLog(log, () => clock.now()),
      clock,
      onUnknownTopic: () => {},
      verifyPassword: (password: Buffer, hash: string) => {
        verified.push(hash);
        return verifyPassword(password, hash);
      },
      ...(options.throttle ? { loginThrottle: options.throttle } : {}),
    });
    await broker.start();
    brokers.push(broker);
    const denied = async (reason: string) =>
      (await metrics.brokerDenied.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    return { broker, port: broker.port, verified, denied };
  };

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };

  it('takes as long to refuse an unknown username as a known one with a wrong password', async (t) => {
    const { port } = await startBroker({ throttle: { failures: 1_000 } });
    const unknown: number[] = [];
    const known: number[] = [];
    // Interleaved, so that a burst of load from elsewhere on the machine hits both alike.
    for (let i = 0; i < 9; i++) {
      const u = await sendConnect(port, {
        clientId: `u${i}`,
        clean: true,
        username: 'mallory',
        password: 'x',
      });
      const k = await sendConnect(port, { clientId: `k${i}`, clean: true, username: 'alice', password: 'x' });
      assert.equal(u.returnCode, 4, 'unknown user: bad username or password');
      assert.equal(k.returnCode, 4, 'known user, wrong password: bad username or password');
      unknown.push(u.elapsedMs);
      known.push(k.elapsedMs);
    }
    const ratio = median(unknown) / median(known);
    t.diagnostic(
      `median refusal: unknown user ${median(unknown).toFixed(1)} ms, known user ${median(known).toFixed(1)} ms, ratio ${ratio.toFixed(2)}`,
    );
    // Generous bounds: the machine is noisy, but without the dummy check the ratio is ~0.02.
    assert.ok(ratio > 1 / 3 && ratio < 3, `ratio ${ratio.toFixed(3)} outside [1/3, 3]`);
  });

  it('verifies an unknown username, or a missing password, against a dummy hash with the same scrypt parameters', async () => {
    const { port, verified } = await startBroker({ throttle: { failures: 1_000 } });
    const params = (hash: string) => hash.split('$').slice(0, 4).join('$');

    const unknown = await sendConnect(port, {
      clientId: 'u',
      clean: true,
      username: 'mallory',
      password: 'x',
    });
    assert.equal(unknown.returnCode, 4);
    assert.equal(verified.length, 1, 'one scrypt check for the unknown user');
    assert.equal(params(verified[0] as string), params(aliceHash));
    assert.notEqual(verified[0], aliceHash, "never alice's own hash: her password must not open other names");

    const noPassword = await sendConnect(port, { clientId: 'n', clean: true, username: 'alice' });
    assert.equal(noPassword.returnCode, 4);
    assert.equal(verified.length, 2, 'one scrypt check for a username without password');

    const wrong = await sendConnect(port, { clientId: 'w', clean: true, username: 'alice', password: 'x' });
    assert.equal(wrong.returnCode, 4);
    assert.deepEqual(verified.slice(2), [aliceHash]);

    const right = await sendConnect(port, {
      clientId: 'r',
      clean: true,
      username: 'alice',
      password: PASSWORD,
    });
    assert.equal(right.returnCode, 0);
  });

  it('throttles an address after repeated failures: even the right password is refused, without scrypt, until the backoff passes', async () => {
    const clock = new ManualClock(1_000_000);
    const { port, verified, denied } = await startBroker({
      clock,
      throttle: { failures: 3, windowMs: 60_000, backoffMs: 30_000 },
    });
    const login = (password: string, localAddress = '127.0.0.1') =>
      sendConnect(port, { clientId: 'c', clean: true, username: 'alice', password }, { localAddress });

    for (let i = 0; i < 3; i++) assert.equal((await login('wrong')).returnCode, 4, `failure ${i + 1}`);
    const throttled = await login(PASSWORD);
    assert.equal(throttled.returnCode, 5, 'refused while throttled (not authorized)');
    assert.equal(verified.length, 3, 'scrypt for the three failures, none for a throttled address');
    assert.equal(await denied('auth'), 3);
    assert.equal(await denied('throttled'), 1);

    // Another address is not held back by this one's failures.
    assert.equal((await login(PASSWORD, '127.0.0.2')).returnCode, 0);

    clock.advance(29_999);
    assert.equal((await login(PASSWORD)).returnCode, 5, 'still within the backoff');
    clock.advance(1);
    assert.equal((await login(PASSWORD)).returnCode, 0, 'the backoff has passed');
    assert.equal(await denied('throttled'), 2);
  });

  it('counts failures within the window only', async () => {
    const clock = new ManualClock(1_000_000);
    const { port } = await startBroker({
      clock,
      throttle: { failures: 3, windowMs: 60_000, backoffMs: 30_000 },
    });
    const login = (password: string) =>
      sendConnect(
        port,
        { clientId: 'c', clean: true, username: 'alice', password },
        { localAddress: '127.0.0.3' },
      );
    assert.equal((await login('wrong')).returnCode, 4);
    assert.equal((await login('wrong')).returnCode, 4);
    clock.advance(60_000);
    assert.equal((await login('wrong')).returnCode, 4);
    assert.equal((await login(PASSWORD)).returnCode, 0, 'the first two failures fell out of the window');
  });

  it('refuses a zero-length ClientId with CleanSession 0: CONNACK 0x02, identifier rejected [MQTT-3.1.3-8]', async () => {
    const { port, verified, denied } = await startBroker({ allowAnonymous: 'true' });
    const anonymous = await sendConnect(port, { clientId: '', clean: false });
    assert.deepEqual(anonymous.connack, Buffer.from([0x20, 0x02, 0x00, 0x02]));
    const withLogin = await sendConnect(port, {
      clientId: '',
      clean: false,
      username: 'alice',
      password: PASSWORD,
    });
    assert.deepEqual(withLogin.connack, Buffer.from([0x20, 0x02, 0x00, 0x02]));
    assert.equal(verified.length, 0, 'refused before any password check');
    assert.equal(await denied('client_id'), 2);

    // [MQTT-3.1.3-6]: with CleanSession 1 the broker assigns an id and accepts.
    const clean = await sendConnect(port, { clientId: '', clean: true });
    assert.deepEqual(clean.connack, Buffer.from([0x20, 0x02, 0x00, 0x00]));
    const named = await sendConnect(port, { clientId: 'sensor-1', clean: false });
    assert.equal(named.returnCode, 0);
    // MQTT 3.1 knows no assigned ids: a ClientId of 1 to 23 characters, or 0x02.
    const v31 = await sendConnect(port, { clientId: '', clean: true, protocol: 3 });
    assert.deepEqual(v31.connack, Buffer.from([0x20, 0x02, 0x00, 0x02]));
  });
});
