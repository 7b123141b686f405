import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  anyTopicMatches,
  filterWithin,
  isValidTopicFilter,
  topicMatches,
} from '../../src/sources/topic-filter.js';

describe('isValidTopicFilter', () => {
  it('accepts plain topics and well-placed wildcards', () => {
    for (const f of [
      'a',
      'a/b/c',
      '#',
      '+',
      'sensors/#',
      'sensors/+/temp',
      '+/+',
      '/a',
      'a/',
      '$SYS/#',
      'a//b',
    ]) {
      assert.equal(isValidTopicFilter(f), true, f);
    }
  });

  it('refuses # not at the end, wildcards inside a level, and the empty filter', () => {
    for (const f of ['', '#/a', 'a/#/b', 'a#', 'a/b#', 'a+/b', 'a/+b', '++', '##']) {
      assert.equal(isValidTopicFilter(f), false, f);
    }
  });
});

describe('topicMatches', () => {
  const cases: [string, string, boolean][] = [
    ['a/b/c', 'a/b/c', true],
    ['a/b/c', 'a/b', false],
    ['a/b', 'a/b/c', false],
    ['a/+/c', 'a/x/c', true],
    ['a/+/c', 'a/x/y/c', false],
    ['a/+', 'a/', true], // + matches an empty level
    ['+/+', '/x', true],
    ['a/#', 'a', true], // # also matches the parent level (MQTT 3.1.1 §4.7.1.2)
    ['a/#', 'a/b/c/d', true],
    ['a/#', 'ab/c', false],
    ['#', 'anything/at/all', true],
    ['+', 'a/b', false],
    ['sensors/+/temp', 'sensors/boiler-1/temp', true],
    ['sensors/+/temp', 'sensors/boiler-1/hum', false],
    ['A/b', 'a/b', false], // case-sensitive
  ];
  for (const [filter, topic, expected] of cases) {
    it(`${filter} ${expected ? 'matches' : 'does not match'} ${topic}`, () => {
      assert.equal(topicMatches(filter, topic), expected);
    });
  }

  it('never matches $ topics with a leading wildcard', () => {
    assert.equal(topicMatches('#', '$SYS/broker/uptime'), false);
    assert.equal(topicMatches('+/broker/uptime', '$SYS/broker/uptime'), false);
    assert.equal(topicMatches('+/#', '$SYS/x'), false);
  });

  it('matches $ topics with a filter that names the $ level', () => {
    assert.equal(topicMatches('$SYS/#', '$SYS/broker/uptime'), true);
    assert.equal(topicMatches('$SYS/+/uptime', '$SYS/broker/uptime'), true);
  });

  it('anyTopicMatches is true when one filter of the list matches', () => {
    assert.equal(anyTopicMatches(['a/#', 'b/+'], 'b/x'), true);
    assert.equal(anyTopicMatches(['a/#', 'b/+'], 'c/x'), false);
    assert.equal(anyTopicMatches([], 'a'), false);
  });
});

describe('filterWithin', () => {
  const cases: [string, string, boolean][] = [
    ['sensors/+/temp', 'sensors/#', true],
    ['sensors/#', 'sensors/#', true],
    ['sensors', 'sensors/#', true],
    ['#', 'sensors/#', false],
    ['sensors/a/temp', 'sensors/+/temp', true],
    ['sensors/+/temp', 'sensors/+/temp', true],
    ['sensors/+/temp', 'sensors/a/temp', false], // + can match more than a
    ['sensors/#', 'sensors/+', false],
    ['sensors/a', 'sensors/+', true],
    ['sensors/a/b', 'sensors/+', false],
    ['other/x', 'sensors/#', false],
    ['sensors/+', '#', true],
    ['#', '#', true],
  ];
  for (const [requested, allowed, expected] of cases) {
    it(`${requested} is ${expected ? '' : 'not '}within ${allowed}`, () => {
      assert.equal(filterWithin(requested, allowed), expected);
    });
  }

  it('does not count $ topics as within a leading wildcard', () => {
    assert.equal(filterWithin('$SYS/#', '#'), false);
    assert.equal(filterWithin('$SYS/x', '+/x'), false);
    assert.equal(filterWithin('$SYS/x', '$SYS/#'), true);
  });

  it('agrees with topicMatches: every topic of a within-filter is matched by the allowed one', () => {
    const topics = ['sensors', 'sensors/a', 'sensors/a/temp', 'sensors/b/hum', 'other/x', 'a/b/c/d'];
    const filters = ['#', 'sensors/#', 'sensors/+', 'sensors/+/temp', 'sensors/a/temp', '+/+', 'other/+'];
    for (const requested of filters) {
      for (const allowed of filters) {
        if (!filterWithin(requested, allowed)) continue;
        for (const t of topics) {
          if (topicMatches(requested, t)) {
            assert.ok(topicMatches(allowed, t), `${requested} within ${allowed}, but ${t} escapes`);
          }
        }
      }
    }
  });
});

/** The split-based definition topicMatches had before it walked the strings: the reference. */
function topicMatchesBySplit(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

describe('topicMatches, against the split-based definition', () => {
  // Few distinct levels, so that filters and topics often share them; '' and '$…' for the edges.
  const level = fc.constantFrom('a', 'b', 'ab', '', '$SYS', 'x$');
  const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('/'));
  const filterLevel = fc.constantFrom('a', 'b', 'ab', '', '$SYS', '+', '#', 'a#', '+b');
  const filter = fc.array(filterLevel, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('/'));

  it('agrees on every filter (valid or not) and topic', () => {
    fc.assert(
      fc.property(filter, topic, (f, t) => topicMatches(f, t) === topicMatchesBySplit(f, t)),
      { numRuns: 20_000 },
    );
  });

  it('agrees on filters made from the topic itself, where matches are common', () => {
    const pair = topic.chain((t) =>
      fc
        .array(fc.constantFrom('keep', '+', '#', 'drop', 'other'), {
          minLength: t.split('/').length,
          maxLength: t.split('/').length,
        })
        .map((edits) => {
          const levels = t.split('/');
          const out: string[] = [];
          for (let i = 0; i < levels.length; i++) {
            const e = edits[i];
            if (e === '#') {
              out.push('#');
              break;
            }
            if (e === 'drop') continue;
            out.push(e === 'keep' ? (levels[i] as string) : e === 'other' ? 'zz' : '+');
          }
          return [out.length === 0 ? '#' : out.join('/'), t] as const;
        }),
    );
    let matched = 0;
    fc.assert(
      fc.property(pair, ([f, t]) => {
        const expected = topicMatchesBySplit(f, t);
        if (expected) matched++;
        return topicMatches(f, t) === expected;
      }),
      { numRuns: 20_000 },
    );
    assert.ok(matched > 1_000, `only ${matched} of the pairs matched: the property would test little`);
  });
});
