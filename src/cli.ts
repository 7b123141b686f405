#!/usr/bin/env node
import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HistoryOpenError } from './backtest/history-db.js';
import { backtestStore } from './backtest/offline.js';
import { DEFAULT_CONFIG_FILE, loadConfig } from './config/load.js';
import { loadRulesFile } from './config/rules.js';
import { compileRules } from './engine/compile.js';
import { Gateway } from './gateway.js';
import { parseTimeText } from './model/timestamp.js';
import { replay } from './replay/replay.js';
import { createLogger, type Logger } from './runtime/log.js';
import { VERSION } from './runtime/version.js';
import { ConfigError, formatProblem } from './schema/problems.js';
import { hashPassword } from './sources/password.js';
import { StoreOpenError } from './store/database.js';
import { createNotifier } from './systemd/notify.js';

/** Exit codes: 0 ok, 1 problems found (validate) or runtime failure, 2 usage, 74 store unusable, 78 bad config. */
const EXIT = { ok: 0, failure: 1, usage: 2, store: 74, config: 78 } as const;
const SHUTDOWN_LIMIT_MS = 5_000;
/** After a process-level error the store gets this long to flush; then the process exits regardless. */
const CRASH_STOP_LIMIT_MS = 3_000;

const USAGE = `tidegate ${VERSION} — IoT sensor edge gateway

Usage:
  tidegate run [--config FILE]        run the gateway (default config: ${DEFAULT_CONFIG_FILE})
  tidegate validate [--config FILE]   check the configuration and rules; print every problem; exit 1 if any
  tidegate replay --rules FILE [--input FILE|-]
                                      run rules over JSON-lines readings; output records on stdout
  tidegate backtest --rules FILE [--rule ID] --from T --to T [--db PATH] [--config FILE]
                                      run rules over the readings stored from T to T (ISO-8601 or
                                      epoch ms), read-only; records on stdout, a summary on stderr
                                      (default store: the config's store.path)
  tidegate hash-password              read a password on stdin, print a broker passwordHash
  tidegate --version | --help
`;

/** The config file: as given, else ./config/gateway.yaml, else the one shipped with the package. */
function configPath(given: string | undefined): string {
  if (given) return given;
  if (existsSync(DEFAULT_CONFIG_FILE)) return DEFAULT_CONFIG_FILE;
  const shipped = join(dirname(fileURLToPath(import.meta.url)), '..', DEFAULT_CONFIG_FILE);
  return existsSync(shipped) ? shipped : DEFAULT_CONFIG_FILE;
}

async function run(file: string): Promise<number> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      process.stderr.write(`tidegate: not starting: ${err.problems.length} configuration problem(s)\n`);
      return EXIT.config;
    }
    throw err;
  }
  const log = createLogger(config.log.level);
  let crash: (err: unknown, origin: string) => void = () => {};
  const gateway = new Gateway(config, {
    log,
    processMetrics: true,
    onFatal: (err) => crash(err, 'store writer'),
  });
  crash = exitOnProcessError(gateway, log);
  try {
    await gateway.start();
  } catch (err) {
    if (err instanceof StoreOpenError) {
      log.fatal({ path: err.path }, err.message);
      process.stderr.write(`tidegate: ${err.message}\n`);
      return EXIT.store;
    }
    log.fatal({ err }, 'tidegate failed to start');
    process.stderr.write(`tidegate: failed to start: ${(err as Error).message}\n`);
    return EXIT.failure;
  }
  // systemd: READY=1 now, WATCHDOG=1 from the event loop (a blocked loop gets restarted); no-ops elsewhere.
  const notifier = createNotifier(process.env, log);
  notifier.ready(`gateway ${config.gateway.id} running`);
  notifier.startWatchdog();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const finish = (code: number) => {
      notifier.close();
      resolve(code);
    };
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      notifier.stopping();
      log.info({ signal }, 'stopping');
      const limit = setTimeout(() => {
        log.error('shutdown took longer than 5 s; exiting');
        finish(EXIT.failure);
      }, SHUTDOWN_LIMIT_MS);
      limit.unref();
      gateway.stop().then(
        () => {
          clearTimeout(limit);
          finish(EXIT.ok);
        },
        (err: unknown) => {
          log.error({ err }, 'stop failed');
          finish(EXIT.failure);
        },
      );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
  });
}

/**
 * An uncaught exception or unhandled rejection leaves the gateway in an unknown state: log it as
 * fatal, flush the store if that is quick, exit 1 so that systemd (Restart=on-failure) restarts it.
 * Installed before start, so that an error during start is covered too. Returns the crash, for the
 * gateway's own fatal failures.
 */
function exitOnProcessError(gateway: Gateway, log: Logger): (err: unknown, origin: string) => void {
  let crashing = false;
  const crash = (err: unknown, origin: string) => {
    log.fatal({ err, origin }, 'unexpected error: stopping');
    if (crashing) return;
    crashing = true;
    // Also the code if the event loop empties while the stop is stuck.
    process.exitCode = EXIT.failure;
    const exit = () => process.exit(EXIT.failure);
    setTimeout(exit, CRASH_STOP_LIMIT_MS).unref();
    gateway.stop().then(exit, exit);
  };
  process.on('uncaughtException', (err, origin) => crash(err, origin));
  process.on('unhandledRejection', (reason) => crash(reason, 'unhandledRejection'));
  return crash;
}

function validate(file: string): number {
  try {
    loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stdout.write(`${formatProblem(p)}\n`);
      process.stdout.write(`${err.problems.length} problem(s) found\n`);
      return EXIT.failure;
    }
    throw err;
  }
  process.stdout.write(`${file}: OK\n`);
  return EXIT.ok;
}

async function hashPasswordCommand(): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (password.length === 0) {
    process.stderr.write('tidegate hash-password: no password on standard input\n');
    return EXIT.usage;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return EXIT.ok;
}

/**
 * `tidegate replay`: readings as JSON lines in (a file or stdin), output records as JSON lines on
 * stdout, warnings on stderr. Output waits for stdout to drain, so memory stays flat on long inputs.
 */
async function replayCommand(rulesFile: string | undefined, input: string | undefined): Promise<number> {
  if (!rulesFile) {
    process.stderr.write(`tidegate replay: --rules FILE is required\n\n${USAGE}`);
    return EXIT.usage;
  }
  let rules: ReturnType<typeof loadRulesFile>;
  try {
    rules = loadRulesFile(rulesFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.config;
    }
    throw err;
  }
  const source = input === undefined || input === '-' ? process.stdin : createReadStream(input);
  const failed = new Promise<never>((_, reject) => source.once('error', reject));
  const out = new LineWriter(process.stdout);
  const lines = createInterface({ input: source, crlfDelay: Number.POSITIVE_INFINITY });
  async function* paced(): AsyncGenerator<string> {
    for await (const line of lines) {
      yield line;
      await out.ready();
    }
  }
  let summary: Awaited<ReturnType<typeof replay>>;
  try {
    summary = await Promise.race([
      replay(
        paced(),
        compileRules(rules),
        (line) => out.write(line),
        (msg) => process.stderr.write(`tidegate replay: ${msg}\n`),
      ),
      failed,
    ]);
  } catch (err) {
    process.stderr.write(`tidegate replay: ${(err as Error).message}\n`);
    return EXIT.failure;
  }
  await out.end();
  process.stderr.write(
    `tidegate replay: ${summary.readings} readings, ${summary.rejected} rejected, ${summary.duplicates} duplicates, ${summary.records} records\n`,
  );
  return EXIT.ok;
}

/**
 * `tidegate backtest`: rules of a file (or one of them) over the readings stored in a range, read
 * from the store file read-only, so it runs beside the gateway. Records as JSON lines on stdout
 * (as `tidegate replay` prints them), the summary on stderr.
 */
async function backtestCommand(args: {
  rules: string | undefined;
  rule: string | undefined;
  from: string | undefined;
  to: string | undefined;
  db: string | undefined;
  config: string;
}): Promise<number> {
  const usage = (message: string) => {
    process.stderr.write(`tidegate backtest: ${message}\n\n${USAGE}`);
    return EXIT.usage;
  };
  if (!args.rules) return usage('--rules FILE is required');
  if (args.from === undefined || args.to === undefined) return usage('--from and --to are required');
  const from = parseTimeText(args.from);
  const to = parseTimeText(args.to);
  if (from === null || to === null) {
    return usage(
      `expected ISO-8601 with Z or ±HH:MM, or epoch milliseconds: ${from === null ? args.from : args.to}`,
    );
  }
  if (from >= to) return usage('--from must be before --to');
  let specs: ReturnType<typeof loadRulesFile>;
  let db = args.db;
  try {
    specs = loadRulesFile(args.rules);
    db ??= loadConfig(args.config).store.path;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.config;
    }
    throw err;
  }
  if (args.rule !== undefined) {
    const one = specs.filter((r) => r.id === args.rule);
    if (one.length === 0) {
      return usage(
        `no rule ${args.rule} in ${args.rules} (it has ${specs.map((r) => r.id).join(', ') || 'none'})`,
      );
    }
    specs = one;
  }
  const out = new LineWriter(process.stdout);
  let summary: Awaited<ReturnType<typeof backtestStore>>;
  try {
    summary = await backtestStore(
      db,
      compileRules(specs),
      { from, to },
      {
        emit: (line) => out.write(line),
        ready: () => out.ready(),
      },
    );
  } catch (err) {
    process.stderr.write(`tidegate backtest: ${(err as Error).message}\n`);
    return err instanceof HistoryOpenError ? EXIT.store : EXIT.failure;
  }
  await out.end();
  const d = summary.decisions;
  process.stderr.write(
    `tidegate backtest: ${summary.readings} readings, ${summary.windows} windows, ${summary.results} results, ` +
      `${d.firing} firing, ${d.ok} ok, ${summary.late} late\n`,
  );
  return EXIT.ok;
}

/** Buffers lines into large writes and reports when the stream wants a pause. */
class LineWriter {
  private buffer: string[] = [];
  private size = 0;
  private blocked: Promise<void> | null = null;

  constructor(private readonly stream: NodeJS.WritableStream) {}

  write(line: string): void {
    this.buffer.push(line);
    this.size += line.length + 1;
    if (this.size >= 64 * 1024) this.push();
  }

  ready(): Promise<void> {
    return this.blocked ?? Promise.resolve();
  }

  async end(): Promise<void> {
    this.push();
    await this.ready();
  }

  private push(): void {
    if (this.buffer.length === 0) return;
    const chunk = `${this.buffer.join('\n')}\n`;
    this.buffer = [];
    this.size = 0;
    if (!this.stream.write(chunk) && !this.blocked) {
      this.blocked = new Promise((resolve) =>
        this.stream.once('drain', () => {
          this.blocked = null;
          resolve();
        }),
      );
    }
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        rules: { type: 'string', short: 'r' },
        input: { type: 'string', short: 'i' },
        rule: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        db: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`tidegate: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  const file = configPath(values.config as string | undefined);
  switch (command) {
    case 'run':
      return run(file);
    case 'validate':
      return validate(file);
    case 'hash-password':
      return hashPasswordCommand();
    case 'replay':
      return replayCommand(values.rules as string | undefined, values.input as string | undefined);
    case 'backtest':
      return backtestCommand({
        rules: values.rules as string | undefined,
        rule: values.rule as string | undefined,
        from: values.from as string | undefined,
        to: values.to as string | undefined,
        db: values.db as string | undefined,
        config: file,
      });
    default:
      process.stderr.write(`tidegate: unknown command "${command}"\n\n${USAGE}`);
      return EXIT.usage;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Give pino a tick to drain, then leave even if a stray handle remains.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    process.stderr.write(`tidegate: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(EXIT.failure);
  },
);
