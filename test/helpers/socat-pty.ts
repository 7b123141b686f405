import { type ChildProcess, spawn } from 'node:child_process';
import { constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's socat (`apt install socat`). */
export const SOCAT = '/usr/bin/socat';
const READY_WITHIN_MS = 5000;

/**
 * A pseudo-terminal pair from `socat -d -d pty,raw,echo=0,link=DIR/a pty,raw,echo=0,link=DIR/b`:
 * the code under test opens `a` as its serial port, the test writes into `b`. `stop()` kills
 * socat, so both ptys and their links disappear (an unplugged USB adapter); `restart()` brings
 * them back at the same paths.
 */
export interface SocatPty {
  /** The end the code under test opens. */
  readonly a: string;
  /** The far end, where `write` writes. */
  readonly b: string;
  readonly running: boolean;
  /** Writes text (or bytes) into the far end exactly as given: add the delimiter yourself. */
  write(data: string | Uint8Array): Promise<void>;
  /** Kills socat; both ptys and links are gone. */
  stop(): Promise<void>;
  /** Starts socat again with the same link paths. */
  restart(): Promise<void>;
  /** Stops for good and removes the temp dir. */
  close(): Promise<void>;
}

export async function startSocatPty(): Promise<SocatPty> {
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-serial-'));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let far: FileHandle | null = null;

  const launch = async () => {
    let stderr = '';
    let gone = false;
    const proc = spawn(SOCAT, ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    exited = new Promise<void>((resolve) => {
      proc.once('exit', () => {
        gone = true;
        if (child === proc) child = null;
        resolve();
      });
      proc.once('error', (err) => {
        gone = true;
        stderr += err.message;
        if (child === proc) child = null;
        resolve();
      });
    });
    const deadline = Date.now() + READY_WITHIN_MS;
    // With -d -d, socat logs "starting data transfer loop" once both ptys exist and are linked.
    while (!(existsSync(a) && existsSync(b) && stderr.includes('starting data transfer loop'))) {
      if (gone) throw new Error(`socat exited at start: ${stderr.trim()}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`socat did not create ${a} and ${b} within ${READY_WITHIN_MS} ms: ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    // Held open for socat's whole life: a pty whose last opener closes it hangs up socat.
    // No O_CREAT: if the link vanished, fail instead of creating a plain file in its place.
    far = await open(b, constants.O_WRONLY | constants.O_NOCTTY);
  };

  const stop = async () => {
    const handle = far;
    far = null;
    await handle?.close().catch(() => {});
    const proc = child;
    if (!proc) return;
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 3000);
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
    get running() {
      return child !== null;
    },
    async write(data) {
      if (!far) throw new Error('the pty pair is stopped');
      await far.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
