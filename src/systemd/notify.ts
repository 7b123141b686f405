/**
 * systemd/ — sd_notify (READY, WATCHDOG, STOPPING) for the unit in /systemd. Imports nothing of the
 * gateway.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, fstatSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * sd_notify(3) without native code. systemd's notify socket is a unix *datagram* socket, and Node
 * can't open one (`dgram` is UDP only, `net` is stream only). What Node can do is write(2) to a
 * descriptor it inherited, and a write on a connected datagram socket is one datagram. So
 * `systemd/notify-exec` (Perl, from the Essential perl-base package) connects the socket and execs
 * node with it open as `$TIDEGATE_NOTIFY_FD`; exec keeps the PID, so systemd sees the main process
 * sending and `NotifyAccess=main` holds.
 *
 * Started without the wrapper but with `$NOTIFY_SOCKET` set, the messages go through a long-lived
 * `notify-exec --relay` child instead; systemd then sees the child's PID, which only a unit with
 * `NotifyAccess=all` accepts. Without `$NOTIFY_SOCKET` every call is a no-op.
 *
 * The watchdog pings come from a timer on the event loop: a blocked loop stops them, and systemd
 * restarts the service after `WatchdogSec`.
 */
export interface Notifier {
  /** Whether messages go anywhere (`$NOTIFY_SOCKET` was set and reachable). */
  readonly enabled: boolean;
  /** How messages travel: `fd` (the main PID itself), `relay` (a helper child) or `none`. */
  readonly transport: 'fd' | 'relay' | 'none';
  /** Half of `$WATCHDOG_USEC` in ms when systemd asked for a watchdog for this process, else null. */
  readonly watchdogIntervalMs: number | null;
  /** `READY=1`: the service is up (call after the gateway has started). */
  ready(status?: string): void;
  /** `STATUS=…`: a line shown by `systemctl status`. */
  status(text: string): void;
  /** Pings `WATCHDOG=1` now and every `intervalMs` (default: `watchdogIntervalMs`) until stopped. */
  startWatchdog(intervalMs?: number): void;
  stopWatchdog(): void;
  /** `STOPPING=1`, and the watchdog stops: call when shutdown begins. */
  stopping(): void;
  /** Stops the watchdog and lets go of the transport. */
  close(): void;
}

/** What the notifier logs: the shape of a pino logger's warn/info, so a `Logger` fits. */
export interface NotifyLog {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

export interface NotifierOptions {
  /** The `notify-exec` script used as relay; found next to `dist/` by default. */
  relayHelper?: string;
}

interface Transport {
  readonly kind: 'fd' | 'relay';
  send(message: string): void;
  close(): void;
}

const silent: NotifyLog = { warn: () => {}, info: () => {} };

export function createNotifier(
  env: NodeJS.ProcessEnv = process.env,
  log: NotifyLog = silent,
  options: NotifierOptions = {},
): Notifier {
  const address = env['NOTIFY_SOCKET'];
  let transport: Transport | null = null;
  if (address) {
    transport = fdTransport(env['TIDEGATE_NOTIFY_FD'], log) ?? relayTransport(address, log, options);
  }
  return new SystemdNotifier(transport, watchdogInterval(env), log);
}

/** Half the watchdog timeout, as sd_watchdog_enabled(3) advises; null when it's not for this PID. */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid = process.pid): number | null {
  const usec = Number(env['WATCHDOG_USEC']);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  const forPid = env['WATCHDOG_PID'];
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2_000));
}

class SystemdNotifier implements Notifier {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private channel: Transport | null,
    readonly watchdogIntervalMs: number | null,
    private readonly log: NotifyLog,
  ) {}

  get enabled(): boolean {
    return this.channel !== null;
  }

  get transport(): 'fd' | 'relay' | 'none' {
    return this.channel?.kind ?? 'none';
  }

  ready(status?: string): void {
    this.send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  status(text: string): void {
    this.send(`STATUS=${oneLine(text)}`);
  }

  startWatchdog(intervalMs: number | undefined = this.watchdogIntervalMs ?? undefined): void {
    this.stopWatchdog();
    if (!this.enabled || intervalMs === undefined) return;
    this.send('WATCHDOG=1');
    this.timer = setInterval(() => this.send('WATCHDOG=1'), intervalMs);
    // The pings must not keep a stopping process alive.
    this.timer.unref();
    this.log.info({ intervalMs, transport: this.transport }, 'systemd watchdog pings started');
  }

  stopWatchdog(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stopping(): void {
    this.stopWatchdog();
    this.send('STOPPING=1');
  }

  close(): void {
    this.stopWatchdog();
    this.channel?.close();
    this.channel = null;
  }

  private send(message: string): void {
    this.channel?.send(message);
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

/** The inherited datagram socket from notify-exec; null when there is none usable. */
function fdTransport(value: string | undefined, log: NotifyLog): Transport | null {
  if (value === undefined || value === '') return null;
  const fd = Number(value);
  let usable = false;
  try {
    usable = Number.isInteger(fd) && fd > 2 && fstatSync(fd).isSocket();
  } catch {
    usable = false;
  }
  if (!usable) {
    log.warn({ TIDEGATE_NOTIFY_FD: value }, 'TIDEGATE_NOTIFY_FD is not an open socket; ignoring it');
    return null;
  }
  let failed = false;
  return {
    kind: 'fd',
    send(message) {
      try {
        writeSync(fd, Buffer.from(message, 'utf8'));
        failed = false;
      } catch (err) {
        // Log the first failure of a run, not one per ping.
        if (!failed) log.warn({ err, message }, 'sd_notify: cannot write to the notify socket');
        failed = true;
      }
    },
    close() {},
  };
}

/** Default place of notify-exec: `<package>/systemd/notify-exec`, from `dist/systemd/` or `build/src/systemd/`. */
function defaultRelayHelper(): string | null {
  for (const up of ['../../systemd/notify-exec', '../../../systemd/notify-exec']) {
    const path = fileURLToPath(new URL(up, import.meta.url));
    if (existsSync(path)) return path;
  }
  return null;
}

function relayTransport(address: string, log: NotifyLog, options: NotifierOptions): Transport | null {
  const helper = options.relayHelper ?? defaultRelayHelper();
  if (!helper) {
    log.warn({ NOTIFY_SOCKET: address }, 'NOTIFY_SOCKET is set but systemd/notify-exec is missing');
    return null;
  }
  let child: ChildProcess | null = spawn(helper, ['--relay'], {
    stdio: ['pipe', 'ignore', 'inherit'],
    env: { ...process.env, NOTIFY_SOCKET: address },
  });
  child.unref();
  child.on('error', (err) => {
    log.warn({ err, helper }, 'sd_notify relay failed to start');
    child = null;
  });
  child.on('exit', (code) => {
    if (child) log.warn({ code, helper }, 'sd_notify relay exited');
    child = null;
  });
  child.stdin?.on('error', () => {});
  log.info(
    { NOTIFY_SOCKET: address },
    'started without systemd/notify-exec: notifications go through a relay process, which systemd accepts only with NotifyAccess=all',
  );
  return {
    kind: 'relay',
    send(message) {
      child?.stdin?.write(`${message}\0`);
    },
    close() {
      const c = child;
      child = null;
      c?.stdin?.end();
    },
  };
}
