import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's socat (`apt install socat`). */
export const SOCAT = '/usr/bin/socat';

export interface PtyPair {
  /** Symlinks to the two ends: what one end writes, the other reads. */
  readonly a: string;
  readonly b: string;
  /** Kills socat: both ends and their links disappear (an unplugged adapter). */
  remove(): Promise<void>;
  /** Starts socat again with the same link paths. */
  recreate(): Promise<void>;
  /** Removes it for good, with its temp dir. */
  close(): Promise<void>;
}

const READY_WITHIN_MS = 5000;

/** A pseudo-terminal pair from `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`. */
export async function startPtyPair(): Promise<PtyPair> {
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-pty-'));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const launch = async () => {
    let stderr = '';
    let gone = false;
    const child = spawn(SOCAT, ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc = child;
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
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
    // socat logs "starting data transfer loop" once both ptys exist and are linked.
    while (!(existsSync(a) && existsSync(b) && stderr.includes('starting data transfer loop'))) {
      if (gone) throw new Error(`socat exited at start: ${stderr.trim()}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`socat did not create ${a} and ${b} within ${READY_WITHIN_MS} ms: ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const remove = async () => {
    const child = proc;
    if (!child) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(killer);
    // socat removes its links on exit; make sure.
    rmSync(a, { force: true });
    rmSync(b, { force: true });
  };

  await launch();
  return {
    a,
    b,
    remove,
    async recreate() {
      await remove();
      await launch();
    },
    async close() {
      await remove();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
