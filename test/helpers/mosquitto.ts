import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accepts, freePort } from './net.js';

/** Debian's broker (`apt install mosquitto`). */
export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface MosquittoTls {
  /** PEM files: the CA that signed the server's and the clients' certificates. */
  ca: string;
  cert: string;
  key: string;
  /** Refuse clients without a certificate signed by `ca`. */
  requireCertificate?: boolean;
}

export interface Mosquitto {
  readonly port: number;
  /** mqtt://127.0.0.1:PORT, or mqtts:// with TLS. */
  readonly url: string;
  /** SIGTERM, then waits for the exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** SIGKILL: the kernel closes its connections, nothing more is answered. */
  kill(): Promise<void>;
  /** Starts it again on the same port (stopping it first if it runs). */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open but nothing is answered. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

const READY_WITHIN_MS = 5000;
const EXIT_WITHIN_MS = 5000;

/**
 * Starts mosquitto on a free 127.0.0.1 port with a config of its own in a temp dir (anonymous,
 * persistence only when asked), and resolves once it accepts TCP connections.
 */
export async function startMosquitto(
  options: { tls?: MosquittoTls; persistence?: boolean } = {},
): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    // With persistence, sessions and their queued QoS 1 messages survive a stop/restart (saved at exit).
    ...(options.persistence ? ['persistence true', `persistence_location ${dir}/`] : ['persistence false']),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    // As root, mosquitto would switch to the `mosquitto` user, who can't read our temp dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
  ];
  const { tls } = options;
  if (tls) {
    lines.push(`cafile ${tls.ca}`, `certfile ${tls.cert}`, `keyfile ${tls.key}`);
    if (tls.requireCertificate) lines.push('require_certificate true');
  }
  writeFileSync(conf, `${lines.join('\n')}\n`);

  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stderr = '';

  const launch = async () => {
    stderr = '';
    const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = child;
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    let gone = false;
    exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        gone = true;
        if (proc === child) proc = null;
        resolve();
      });
      child.once('error', (err) => {
        gone = true;
        stderr += err.message;
        resolve();
      });
    });
    const deadline = Date.now() + READY_WITHIN_MS;
    while (!(await accepts(port))) {
      if (gone) throw new Error(`mosquitto exited at start: ${stderr.trim()}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`mosquitto did not listen on ${port} within ${READY_WITHIN_MS} ms: ${stderr.trim()}`);
      }
      await sleep(20);
    }
  };

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    const child = proc;
    if (!child) return;
    if (signal === 'SIGTERM') child.kill('SIGCONT');
    child.kill(signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), EXIT_WITHIN_MS);
    await exited;
    clearTimeout(killer);
  };

  try {
    await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url: `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    stop: () => stop(),
    kill: () => stop('SIGKILL'),
    async restart() {
      await stop();
      await launch();
    },
    pause: () => proc?.kill('SIGSTOP'),
    resume: () => proc?.kill('SIGCONT'),
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
