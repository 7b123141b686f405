/** The expression language (SPEC §2 "Expressions"), globs (fine print 13) and their errors. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkCondition, compileCondition, ExpressionError } from '../../src/engine/expression.js';
import { compileGlob } from '../../src/engine/glob.js';

const names = ['a', 'b', 'c'];
const NULL = Number.NaN;
function ev(text: string, a: number, b = 0, c = 0): boolean {
  return compileCondition(text, names)([a, b, c]);
}

describe('expressions', () => {
  it('arithmetic with precedence, unary minus, parentheses, functions', () => {
    assert.equal(ev('a + b * c == 7', 1, 2, 3), true);
    assert.equal(ev('(a + b) * c == 9', 1, 2, 3), true);
    assert.equal(ev('-a - -b == 1', 1, 2), true);
    assert.equal(ev('a / b == 2.5', 5, 2), true);
    assert.equal(ev('abs(a) == 3 and min(a, b, c) == -3 and max(a, b) == 4', -3, 4, 1), true);
    assert.equal(ev('1.5e3 == a and .5 == b', 1500, 0.5), true);
    assert.equal(ev('a - b - c == -4', 1, 2, 3), true, 'left associative');
  });

  it('comparisons and and/or/not with the usual precedence', () => {
    assert.equal(ev('a < 1 or a > 2 and b > 0', 0, 0), true);
    assert.equal(ev('not a < 1', 0), false);
    assert.equal(ev('not (a < 1 or b < 1)', 5, 5), true);
    assert.equal(ev('a <= 1 and a >= 1 and a != 2', 1), true);
  });

  it('null makes every comparison false (also !=) and propagates through arithmetic and functions', () => {
    for (const op of ['<', '<=', '>', '>=', '==', '!=']) assert.equal(ev(`a ${op} 1`, NULL), false, op);
    assert.equal(ev('a + 1 > 0 or a * 0 == 0 or abs(a) >= 0 or max(a, 1) >= 1', NULL), false);
    assert.equal(ev('not (a > 1)', NULL), true);
  });

  it('fine print 9: division by zero is null', () => {
    assert.equal(ev('a / b > 0 or a / b <= 0', 1, 0), false);
    assert.equal(ev('0 / b == 0', 0, 0), false);
  });

  it('reports syntax errors and unknown names with their position', () => {
    const cases: [string, RegExp, number][] = [
      ['a >', /expected a number, a name or '\('/, 3],
      ['a > 1 and', /expected a number/, 9],
      ['(a > 1', /expected '\)'/, 6],
      ['a = 1', /use '=='/, 2],
      ['a && b', /use 'and', 'or', 'not'/, 2],
      ['d > 1', /unknown name 'd'/, 0],
      ['sqrt(a) > 1', /unknown function 'sqrt'/, 0],
      ['a + 1', /must be a condition/, 0],
      ['a > 1 + (b < 2)', /needs a number, found a condition/, 8],
      ['a < b < c', /cannot be chained/, 6],
      ['abs(a, b) > 1', /exactly 1 argument/, 0],
      ['', /empty/, 0],
      ['a > 1 b', /expected an operator or the end/, 6],
    ];
    for (const [text, re, pos] of cases) {
      assert.throws(
        () => compileCondition(text, names),
        (e: unknown) => e instanceof ExpressionError && re.test(e.message) && e.position === pos,
        text,
      );
    }
    assert.match(
      checkCondition('value > x', ['value']) ?? '',
      /unknown name 'x' \(known: value\) at position 9/,
    );
  });

  it('never evaluates JavaScript', () => {
    assert.notEqual(checkCondition('constructor > 1', ['value']), null);
    assert.notEqual(checkCondition('process.exit(1) > 0', ['value']), null);
    assert.notEqual(checkCondition('value > 1; 1', ['value']), null);
  });
});

describe('globs (fine print 13)', () => {
  it('* and ? only, whole name, case-sensitive; lists of globs', () => {
    const m = compileGlob('boiler-?');
    assert.equal(m('boiler-1'), true);
    assert.equal(m('boiler-10'), false);
    assert.equal(m('Boiler-1'), false);
    const star = compileGlob('*temp*');
    assert.equal(star('air.temperature'), true);
    assert.equal(star('humidity'), false);
    assert.equal(compileGlob('boiler')('boiler-1'), false, 'whole name');
    assert.equal(compileGlob('a.b')('aXb'), false, '. is literal');
    assert.equal(compileGlob('[ab]')('a'), false, '[ ] is literal');
    assert.equal(compileGlob('[ab]')('[ab]'), true);
    const list = compileGlob(['boiler-*', 'pump-?']);
    assert.equal(list('pump-3'), true);
    assert.equal(list('boiler-east'), true);
    assert.equal(list('fan-1'), false);
    assert.equal(compileGlob(['x', 'y'])('y'), true);
  });
});
