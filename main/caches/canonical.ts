// Canonical JSON for cache keys: object keys sorted, `undefined` members dropped (as JSON does),
// arrays kept in order, non-finite numbers as null. Written with an explicit stack instead of
// recursion so a deeply nested request body (a JSON bomb of 100k `[`) cannot throw RangeError;
// chunks are streamed into a sink (usually a hash) so no giant intermediate string is built.
import { createHash } from 'node:crypto';

export class CanonicalizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CanonicalizeError';
  }
}

export interface CanonicalOptions {
  /** Upper bound on visited values (objects, arrays and scalars); guards CPU on huge inputs. */
  maxNodes?: number;
}

type Frame =
  | { kind: 'array'; value: unknown[]; index: number }
  | { kind: 'object'; value: Record<string, unknown>; keys: string[]; index: number };

/**
 * Streams the canonical JSON of `value` into `sink`. Throws CanonicalizeError on cycles,
 * unsupported values (functions, symbols, bigint) or when maxNodes is exceeded.
 */
export function canonicalJsonTo(value: unknown, sink: (chunk: string) => void, opts: CanonicalOptions = {}): void {
  const maxNodes = opts.maxNodes ?? 5_000_000;
  let nodes = 0;
  const stack: Frame[] = [];
  // Ancestors are tracked per path for cycle detection; a shared Set would reject legitimate
  // repeated (non-cyclic) references, which JSON.stringify accepts.
  const path = new Set<object>();

  const emitValue = (v: unknown): void => {
    if (++nodes > maxNodes) throw new CanonicalizeError('value too large to canonicalize');
    if (v === null) return sink('null');
    switch (typeof v) {
      case 'string':
        return sink(JSON.stringify(v));
      case 'number':
        return sink(Number.isFinite(v) ? JSON.stringify(v) : 'null');
      case 'boolean':
        return sink(v ? 'true' : 'false');
      case 'object': {
        if (path.has(v as object)) throw new CanonicalizeError('cyclic value');
        const toJSON = (v as { toJSON?: unknown }).toJSON;
        if (typeof toJSON === 'function') return emitValue((v as { toJSON: () => unknown }).toJSON());
        path.add(v as object);
        if (Array.isArray(v)) {
          // Fast path for token-id arrays (tens of thousands of numbers): one join instead of a
          // sink call per element. String(n) equals JSON.stringify(n) for finite numbers.
          if (v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
            nodes += v.length;
            if (nodes > maxNodes) throw new CanonicalizeError('value too large to canonicalize');
            path.delete(v);
            return sink(`[${v.join(',')}]`);
          }
          sink('[');
          stack.push({ kind: 'array', value: v, index: 0 });
        } else {
          sink('{');
          const keys = Object.keys(v as object)
            .filter((k) => (v as Record<string, unknown>)[k] !== undefined && typeof (v as Record<string, unknown>)[k] !== 'function')
            .sort();
          stack.push({ kind: 'object', value: v as Record<string, unknown>, keys, index: 0 });
        }
        return;
      }
      default:
        throw new CanonicalizeError(`unsupported value of type ${typeof v}`);
    }
  };

  emitValue(value);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.kind === 'array') {
      if (top.index >= top.value.length) {
        sink(']');
        path.delete(top.value);
        stack.pop();
        continue;
      }
      if (top.index > 0) sink(',');
      const item = top.value[top.index++];
      // JSON.stringify writes undefined/functions in arrays as null
      emitValue(item === undefined || typeof item === 'function' ? null : item);
    } else {
      if (top.index >= top.keys.length) {
        sink('}');
        path.delete(top.value);
        stack.pop();
        continue;
      }
      if (top.index > 0) sink(',');
      const k = top.keys[top.index++];
      sink(JSON.stringify(k));
      sink(':');
      emitValue(top.value[k]);
    }
  }
}

export function canonicalJson(value: unknown, opts?: CanonicalOptions): string {
  const parts: string[] = [];
  canonicalJsonTo(value, (c) => parts.push(c), opts);
  return parts.join('');
}

/** sha256 hex of the canonical JSON of `value`, without materializing the string. */
export function canonicalDigest(value: unknown, opts?: CanonicalOptions): string {
  const h = createHash('sha256');
  // Buffer small chunks: one update per token is slow on large inputs.
  let buf = '';
  canonicalJsonTo(
    value,
    (c) => {
      buf += c;
      if (buf.length >= 16384) {
        h.update(buf, 'utf8');
        buf = '';
      }
    },
    opts,
  );
  h.update(buf, 'utf8');
  return h.digest('hex');
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
