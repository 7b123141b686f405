import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../../src/schema/problems.js';
import {
  applyScale,
  decodeBit,
  decodeRegister,
  decodeWords,
  loadProfiles,
  parseProfileText,
  type RegisterFormat,
  shortestFloat32,
} from '../../../src/sources/modbus/profile.js';

const fmt = (f: Partial<RegisterFormat> & Pick<RegisterFormat, 'type'>): RegisterFormat => ({
  table: 'holding',
  wordOrder: 'big',
  byteOrder: 'big',
  scale: 1,
  offset: 0,
  ...f,
});

/** The registers of `bytes` (most significant first) as a device with these orders sends them. */
function registersOf(bytes: number[], wordOrder: 'big' | 'little', byteOrder: 'big' | 'little'): number[] {
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 2) {
    const [hi, lo] = [bytes[i] as number, bytes[i + 1] as number];
    words.push(byteOrder === 'big' ? (hi << 8) | lo : (lo << 8) | hi);
  }
  return wordOrder === 'big' ? words : words.reverse();
}

describe('modbus profile decoding', () => {
  it('decodes the four orderings of 0x41200000 (float32 10.0)', () => {
    const cases: [string, 'big' | 'little', 'big' | 'little', number[]][] = [
      ['ABCD', 'big', 'big', [0x4120, 0x0000]],
      ['CDAB', 'little', 'big', [0x0000, 0x4120]],
      ['BADC', 'big', 'little', [0x2041, 0x0000]],
      ['DCBA', 'little', 'little', [0x0000, 0x2041]],
    ];
    for (const [name, wordOrder, byteOrder, words] of cases)
      assert.equal(decodeWords(fmt({ type: 'float32', wordOrder, byteOrder }), words), 10, name);
  });

  it('decodes every type in every order', () => {
    const view = new DataView(new ArrayBuffer(8));
    const values: [RegisterFormat['type'], number, (v: number) => void, number][] = [
      ['int16', -12345, (v) => view.setInt16(0, v), 2],
      ['uint16', 54321, (v) => view.setUint16(0, v), 2],
      ['int32', -123456789, (v) => view.setInt32(0, v), 4],
      ['uint32', 3_000_000_000, (v) => view.setUint32(0, v), 4],
      ['float32', 230.1, (v) => view.setFloat32(0, v), 4],
      ['float64', -1234.56789012345, (v) => view.setFloat64(0, v), 8],
    ];
    for (const [type, value, write, n] of values) {
      write(value);
      const bytes = Array.from(new Uint8Array(view.buffer, 0, n));
      for (const wordOrder of ['big', 'little'] as const)
        for (const byteOrder of ['big', 'little'] as const) {
          const words = registersOf(bytes, wordOrder, byteOrder);
          assert.equal(
            decodeWords(fmt({ type, wordOrder, byteOrder }), words),
            value,
            `${type} ${wordOrder}/${byteOrder}`,
          );
        }
    }
  });

  it('reads at an offset into a longer response', () => {
    assert.equal(decodeWords(fmt({ type: 'int16' }), [1, 2, 0xfffe], 2), -2);
    assert.equal(decodeWords(fmt({ type: 'int32' }), [9, 0xffff, 0xfffd], 1), -3);
    assert.throws(() => decodeWords(fmt({ type: 'float64' }), [1, 2, 3], 0), RangeError);
  });

  it('negative int16 and int32 in little word order', () => {
    assert.equal(decodeWords(fmt({ type: 'int16' }), [0xff38]), -200);
    assert.equal(decodeWords(fmt({ type: 'int32', wordOrder: 'little' }), [0xfc18, 0xffff]), -1000);
    assert.equal(decodeWords(fmt({ type: 'uint32', wordOrder: 'little' }), [0xfc18, 0xffff]), 4294966296);
  });

  it('bool from a register bit, honouring byte order', () => {
    assert.equal(decodeWords(fmt({ type: 'bool', bit: 0 }), [0x0001]), 1);
    assert.equal(decodeWords(fmt({ type: 'bool', bit: 15 }), [0x8000]), 1);
    assert.equal(decodeWords(fmt({ type: 'bool', bit: 14 }), [0x8000]), 0);
    assert.equal(decodeWords(fmt({ type: 'bool', bit: 8, byteOrder: 'little' }), [0x0001]), 1);
  });

  it('coils and discrete inputs', () => {
    assert.equal(decodeBit({ scale: 1, offset: 0 }, [false, true], 1), 1);
    assert.equal(decodeBit({ scale: 1, offset: 0 }, [false, true], 0), 0);
    // Inverted logic through scale and offset.
    assert.equal(decodeBit({ scale: -1, offset: 1 }, [true], 0), 0);
  });

  it('scale and offset without binary noise', () => {
    assert.equal(applyScale(215, { scale: 0.1, offset: 0 }), 21.5);
    assert.equal(applyScale(3, { scale: 0.1, offset: 0 }), 0.3);
    assert.equal(applyScale(-55, { scale: 0.01, offset: 0 }), -0.55);
    assert.equal(applyScale(100, { scale: 2, offset: -40 }), 160);
    assert.equal(decodeRegister(fmt({ type: 'int16', scale: 0.1 }), [0xff9c]), -10);
    assert.equal(decodeRegister(fmt({ type: 'uint16', scale: 0.5, offset: -40 }), [100]), 10);
  });

  it('float32 as its shortest decimal', () => {
    assert.equal(shortestFloat32(Math.fround(230.1)), 230.1);
    assert.equal(shortestFloat32(Math.fround(0.95)), 0.95);
    assert.equal(shortestFloat32(Math.fround(49.98)), 49.98);
    assert.equal(shortestFloat32(Math.fround(1e-7)), 1e-7);
    assert.equal(shortestFloat32(0), 0);
    assert.ok(Number.isNaN(shortestFloat32(Number.NaN)));
  });
});

describe('modbus profile validation', () => {
  const problemsOf = (text: string) => {
    try {
      parseProfileText(text, 'devices/bad.yaml');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => ({ path: p.path.join('.'), line: p.line, message: p.message }));
    }
    assert.fail('expected a ConfigError');
  };

  it('reports every problem with its path and line', () => {
    const problems = problemsOf(
      [
        'profile: Bad Name',
        'registers:',
        '  - { metric: v, table: input, address: 0, type: float33 }',
        '  - { metric: c, table: coil, address: 1, type: uint16 }',
        '  - { metric: b, table: holding, address: 2, type: bool }',
        '  - { metric: v, table: input, address: -1, type: int16, colour: red }',
        '  - { metric: w, table: input, address: 65535, type: float32, wordOrder: middle }',
      ].join('\n'),
    );
    const byPath = new Map(problems.map((p) => [p.path, p]));
    assert.match(byPath.get('profile')?.message ?? '', /expected 1–64 characters/);
    assert.equal(byPath.get('profile')?.line, 1);
    assert.match(byPath.get('registers.0.type')?.message ?? '', /expected one of .*"float32"/);
    assert.equal(byPath.get('registers.0.type')?.line, 3);
    assert.match(byPath.get('registers.1.type')?.message ?? '', /coil holds one bit/);
    assert.match(byPath.get('registers.2.bit')?.message ?? '', /needs "bit"/);
    assert.match(byPath.get('registers.3.address')?.message ?? '', /≥ 0/);
    assert.equal(byPath.get('registers.3.colour')?.message, 'unknown key');
    assert.equal(byPath.get('registers.3.colour')?.line, 6);
    assert.match(byPath.get('registers.4.wordOrder')?.message ?? '', /"big", "little"/);
    assert.ok(problems.length >= 7, JSON.stringify(problems));
  });

  it('reports duplicate metrics and register overflow', () => {
    const problems = problemsOf(
      [
        'profile: p',
        'registers:',
        '  - { metric: v, table: input, address: 0, type: int16 }',
        '  - { metric: v, table: input, address: 1, type: int16 }',
        '  - { metric: w, table: input, address: 65534, type: float64 }',
      ].join('\n'),
    );
    assert.deepEqual(problems.map((p) => p.path).sort(), ['registers.1.metric', 'registers.2.address']);
    assert.equal(problems.find((p) => p.path === 'registers.1.metric')?.line, 4);
  });

  it('applies defaults', () => {
    const p = parseProfileText(
      'profile: p\nregisters: [{ metric: v, table: input, address: 0, type: float32 }]',
      'p.yaml',
    );
    assert.deepEqual(p.registers[0], {
      metric: 'v',
      table: 'input',
      address: 0,
      type: 'float32',
      wordOrder: 'big',
      byteOrder: 'big',
      scale: 1,
      offset: 0,
    });
    assert.equal(p.description, '');
  });

  it('loadProfiles collects the problems of every file and duplicate names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidegate-profiles-'));
    try {
      writeFileSync(
        join(dir, 'a.yaml'),
        'profile: same\nregisters: [{ metric: v, table: input, address: 0, type: int16 }]\n',
      );
      writeFileSync(
        join(dir, 'b.yaml'),
        'profile: same\nregisters: [{ metric: v, table: input, address: 0, type: int16 }]\n',
      );
      writeFileSync(join(dir, 'c.yaml'), 'profile: c\nregisters: []\n');
      writeFileSync(join(dir, 'd.yaml'), 'profile: d\nregisters: [ {\n');
      writeFileSync(join(dir, 'README.md'), '# not a profile\n');
      assert.throws(
        () => loadProfiles(dir),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          const files = err.problems.map((p) => `${p.file.slice(dir.length + 1)}:${p.path.join('.')}`);
          assert.deepEqual([...new Set(files)], ['b.yaml:profile', 'c.yaml:registers', 'd.yaml:']);
          assert.match(err.problems[0]?.message ?? '', /duplicate profile name "same" \(also in .*a\.yaml\)/);
          assert.equal(err.problems[0]?.line, 1);
          return true;
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.throws(() => loadProfiles(join(dir, 'missing')), /cannot read the device profiles directory/);
  });

  it('the shipped profiles in devices/ are valid', () => {
    const devices = fileURLToPath(new URL('../../../../devices', import.meta.url));
    const profiles = loadProfiles(devices);
    for (const name of ['eastron-sdm120', 'eastron-sdm630', 'xy-md02', 'generic'])
      assert.ok(profiles.has(name), `devices/ has no profile ${name}: ${[...profiles.keys()].join(', ')}`);
    assert.ok(profiles.size >= 5);
    const sdm120 = profiles.get('eastron-sdm120');
    assert.deepEqual(
      sdm120?.registers.find((r) => r.metric === 'total_active_energy'),
      {
        metric: 'total_active_energy',
        table: 'input',
        address: 0x156,
        type: 'float32',
        wordOrder: 'big',
        byteOrder: 'big',
        scale: 1,
        offset: 0,
        unit: 'kWh',
      },
    );
  });
});
