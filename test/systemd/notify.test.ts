import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createNotifier, watchdogInterval } from '../../src/systemd/notify.js';
import { makeTempDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NOTIFY_EXEC = `${ROOT}systemd/notify-exec`;
const CHILD = fileURLToPath(new URL('./fixtures/notify-child.js', import.meta.url));
const PYTHON = ['/usr/bin/python3', 'python3'].find(
  (p) => spawnSync(p, ['-c', 'import socket; socket.SO_PASSCRED'], { stdio: 'ignore' }).status === 0,
);
const PERL = spawnSync('perl', ['-MSocket', '-e', '1'], { stdio: 'ignore' }).status === 0;

/** A fake systemd: a unix datagram socket that reports each message with the sender's PID. */
const RECEIVER = `
import json, socket, struct, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": path}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = next((struct.unpack('iII', d[:12])[0] for l, t, d in anc
                if l == socket.SOL_SOCKET and t == socket.SCM_CREDENTIALS), None)
    print(json.dumps({"pid": pid, "data": data.decode(), "at": time.time() * 1000}), flush=True)
`;

interface Datagram {
  pid: number;
  data: string;
  at: number;
}
interface ChildEvent {
  event: string;
  at: number;
  pid: number;
  transport?: string;
  interval?: number;
}

function lines<T>(proc: ChildProcess, into: T[]): void {
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (l) =>
    into.push(JSON.parse(l) as T),
  );
}

async function startReceiver(address: string): Promise<{ proc: ChildProcess; got: Datagram[] }> {
  const proc = spawn(PYTHON as string, ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: Datagram[] = [];
  await new Promise<void>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    rl.once('line', () => {
      rl.on('line', (l) => got.push(JSON.parse(l) as Datagram));
      resolve();
    });
    proc.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  return { proc, got };
}

async function runChild(argv: string[], env: Record<string, string>): Promise<ChildEvent[]> {
  const proc = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events: ChildEvent[] = [];
  lines(proc, events);
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  assert.equal(code, 0);
  await new Promise((r) => setTimeout(r, 200)); // the last datagrams and lines
  return events;
}

function at(events: ChildEvent[], name: string): number {
  const e = events.find((x) => x.event === name);
  assert.ok(e, `the child reported ${name}`);
  return e.at;
}

/** READY first, pings while the loop runs, none while it's blocked, pings again, STOPPING last. */
function checkWatchdogPath(got: Datagram[], events: ChildEvent[]): void {
  const messages = got.map((d) => d.data);
  assert.equal(messages[0], 'READY=1\nSTATUS=up');
  assert.equal(messages.at(-1), 'STOPPING=1');
  const pings = got.filter((d) => d.data === 'WATCHDOG=1');
  const blockStart = at(events, 'block-start');
  const blockEnd = at(events, 'block-end');
  const before = pings.filter((p) => p.at < blockStart);
  const during = pings.filter((p) => p.at > blockStart + 50 && p.at < blockEnd);
  const after = pings.filter((p) => p.at >= blockEnd);
  assert.ok(before.length >= 5, `pings before the block: ${before.length}`);
  assert.equal(during.length, 0, `no pings while the event loop is blocked: ${JSON.stringify(during)}`);
  assert.ok(after.length >= 3, `pings after the block: ${after.length}`);
  const gaps = before.slice(1).map((p, i) => p.at - (before[i] as Datagram).at);
  assert.ok(Math.max(...gaps) < 400, `pings every ~100 ms: ${gaps.join(', ')}`);
}

describe('systemd notify', () => {
  it('is a no-op without NOTIFY_SOCKET', () => {
    const n = createNotifier({ WATCHDOG_USEC: '30000000' });
    assert.equal(n.enabled, false);
    assert.equal(n.transport, 'none');
    n.ready();
    n.startWatchdog();
    n.stopping();
    n.close();
  });

  it('pings at half of WATCHDOG_USEC, only for its own PID', () => {
    assert.equal(watchdogInterval({ WATCHDOG_USEC: '30000000' }), 15_000);
    assert.equal(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000);
    assert.equal(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42), null);
    assert.equal(watchdogInterval({}), null);
    assert.equal(watchdogInterval({ WATCHDOG_USEC: 'x' }), null);
  });

  const skip = !PYTHON
    ? 'python3 with AF_UNIX datagram sockets is needed as the fake systemd'
    : !PERL
      ? 'perl with Socket is needed for systemd/notify-exec'
      : false;

  for (const kind of ['path', 'abstract'] as const) {
    it(`through notify-exec (${kind} socket): READY, WATCHDOG from the main PID, none while blocked`, {
      skip,
    }, async () => {
      const tmp = makeTempDir();
      const address =
        kind === 'path' ? tmp.file('notify.sock') : `@tidegate-test-${process.pid}-${Date.now()}`;
      const receiver = await startReceiver(address);
      try {
        const events = await runChild([NOTIFY_EXEC, process.execPath, CHILD], {
          NOTIFY_SOCKET: address,
          WATCHDOG_USEC: '200000',
        });
        const start = events.find((e) => e.event === 'start');
        assert.equal(start?.transport, 'fd');
        assert.equal(start?.interval, 100);
        checkWatchdogPath(receiver.got, events);
        // exec kept the PID: systemd would see the main process (NotifyAccess=main).
        for (const d of receiver.got) assert.equal(d.pid, start?.pid);
      } finally {
        receiver.proc.kill();
        tmp.remove();
      }
    });
  }

  it('without notify-exec, relays through a helper (NotifyAccess=all)', { skip }, async () => {
    assert.ok(existsSync(NOTIFY_EXEC));
    const tmp = makeTempDir();
    const address = tmp.file('notify.sock');
    const receiver = await startReceiver(address);
    try {
      const events = await runChild([process.execPath, CHILD], {
        NOTIFY_SOCKET: address,
        WATCHDOG_USEC: '200000',
      });
      const start = events.find((e) => e.event === 'start');
      assert.equal(start?.transport, 'relay');
      checkWatchdogPath(receiver.got, events);
      assert.notEqual(receiver.got[0]?.pid, start?.pid);
    } finally {
      receiver.proc.kill();
      tmp.remove();
    }
  });
});
