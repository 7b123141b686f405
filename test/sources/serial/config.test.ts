import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type SerialSourceInput, serialSourceSchema } from '../../../src/sources/serial/config.js';

const base: SerialSourceInput = { id: 'weather', type: 'serial', path: '/dev/ttyUSB0', format: 'kv' };

function problems(input: Record<string, unknown>): { path: string; message: string }[] {
  const r = serialSourceSchema.safeParse(input);
  if (r.success) return [];
  return r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

describe('serialSourceSchema', () => {
  it('fills in the defaults', () => {
    const c = serialSourceSchema.parse(base);
    assert.equal(c.baudRate, 9600);
    assert.equal(c.dataBits, 8);
    assert.equal(c.parity, 'none');
    assert.equal(c.stopBits, 1);
    assert.equal(c.delimiter, '\n');
    assert.equal(c.encoding, 'utf8');
    assert.equal(c.separator, ',');
    assert.equal(c.maxLineLength, 4096);
    assert.deepEqual(c.reopen, { min: 1000, max: 30_000 });
    assert.equal(c.device, undefined);
  });

  it('takes the SPEC §6 weather example, with numbers as text and escaped delimiters', () => {
    const c = serialSourceSchema.parse({
      id: 'weather',
      type: 'serial',
      path: '/dev/serial/by-id/usb-weather',
      baudRate: '115200',
      device: 'weather-1',
      format: 'csv',
      columns: ['temperature', 'humidity'],
      delimiter: '\\r\\n',
      reopen: { min: '250ms', max: '5s' },
    });
    assert.equal(c.baudRate, 115200);
    assert.equal(c.delimiter, '\r\n');
    assert.deepEqual(c.reopen, { min: 250, max: 5000 });
  });

  it('needs columns for csv, with at least one metric, each a valid name, none twice', () => {
    assert.deepEqual(
      problems({ ...base, format: 'csv' }).map((p) => p.path),
      ['columns'],
    );
    assert.match(
      problems({ ...base, format: 'csv', columns: ['ts', '_', ''] })[0]?.message ?? '',
      /at least one metric/,
    );
    assert.deepEqual(
      problems({ ...base, format: 'csv', columns: ['ts', 'bad name', 't', 't'] }).map((p) => p.path),
      ['columns.1', 'columns.3'],
    );
  });

  it('reports regex problems at the regex path', () => {
    const broken = problems({ ...base, format: 'regex', regex: 'T=(?<t>[0-9' });
    assert.deepEqual(
      broken.map((p) => p.path),
      ['regex'],
    );
    assert.match(broken[0]?.message ?? '', /not a valid regular expression/);
    const noMetric = problems({ ...base, format: 'regex', regex: '^(?<ts>\\d+) (?<device>\\S+)$' });
    assert.deepEqual(
      noMetric.map((p) => p.path),
      ['regex'],
    );
    assert.match(noMetric[0]?.message ?? '', /at least one named group for a metric/);
    assert.deepEqual(
      problems({ ...base, format: 'regex', regex: '(\\d+)' }).map((p) => p.path),
      ['regex'],
    );
    assert.deepEqual(
      problems({ ...base, format: 'regex' }).map((p) => p.path),
      ['regex'],
    );
    assert.deepEqual(problems({ ...base, format: 'regex', regex: 'T=(?<temperature>\\S+)' }), []);
  });

  it('refuses options of another format, unknown keys, odd serial settings and a backwards backoff', () => {
    assert.deepEqual(
      problems({ ...base, columns: ['t'] }).map((p) => p.path),
      ['columns'],
    );
    assert.deepEqual(
      problems({ ...base, regex: '(?<t>.)' }).map((p) => p.path),
      ['regex'],
    );
    assert.deepEqual(
      problems({ ...base, baud: 9600 }).map((p) => p.path),
      [''],
    );
    assert.deepEqual(
      problems({ ...base, parity: 'mark' }).map((p) => p.path),
      ['parity'],
    );
    assert.deepEqual(
      problems({ ...base, delimiter: ';' }).map((p) => p.path),
      ['delimiter'],
    );
    assert.deepEqual(
      problems({ ...base, device: 'bad device' }).map((p) => p.path),
      ['device'],
    );
    assert.deepEqual(
      problems({ ...base, reopen: { min: '10s', max: '1s' } }).map((p) => p.path),
      ['reopen.max'],
    );
  });
});
