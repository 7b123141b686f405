/**
 * Process-level errors in `tidegate run`: logged as fatal, the store flushed if that is quick,
 * exit 1 so that systemd (Restart=on-failure) restarts the gateway. The bug is planted by a module
 * preloaded with `--import`; it strikes on SIGUSR2, so the test chooses when (after start).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { connectAsync } from 'mqtt';
import { recentHour } from '../helpers/event-time.js';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';

const T0 = recentHour();

const BUGS = {
  uncaughtException: `process.on('SIGUSR2', () => { throw new Error('boom: a bug nobody caught'); });`,
  unhandledRejection: `process.on('SIGUSR2', () => { Promise.reject(new Error('boom: a promise nobody awaited')); });`,
};

async function ingested(gw: RunningGateway): Promise<number> {
  const text = await (await gw.api('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith('tidegate_readings_ingested_total{source="local"}'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('tidegate run after an unexpected process-level error', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-crash-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [kind, bug] of Object.entries(BUGS)) {
    it(`${kind}: logs it as fatal, flushes the store and exits 1 within a few seconds`, async () => {
      const db = join(dir, `${kind}.db`);
      const config = join(dir, `${kind}.yaml`);
      const preload = join(dir, `${kind}.mjs`);
      writeFileSync(preload, `${bug}\n`);
      // A long flushInterval: the reading waits in memory until the stop after the crash flushes it.
      writeFileSync(
        config,
        `api: { port: 0 }
broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback }
sources:
  - { id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }
store: { path: ${db}, flushInterval: 1h }
rules: []
`,
      );
      const gw = await startGateway(config, {
        env: { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` },
      });
      try {
        const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
        await client.publishAsync('sensors/c-1/temperature', JSON.stringify({ value: 21.5, ts: T0 }));
        await client.endAsync();
        await eventually(async () => ((await ingested(gw)) === 1 ? true : undefined), 5_000, 'the reading');
        const { code, ms } = await gw.stop('SIGUSR2');
        assert.equal(code, 1, gw.stderr.join('\n'));
        assert.ok(ms < 5_000, `exited after ${ms} ms`);
      } finally {
        await gw.stop('SIGKILL');
      }
      const fatal = gw.logs.find((l) => l.level === 'fatal');
      assert.ok(fatal, `no fatal log line in:\n${gw.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      assert.match((fatal['err'] as { message?: string } | undefined)?.message ?? '', /^boom: /);
      const stored = new Database(db, { readonly: true });
      try {
        assert.equal(stored.prepare('SELECT count(*) FROM readings').pluck().get(), 1, 'flushed by the stop');
      } finally {
        stored.close();
      }
    });
  }
});
