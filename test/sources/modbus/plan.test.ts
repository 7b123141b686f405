import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planReads } from '../../../src/sources/modbus/plan.js';
import { profileSchema } from '../../../src/sources/modbus/profile.js';

const registers = (list: unknown[]) => profileSchema.parse({ profile: 'p', registers: list }).registers;
const summary = (rs: ReturnType<typeof planReads>) =>
  rs.map(
    (r) =>
      `${r.table}:${r.address}+${r.count}[${r.registers.map((x) => `${x.register.metric}@${x.offset}`).join(',')}]`,
  );

describe('modbus request planning (coalescing)', () => {
  it('joins neighbours and fills small gaps, per table', () => {
    const plan = planReads(
      registers([
        { metric: 'f', table: 'input', address: 0x46, type: 'float32' },
        { metric: 'v', table: 'input', address: 0, type: 'float32' },
        { metric: 'i', table: 'input', address: 6, type: 'float32' },
        { metric: 'p', table: 'input', address: 12, type: 'float32' },
        { metric: 'h', table: 'holding', address: 12, type: 'uint16' },
        { metric: 'h2', table: 'holding', address: 13, type: 'int32' },
        { metric: 'c', table: 'coil', address: 3, type: 'bool' },
        { metric: 'c2', table: 'coil', address: 100, type: 'bool' },
        { metric: 'd', table: 'discrete', address: 0, type: 'bool' },
      ]),
      { maxRegisters: 125, maxGap: 8 },
    );
    assert.deepEqual(summary(plan), [
      'holding:12+3[h@0,h2@1]',
      'input:0+14[v@0,i@6,p@12]',
      'input:70+2[f@0]',
      'coil:3+98[c@0,c2@97]',
      'discrete:0+1[d@0]',
    ]);
  });

  it('respects maxGap exactly', () => {
    const list = registers([
      { metric: 'a', table: 'input', address: 0, type: 'int16' },
      { metric: 'b', table: 'input', address: 9, type: 'int16' },
    ]);
    assert.equal(planReads(list, { maxRegisters: 125, maxGap: 8 }).length, 1);
    assert.equal(planReads(list, { maxRegisters: 125, maxGap: 7 }).length, 2);
    assert.equal(planReads(list, { maxRegisters: 125, maxGap: 0 }).length, 2);
  });

  it('splits at maxRegisters and never cuts a value', () => {
    const list = registers(
      Array.from({ length: 100 }, (_, i) => ({
        metric: `m${i}`,
        table: 'holding',
        address: i * 2,
        type: 'float32',
      })),
    );
    const plan = planReads(list, { maxRegisters: 125, maxGap: 8 });
    assert.deepEqual(
      plan.map((r) => [r.address, r.count]),
      [
        [0, 124],
        [124, 76],
      ],
    );
    const small = planReads(list, { maxRegisters: 5, maxGap: 8 });
    assert.ok(small.every((r) => r.count <= 5));
    assert.equal(small.length, 50);
    assert.equal(
      small.reduce((n, r) => n + r.registers.length, 0),
      100,
    );
  });

  it('overlapping registers share words', () => {
    const plan = planReads(
      registers([
        { metric: 'alarm', table: 'holding', address: 5, type: 'bool', bit: 3 },
        { metric: 'run', table: 'holding', address: 5, type: 'bool', bit: 0 },
        { metric: 'wide', table: 'holding', address: 4, type: 'float64' },
      ]),
      { maxRegisters: 125, maxGap: 0 },
    );
    assert.deepEqual(summary(plan), ['holding:4+4[wide@0,alarm@1,run@1]']);
  });

  it('no coalescing with maxGap 0 and isolated registers', () => {
    const plan = planReads(
      registers([
        { metric: 'a', table: 'input', address: 0, type: 'int16' },
        { metric: 'b', table: 'input', address: 2, type: 'int16' },
      ]),
      { maxRegisters: 125, maxGap: 0 },
    );
    assert.equal(plan.length, 2);
  });
});
