import { pino } from 'pino';

export type Logger = pino.Logger;
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** JSON lines on stdout (journald under systemd), or on the given stream (stderr for replay). */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino(
    {
      level,
      base: { app: 'tidegate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream,
  );
}

/** A logger that writes nothing, for tests and tools. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Warns at most once per `intervalMs` for each key and reports how many were suppressed since,
 * so a flood of bad input can't flood the journal (and wear the SD card).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly intervalMs = 10_000,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', key, fields, message);
  }

  error(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('error', key, fields, message);
  }

  private write(
    level: 'warn' | 'error',
    key: string,
    fields: Record<string, unknown>,
    message: string,
  ): void {
    const t = this.now();
    const entry = this.last.get(key);
    if (entry && t - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: t, suppressed: 0 });
    if (this.last.size > 1_000) this.prune(t);
    this.log[level](suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }

  private prune(t: number): void {
    // Entries still holding a count of suppressed lines stay until that count is reported.
    for (const [k, v] of this.last)
      if (t - v.at >= this.intervalMs && v.suppressed === 0) this.last.delete(k);
  }
}
