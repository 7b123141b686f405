import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The built CLI, as production runs it. */
export const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url));
/** The project root (for the shipped config/gateway.yaml). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface RunningGateway {
  proc: ChildProcess;
  apiPort: number;
  brokerPort: number;
  logs: LogLine[];
  stderr: string[];
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Sends the signal and resolves with the exit code and how long the exit took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
}

/**
 * Starts `node dist/cli.js run --config FILE` and waits (at most `timeoutMs`) until the API
 * listens; ports come from its log lines, so configs can ask for port 0.
 */
export async function startGateway(
  configFile: string,
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; cpu?: number } = {},
): Promise<RunningGateway> {
  const node = [process.execPath, CLI, 'run', '--config', configFile];
  // taskset execs node: the pid stays the gateway's.
  const [cmd, ...args] = (
    options.cpu === undefined ? node : ['taskset', '-c', String(options.cpu), ...node]
  ) as [string, ...string[]];
  const proc = spawn(cmd, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  let apiPort = 0;
  let brokerPort = 0;
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'embedded MQTT broker listening') brokerPort = entry['port'] as number;
      if (entry.msg === 'API listening') apiPort = entry['port'] as number;
      if (entry.msg === 'tidegate started') resolve();
    });
    exited.then((code) =>
      reject(new Error(`gateway exited with ${code} before it was ready: ${stderr.join('\n')}`)),
    );
  });
  const timeoutMs = options.timeoutMs ?? 15_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ready,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`gateway not ready within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    proc,
    get apiPort() {
      return apiPort;
    },
    brokerPort,
    logs,
    stderr,
    api: (path, init) => fetch(`http://127.0.0.1:${apiPort}${path}`, init),
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return { code: proc.exitCode, ms: 0 };
      const started = Date.now();
      proc.kill(signal);
      const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return { code, ms: Date.now() - started };
    },
  };
}

/** Polls `check` every 50 ms until it returns a value other than undefined, for at most `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs the CLI to completion: exit code and output. */
export function runCli(
  args: string[],
  options: { cwd?: string; input?: string; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => {
      stdout += d;
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    proc.stdin.end(options.input ?? '');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}
