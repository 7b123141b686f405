/**
 * The expression language of `where`, `when` and `clear` (SPEC §2): numbers, names, `+ - * /`, unary
 * minus, `abs() min() max()`, comparisons, `and or not`, parentheses. Our own tokenizer and
 * recursive-descent parser compile the text to closures; user text is never evaluated as JavaScript.
 *
 * Types are checked at compile time (a number where a condition is expected is an error with its
 * position), so evaluation needs no type tests. `null` is carried as NaN inside the closures: NaN
 * already propagates through arithmetic and makes `<`, `<=`, `>`, `>=`, `==` false, which is what the
 * SPEC asks of `null`; only `!=` needs care. Division by zero yields null (fine print 9).
 */

/** A numeric closure over the slots of an environment; NaN stands for null. */
export type NumberFn = (env: ArrayLike<number>) => number;
/** A condition closure. */
export type ConditionFn = (env: ArrayLike<number>) => boolean;

export class ExpressionError extends Error {
  constructor(
    message: string,
    /** 0-based character offset in the source text. */
    readonly position: number,
  ) {
    super(message);
  }
}

type TokenKind = 'number' | 'name' | 'op' | 'lparen' | 'rparen' | 'comma' | 'end';

interface Token {
  kind: TokenKind;
  text: string;
  pos: number;
  value: number;
}

const KEYWORDS = new Set(['and', 'or', 'not']);
const FUNCTIONS = new Set(['abs', 'min', 'max']);
/** Names the language reserves; aliases may not take them. */
export const RESERVED_NAMES: ReadonlySet<string> = KEYWORDS;

const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_]/;
const NUMBER_RE = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if ((c >= '0' && c <= '9') || (c === '.' && /\d/.test(text[i + 1] ?? ''))) {
      NUMBER_RE.lastIndex = i;
      const m = NUMBER_RE.exec(text);
      const t = (m as RegExpExecArray)[0];
      tokens.push({ kind: 'number', text: t, pos: i, value: Number(t) });
      i += t.length;
      if (i < text.length && NAME_PART.test(text[i] as string)) {
        throw new ExpressionError(`unexpected '${text[i]}' right after the number ${t}`, i);
      }
      continue;
    }
    if (NAME_START.test(c)) {
      let j = i + 1;
      while (j < text.length && NAME_PART.test(text[j] as string)) j++;
      tokens.push({ kind: 'name', text: text.slice(i, j), pos: i, value: 0 });
      i = j;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (two === '<=' || two === '>=' || two === '==' || two === '!=') {
      tokens.push({ kind: 'op', text: two, pos: i, value: 0 });
      i += 2;
      continue;
    }
    if (c === '<' || c === '>' || c === '+' || c === '-' || c === '*' || c === '/') {
      tokens.push({ kind: 'op', text: c, pos: i, value: 0 });
      i++;
      continue;
    }
    if (c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: c === '(' ? 'lparen' : c === ')' ? 'rparen' : 'comma', text: c, pos: i, value: 0 });
      i++;
      continue;
    }
    const hint =
      c === '='
        ? " (use '==' to compare)"
        : c === '&' || c === '|' || c === '!'
          ? " (use 'and', 'or', 'not')"
          : '';
    throw new ExpressionError(`unexpected character '${c}'${hint}`, i);
  }
  tokens.push({ kind: 'end', text: 'end of expression', pos: text.length, value: 0 });
  return tokens;
}

type Node = { t: 'num'; pos: number; fn: NumberFn } | { t: 'bool'; pos: number; fn: ConditionFn };

function nullIfNaN(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

class Parser {
  private i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly slots: ReadonlyMap<string, number>,
    private readonly namesHint: string,
  ) {}

  private peek(): Token {
    return this.tokens[this.i] as Token;
  }

  private next(): Token {
    return this.tokens[this.i++] as Token;
  }

  private describe(t: Token): string {
    return t.kind === 'end' ? 'the end of the expression' : `'${t.text}'`;
  }

  parseTop(): Node {
    const node = this.parseOr();
    const t = this.peek();
    if (t.kind !== 'end')
      throw new ExpressionError(`expected an operator or the end, found ${this.describe(t)}`, t.pos);
    return node;
  }

  private asBool(n: Node, what: string): ConditionFn {
    if (n.t !== 'bool')
      throw new ExpressionError(`${what} needs a condition (a comparison), found a number`, n.pos);
    return n.fn;
  }

  private asNum(n: Node, what: string): NumberFn {
    if (n.t !== 'num') throw new ExpressionError(`${what} needs a number, found a condition`, n.pos);
    return n.fn;
  }

  private parseOr(): Node {
    let left = this.parseAnd();
    while (this.peek().kind === 'name' && this.peek().text === 'or') {
      const op = this.next();
      const a = this.asBool(left, "'or'");
      const b = this.asBool(this.parseAnd(), "'or'");
      left = { t: 'bool', pos: op.pos, fn: (e) => a(e) || b(e) };
    }
    return left;
  }

  private parseAnd(): Node {
    let left = this.parseNot();
    while (this.peek().kind === 'name' && this.peek().text === 'and') {
      const op = this.next();
      const a = this.asBool(left, "'and'");
      const b = this.asBool(this.parseNot(), "'and'");
      left = { t: 'bool', pos: op.pos, fn: (e) => a(e) && b(e) };
    }
    return left;
  }

  private parseNot(): Node {
    const t = this.peek();
    if (t.kind === 'name' && t.text === 'not') {
      this.next();
      const a = this.asBool(this.parseNot(), "'not'");
      return { t: 'bool', pos: t.pos, fn: (e) => !a(e) };
    }
    return this.parseComparison();
  }

  private parseComparison(): Node {
    const left = this.parseAdditive();
    const t = this.peek();
    if (t.kind !== 'op' || !['<', '<=', '>', '>=', '==', '!='].includes(t.text)) return left;
    this.next();
    const a = this.asNum(left, `'${t.text}'`);
    const b = this.asNum(this.parseAdditive(), `'${t.text}'`);
    const after = this.peek();
    if (after.kind === 'op' && ['<', '<=', '>', '>=', '==', '!='].includes(after.text)) {
      throw new ExpressionError(`comparisons cannot be chained; join them with 'and'`, after.pos);
    }
    let fn: ConditionFn;
    switch (t.text) {
      case '<':
        fn = (e) => a(e) < b(e);
        break;
      case '<=':
        fn = (e) => a(e) <= b(e);
        break;
      case '>':
        fn = (e) => a(e) > b(e);
        break;
      case '>=':
        fn = (e) => a(e) >= b(e);
        break;
      case '==':
        fn = (e) => a(e) === b(e);
        break;
      default:
        // NaN !== x is true in JavaScript, but a null in a comparison makes it false.
        fn = (e) => {
          const x = a(e);
          const y = b(e);
          return !Number.isNaN(x) && !Number.isNaN(y) && x !== y;
        };
    }
    return { t: 'bool', pos: t.pos, fn };
  }

  private parseAdditive(): Node {
    let left = this.parseMultiplicative();
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'op' || (t.text !== '+' && t.text !== '-')) return left;
      this.next();
      const a = this.asNum(left, `'${t.text}'`);
      const b = this.asNum(this.parseMultiplicative(), `'${t.text}'`);
      left = { t: 'num', pos: t.pos, fn: t.text === '+' ? (e) => a(e) + b(e) : (e) => a(e) - b(e) };
    }
  }

  private parseMultiplicative(): Node {
    let left = this.parseUnary();
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'op' || (t.text !== '*' && t.text !== '/')) return left;
      this.next();
      const a = this.asNum(left, `'${t.text}'`);
      const b = this.asNum(this.parseUnary(), `'${t.text}'`);
      left = {
        t: 'num',
        pos: t.pos,
        fn:
          t.text === '*'
            ? (e) => a(e) * b(e)
            : (e) => {
                const d = b(e);
                return d === 0 ? Number.NaN : a(e) / d;
              },
      };
    }
  }

  private parseUnary(): Node {
    const t = this.peek();
    if (t.kind === 'op' && (t.text === '-' || t.text === '+')) {
      this.next();
      const a = this.asNum(this.parseUnary(), `unary '${t.text}'`);
      return { t: 'num', pos: t.pos, fn: t.text === '-' ? (e) => -a(e) : a };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Node {
    const t = this.next();
    if (t.kind === 'number') {
      const v = t.value;
      return { t: 'num', pos: t.pos, fn: () => v };
    }
    if (t.kind === 'lparen') {
      const inner = this.parseOr();
      const close = this.next();
      if (close.kind !== 'rparen')
        throw new ExpressionError(`expected ')', found ${this.describe(close)}`, close.pos);
      return { ...inner, pos: t.pos };
    }
    if (t.kind === 'name') {
      if (KEYWORDS.has(t.text)) throw new ExpressionError(`expected a value, found '${t.text}'`, t.pos);
      if (this.peek().kind === 'lparen') return this.parseCall(t);
      const slot = this.slots.get(t.text);
      if (slot === undefined) {
        if (FUNCTIONS.has(t.text))
          throw new ExpressionError(`${t.text} is a function: write ${t.text}(…)`, t.pos);
        throw new ExpressionError(`unknown name '${t.text}' (known: ${this.namesHint})`, t.pos);
      }
      return { t: 'num', pos: t.pos, fn: (e) => e[slot] as number };
    }
    throw new ExpressionError(`expected a number, a name or '(', found ${this.describe(t)}`, t.pos);
  }

  private parseCall(name: Token): Node {
    if (!FUNCTIONS.has(name.text)) {
      throw new ExpressionError(`unknown function '${name.text}' (known: abs, min, max)`, name.pos);
    }
    this.next(); // (
    const args: NumberFn[] = [];
    if (this.peek().kind !== 'rparen') {
      for (;;) {
        args.push(this.asNum(this.parseOr(), `argument ${args.length + 1} of ${name.text}()`));
        const sep = this.next();
        if (sep.kind === 'rparen') break;
        if (sep.kind !== 'comma')
          throw new ExpressionError(`expected ',' or ')', found ${this.describe(sep)}`, sep.pos);
      }
    } else {
      this.next();
    }
    if (name.text === 'abs') {
      if (args.length !== 1) {
        throw new ExpressionError(`abs() takes exactly 1 argument, found ${args.length}`, name.pos);
      }
      const a = args[0] as NumberFn;
      return { t: 'num', pos: name.pos, fn: (e) => Math.abs(a(e)) };
    }
    if (args.length === 0) throw new ExpressionError(`${name.text}() needs at least 1 argument`, name.pos);
    // Math.min/max already return NaN (null) when any argument is NaN: null propagates.
    const pick = name.text === 'min' ? Math.min : Math.max;
    if (args.length === 1) return { t: 'num', pos: name.pos, fn: args[0] as NumberFn };
    if (args.length === 2) {
      const [a, b] = args as [NumberFn, NumberFn];
      return { t: 'num', pos: name.pos, fn: (e) => pick(a(e), b(e)) };
    }
    return {
      t: 'num',
      pos: name.pos,
      fn: (e) => {
        let r = (args[0] as NumberFn)(e);
        for (let k = 1; k < args.length; k++) r = pick(r, (args[k] as NumberFn)(e));
        return r;
      },
    };
  }
}

/**
 * Compiles a condition. `names` lists the names the expression may use, in slot order: the closure
 * reads name `names[k]` from `env[k]`. Throws ExpressionError with the position of the first problem.
 */
export function compileCondition(text: string, names: readonly string[]): ConditionFn {
  const slots = new Map<string, number>();
  names.forEach((n, k) => {
    slots.set(n, k);
  });
  const hint = names.length === 0 ? 'none' : names.join(', ');
  const tokens = tokenize(text);
  if (tokens.length === 1) throw new ExpressionError('the expression is empty', 0);
  const parser = new Parser(tokens, slots, hint);
  const node = parser.parseTop();
  if (node.t !== 'bool') {
    throw new ExpressionError('the expression must be a condition (e.g. a comparison), found a number', 0);
  }
  return node.fn;
}

/** The problem with an expression as one line, or null when it compiles. */
export function checkCondition(text: string, names: readonly string[]): string | null {
  try {
    compileCondition(text, names);
    return null;
  } catch (e) {
    if (e instanceof ExpressionError) return `${e.message} at position ${e.position + 1} of "${text}"`;
    throw e;
  }
}

export { nullIfNaN };
