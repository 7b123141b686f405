import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * What the benchmarks that start the built gateway share: how systemd/tidegate.service runs node
 * (so that they measure the product as installed), and the figures of a process read from /proc.
 */

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
/**
 * The same gateway as tsc emits it for the tests (build/src/), one module per source file: a CPU
 * profile of it names src/'s files and folders, which dist/'s bundle (scripts/bundle.mjs) does not.
 */
export const UNBUNDLED_CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const UNIT = fileURLToPath(new URL('../../systemd/tidegate.service', import.meta.url));
const MiB = 2 ** 20;

/** systemd's word splitting of a directive's value: whitespace separates, "…" and '…' quote. */
function unitWords(value: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3] ?? ''));
  }
  return words;
}

/**
 * How systemd/tidegate.service starts node: the node flags of ExecStart (between the node binary
 * and dist/cli.js) and the variables of its Environment= lines. TIDEGATE_* variables are left out:
 * they point the installed gateway at /var/lib/tidegate, and a bench's config says where instead.
 */
export function unitNodeCommand(file = UNIT): { flags: string[]; env: Record<string, string> } {
  let exec: string[] | undefined;
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^(ExecStart|Environment)=(.*)$/.exec(line.trim());
    if (!m) continue;
    const words = unitWords(m[2] as string);
    if (m[1] === 'ExecStart') exec = words;
    else
      for (const w of words) {
        const eq = w.indexOf('=');
        if (eq > 0) env[w.slice(0, eq)] = w.slice(eq + 1);
      }
  }
  const node = exec?.findIndex((w) => /(^|\/)node$/.test(w)) ?? -1;
  const script = exec?.findIndex((w) => w.endsWith('/dist/cli.js')) ?? -1;
  if (!exec || node < 0 || script < node) throw new Error(`${file}: no ExecStart=… node … dist/cli.js`);
  for (const key of Object.keys(env)) if (key.startsWith('TIDEGATE_')) delete env[key];
  return { flags: exec.slice(node + 1, script), env };
}

/**
 * The environment to start the gateway in as the unit does: this one without NODE_OPTIONS (systemd
 * starts from a clean one), plus the unit's variables, plus `extra`.
 */
export function unitEnvironment(
  unit: { env: Record<string, string> },
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _, ...inherited } = process.env;
  return { ...inherited, ...unit.env, ...extra };
}

/** The unit's command line as printed by the benchmarks. */
export function describeUnitCommand(unit: { flags: string[]; env: Record<string, string> }): string {
  const env = Object.entries(unit.env).map(([k, v]) => `${k}=${/\s/.test(v) ? JSON.stringify(v) : v}`);
  return `${env.join(' ')} node ${unit.flags.join(' ')} dist/cli.js run`;
}

function procField(pid: number, file: 'status' | 'io', key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
  if (!m) throw new Error(`no ${key} in /proc/${pid}/${file}`);
  return Number(m[1]);
}

export const rssMiB = (pid: number) => (procField(pid, 'status', 'VmRSS') * 1024) / MiB;
export const peakRssMiB = (pid: number) => (procField(pid, 'status', 'VmHWM') * 1024) / MiB;
/** Bytes this process caused to be written to storage (counted when it dirties page-cache pages). */
export const writeBytes = (pid: number) => procField(pid, 'io', 'write_bytes');

/** utime + stime of a process in seconds (clock ticks are 100 Hz on Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
