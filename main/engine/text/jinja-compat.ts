// Python-compatibility fix for @huggingface/jinja 0.5.11 (latest on the registry): its string
// methods `strip/lstrip/rstrip` ignore their `chars` argument and use JS trim(), so the real
// Qwen3 template's `content.lstrip('\n')` / `reasoning_content.strip('\n')` also removed spaces
// and tabs, and the prompt differed from transformers' (found by test/engine/text-template-python).
// The runtime's StringValue class is not exported, so we reach it through a rendered value and wrap
// its `builtins` getter once, replacing those three methods with Python's str semantics.
import { Environment, Interpreter, parse, tokenize } from '@huggingface/jinja';

/** Python's str.isspace() set (what strip() with no argument removes). */
const PY_WHITESPACE = new Set(
  ' \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000',
);

export function pyStrip(value: string, chars: string | null, mode: 'both' | 'left' | 'right'): string {
  // Iterate by code point so astral characters in `chars` work as in Python.
  const set = chars === null ? PY_WHITESPACE : new Set(chars);
  const cps = [...value];
  let start = 0;
  let end = cps.length;
  if (mode !== 'right') while (start < end && set.has(cps[start])) start++;
  if (mode !== 'left') while (end > start && set.has(cps[end - 1])) end--;
  return cps.slice(start, end).join('');
}

interface RuntimeValueLike {
  value: unknown;
  type: string;
}

let patched: boolean | null = null;

/** Applies the fix once; returns whether the library looked as expected and was patched. */
export function ensureJinjaPythonCompat(): boolean {
  if (patched !== null) return patched;
  patched = false;
  try {
    const probe = new Interpreter(new Environment()).run(parse(tokenize('{{ "x" }}'))) as unknown as RuntimeValueLike;
    const proto = Object.getPrototypeOf(probe) as object;
    const desc = Object.getOwnPropertyDescriptor(proto, 'builtins');
    if (probe.type !== 'StringValue' || !desc?.get) return false;
    const originalGet = desc.get;
    const sample = originalGet.call(probe) as Map<string, unknown>;
    const fnCtor = (sample.get('strip') as object | undefined)?.constructor as (new (fn: (args: RuntimeValueLike[]) => unknown) => unknown) | undefined;
    const strCtor = proto.constructor as new (v: string) => unknown;
    if (!fnCtor || typeof strCtor !== 'function') return false;
    const fixed = new WeakSet<object>();
    Object.defineProperty(proto, 'builtins', {
      configurable: true,
      get(this: RuntimeValueLike) {
        const map = originalGet.call(this) as Map<string, unknown>;
        if (!fixed.has(this)) {
          fixed.add(this);
          const self = this;
          const make = (mode: 'both' | 'left' | 'right') =>
            new fnCtor((args: RuntimeValueLike[]) => {
              const a = args[0];
              let chars: string | null = null;
              if (a !== undefined && a.type !== 'NullValue' && a.type !== 'UndefinedValue') {
                if (a.type !== 'StringValue') throw new Error('strip arg must be None or str');
                chars = a.value as string;
              }
              return new strCtor(pyStrip(self.value as string, chars, mode));
            });
          map.set('strip', make('both'));
          map.set('lstrip', make('left'));
          map.set('rstrip', make('right'));
        }
        return map;
      },
    });
    patched = true;
  } catch {
    patched = false;
  }
  return patched;
}
