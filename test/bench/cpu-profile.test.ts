import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type CpuProfile, formatSummary, partOf, summarize } from '../../bench/cpu-profile.js';
import { makeTempDir } from '../helpers/tmp.js';

const frame = (functionName: string, url: string, lineNumber = 0) => ({
  functionName,
  url,
  lineNumber,
  columnNumber: 0,
});

describe('cpu-profile', () => {
  it('names the part of a script by package or by folder of the built gateway', () => {
    assert.equal(
      partOf('file:///opt/tidegate/node_modules/aedes/lib/handlers/publish.js'),
      'aedes/mqtt-packet',
    );
    assert.equal(partOf('file:///opt/tidegate/node_modules/mqtt-packet/parser.js'), 'aedes/mqtt-packet');
    assert.equal(
      partOf('file:///opt/tidegate/node_modules/better-sqlite3/lib/methods/transaction.js'),
      'better-sqlite3 (js)',
    );
    assert.equal(partOf('file:///opt/tidegate/node_modules/@scope/pkg/index.js'), '@scope/pkg');
    assert.equal(partOf('file:///opt/tidegate/dist/sources/mqtt-broker.js'), 'sources');
    assert.equal(partOf('file:///opt/tidegate/dist/sources/modbus/source.js'), 'sources');
    assert.equal(partOf('file:///opt/tidegate/dist/cli.js'), 'gateway root');
    assert.equal(partOf('node:internal/streams/readable'), 'node core');
    assert.equal(partOf(''), null);
  });

  it('sums self time per part and function within the window; native time goes to its caller or to SQLite', (t) => {
    const tmp = makeTempDir();
    t.after(() => tmp.remove());
    const dir = tmp.path;
    mkdirSync(join(dir, 'dist', 'store'), { recursive: true });
    const writer = join(dir, 'dist', 'store', 'writer.js');
    // Line 2 calls a statement (SQLite's time), line 3 is JavaScript.
    writeFileSync(writer, 'function commit() {\n  this.stmt.insert.run(1, 2);\n  count++;\n}\n');
    const sources = pathToFileURL(join(dir, 'dist', 'sources', 'broker.js')).href;
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 5, 6, 7] },
        { id: 2, callFrame: frame('parse', 'file:///x/node_modules/mqtt-packet/parser.js'), children: [3] },
        { id: 3, callFrame: frame('authorizePublish', sources, 9), children: [4] },
        { id: 4, callFrame: frame('runMicrotasks', '') },
        {
          id: 5,
          callFrame: frame('commit', pathToFileURL(writer).href),
          positionTicks: [
            { line: 2, ticks: 3 },
            { line: 3, ticks: 1 },
          ],
        },
        { id: 6, callFrame: frame('(garbage collector)', '') },
        { id: 7, callFrame: frame('(idle)', '') },
      ],
      startTime: 1_000,
      endTime: 2_000,
      // Sample i lasts until sample i + 1: 100 µs each; the first and the last fall outside the window.
      samples: [2, 2, 3, 4, 5, 5, 6, 7, 3, 2],
      timeDeltas: [0, 100, 100, 100, 100, 100, 100, 100, 100, 100],
    };
    const s = summarize(profile, { from: 1_100, to: 1_900 });
    const parts = Object.fromEntries(s.parts.map((p) => [p.part, p.us]));
    assert.deepEqual(parts, {
      'aedes/mqtt-packet': 100,
      sources: 200,
      'native, from sources': 100,
      'better-sqlite3 native': 150,
      store: 50,
      GC: 100,
      idle: 100,
    });
    assert.equal(s.totalUs, 800);
    const fns = Object.fromEntries(s.functions.map((f) => [`${f.name} ${f.part}`, f.us]));
    assert.equal(fns['authorizePublish sources'], 200);
    assert.equal(fns['commit → SQLite better-sqlite3 native'], 150);
    assert.equal(fns['commit store'], 50);
    assert.equal(
      s.functions.find((f) => f.name === 'authorizePublish')?.where.endsWith('broker.js:10'),
      true,
    );

    // 100 readings: 200 µs of sources is 2,000 ns per reading; busy leaves idle out.
    const text = formatSummary(s, { readings: 100, top: 3 });
    assert.match(text, /^sources\s+2000\s+25\.0 %$/m);
    assert.match(text, /^busy \(all but idle\)\s+7000\s+87\.5 %$/m);
    assert.match(
      text,
      /^commit → SQLite\s+dist\/store\/writer\.js:1\s+better-sqlite3 native\s+1500\s+18\.8 %$/m,
    );
    assert.equal(text.includes('runMicrotasks'), false, 'only the top 3 functions are listed');
  });
});
