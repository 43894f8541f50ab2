// Compiles a JSON Schema (what OpenAI structured outputs, zod 4, the AI SDK and Pydantic v2 emit)
// into the value graph the recognizer walks. Pure TS, no MLX: the server compiles every schema
// once to reject what we cannot enforce (400) before any engine work, the engine compiles it again.
//
// Semantics (documented in the README's API section and ./README.md):
// - A value node is a set of alternatives ("alts"): object, array, string, number/integer, or a
//   literal (enum/const values, true/false/null) matched as its canonical JSON text
//   (JSON.stringify, so no whitespace inside enum objects/arrays, numbers as JS prints them).
// - anyOf / oneOf / type arrays / nullable are unions of alts (oneOf is generated as anyOf).
//   allOf members are merged into one schema first (mergeAllOf), `not` subtracts types/values.
// - Objects: keys are emitted in the schema's `properties` order (like OpenAI and llama.cpp);
//   required keys are always present, optional ones may be skipped. additionalProperties: false —
//   or absent while `properties` is given (as llama.cpp and outlines do: the model never invents
//   keys) — allows no other keys; true, a schema, patternProperties or propertyNames allow extra,
//   distinct keys. A free-key language with few names (an enum of names) becomes declared keys.
// - Strings: pattern/format become one automaton (regex.ts, formats.ts) checked per character,
//   with min/maxLength. Numbers: bounds exactly (digit by digit), multipleOf for integers.
// - Refused (SchemaError → HTTP 400): what we cannot enforce while generating (if/then/else,
//   dependent*, unevaluated*, backreferences/lookbehind in patterns, unknown formats, …),
//   $ref outside the document, and schemas no value satisfies (including recursion that can never
//   end) — the message names where. Annotations are ignored (validators ignore them too).
import { FORMAT_PATTERNS } from './formats.ts';
import { compilePattern, dfaMatches, finiteLanguage, intersectDfa, literalsDfa, RegexError, subtractDfa, unionDfa, type Dfa } from './regex.ts';

export class SchemaError extends Error {
  override name = 'SchemaError';
  constructor(
    message: string,
    /** JSON-pointer-like location inside the schema, e.g. `#/properties/age`. */
    readonly at: string,
  ) {
    super(`${message} (at ${at})`);
    this.unsatisfiable = /^no |accepts no value|excludes every/.test(message);
  }
  /** No value satisfies the schema (as opposed to: we cannot enforce it). */
  readonly unsatisfiable: boolean;
}

export interface ObjectAlt {
  kind: 'object';
  props: Prop[];
  /** Schema of keys not in `props` nor matching `patterns`; null = no such keys. */
  additional: ValueNode | null;
  /** patternProperties: keys matching `dfa` take `value`. */
  patterns: { dfa: Dfa; value: ValueNode }[];
  /**
   * The language of free (undeclared) keys when constrained — propertyNames, patternProperties,
   * additionalProperties: false — declared names removed; null = any new name.
   */
  freeKeys: StringAlt | null;
  minProps: number;
  maxProps: number;
  /** A container of the "any JSON" node: limited in nesting depth by the recognizer. */
  generic: boolean;
  at: string;
}

export interface Prop {
  name: string;
  /** The key's JSON text after the opening quote, closing quote included (UTF-8). */
  key: Uint8Array;
  value: ValueNode;
  required: boolean;
}

export interface ArrayAlt {
  kind: 'array';
  /** Schemas of the first items (prefixItems / draft-07 array `items`). */
  prefix: ValueNode[];
  /** Schema of the items after `prefix`; null = none (items: false). */
  items: ValueNode | null;
  minItems: number;
  maxItems: number;
  /** uniqueItems for scalar items: the recognizer compares item values. */
  unique: boolean;
  /** contains / minContains / maxContains; null = none (or one that every array meets). */
  contains: ContainsRule | null;
  generic: boolean;
  at: string;
}

/**
 * `contains` as two item schemas per position: the item as one that counts (item ∩ contains) and
 * as one that does not. With a finite maxContains the second is item ∖ contains (decidable only
 * for a `contains` of types/values, as `not`); without one it is the item schema itself, since an
 * item that matches but is not counted only undercounts, which minContains tolerates. Each item
 * is read as both at once (parallel stacks), each counting its own way.
 */
export interface ContainsRule {
  min: number;
  max: number;
  /** Per prefixItems position, then for the rest; null = no such item. */
  hitPrefix: (ValueNode | null)[];
  hitItems: ValueNode | null;
  missPrefix: (ValueNode | null)[];
  missItems: ValueNode | null;
}

export const hitNode = (c: ContainsRule, i: number): ValueNode | null => (i < c.hitPrefix.length ? c.hitPrefix[i]! : c.hitItems);
export const missNode = (c: ContainsRule, i: number): ValueNode | null => (i < c.missPrefix.length ? c.missPrefix[i]! : c.missItems);

/**
 * Whether an array with `count` items of which `hits` count for `contains` can still be
 * completed (minItems, maxItems, minContains, maxContains). Greedy: a counting item where one is
 * still needed, else a non-counting one, else a counting one while maxContains allows.
 */
export function containsFeasible(a: ArrayAlt, count: number, hits: number, ok: (n: ValueNode | null) => boolean = (n) => n !== null): boolean {
  const c = a.contains!;
  if (hits > c.max) return false;
  let n = count;
  let h = hits;
  while (n < a.minItems || h < c.min) {
    if (n >= a.maxItems) return false;
    const canHit = h < c.max && ok(hitNode(c, n));
    const canMiss = ok(missNode(c, n));
    if (h < c.min && !canHit && n >= c.hitPrefix.length) return false; // never again
    if (h < c.min && canHit) h++;
    else if (canMiss) {
      if (h >= c.min && n >= c.missPrefix.length && n >= c.hitPrefix.length) return true; // fillers from here on
    } else if (canHit) h++;
    else return false;
    n++;
  }
  return true;
}

export interface StringAlt {
  kind: 'string';
  minLength: number;
  maxLength: number;
  /** pattern ∩ formats; null = any characters. */
  dfa: Dfa | null;
  /** With both length bounds and an automaton: per state, the lengths that can still end it. */
  reach: Uint32Array[] | null;
  at: string;
}

export interface NumberAlt {
  kind: 'number';
  integer: boolean;
  /** Digits before the point (and the limit for integers). */
  maxDigits: number;
  /** null = no bounds and no multipleOf (the fast path). */
  bounds: NumberBounds | null;
  at: string;
}

export interface NumberBounds {
  lo: number;
  loEx: boolean;
  hi: number;
  hiEx: boolean;
  /** Integers only: the value is a multiple of this (1 = none). */
  multipleOf: number;
  /** Values excluded by `not: {enum/const}` (inside the bounds). */
  not: readonly number[];
}

export interface LiteralAlt {
  kind: 'literal';
  /** Canonical JSON texts (UTF-8), sorted bytewise, distinct. */
  texts: Uint8Array[];
  at?: string;
}

export type Alt = ObjectAlt | ArrayAlt | StringAlt | NumberAlt | LiteralAlt;

export interface ValueNode {
  alts: Alt[];
}

const enc = new TextEncoder();

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function literalAlt(values: readonly unknown[]): LiteralAlt {
  const texts = [...new Set(values.map((v) => JSON.stringify(v)))].map((t) => enc.encode(t));
  texts.sort(compareBytes);
  return { kind: 'literal', texts };
}

/** Number of digits the recognizer allows before the decimal point. */
export const MAX_INT_DIGITS = 16;
/** With bounds: 15 digits, so every value is exact in a double. */
const BOUNDED_DIGITS = 15;
const BOUNDED_MAX = 1e15 - 1;

/** Any JSON value (json_object's values, `{}` schemas, additionalProperties: true). */
export const ANY: ValueNode = { alts: [] };
const ANY_OBJECT: ObjectAlt = { kind: 'object', props: [], additional: ANY, patterns: [], freeKeys: null, minProps: 0, maxProps: Infinity, generic: true, at: '#' };
const ANY_ARRAY: ArrayAlt = { kind: 'array', prefix: [], items: ANY, minItems: 0, maxItems: Infinity, unique: false, contains: null, generic: true, at: '#' };
const ANY_STRING: StringAlt = { kind: 'string', minLength: 0, maxLength: Infinity, dfa: null, reach: null, at: '#' };
ANY.alts.push(ANY_OBJECT, ANY_ARRAY, ANY_STRING, { kind: 'number', integer: false, maxDigits: MAX_INT_DIGITS, bounds: null, at: '#' }, literalAlt([true, false, null]));
/** Any JSON object: the `json_object` response format. */
export const ANY_OBJECT_NODE: ValueNode = { alts: [ANY_OBJECT] };

/** Keywords that carry no constraint on the value (or are handled elsewhere). */
const ANNOTATIONS = new Set([
  '$schema', '$id', '$comment', '$anchor', 'title', 'description', 'default', 'examples', 'deprecated',
  'readOnly', 'writeOnly', '$defs', 'definitions', 'strict', 'contentMediaType', 'discriminator', 'nullable',
  // Without `contains` these do nothing (validators ignore them); with it, compileArray reads them.
  'minContains', 'maxContains',
]);
/** Standard validation keywords we cannot enforce while generating: refused, never ignored. */
const REFUSED: Record<string, string> = {
  if: 'conditional schemas (if/then/else) are not supported for constrained output',
  then: 'conditional schemas (if/then/else) are not supported for constrained output',
  else: 'conditional schemas (if/then/else) are not supported for constrained output',
  dependentRequired: "keyword 'dependentRequired' is not supported for constrained output",
  dependentSchemas: "keyword 'dependentSchemas' is not supported for constrained output",
  dependencies: "keyword 'dependencies' is not supported for constrained output",
  unevaluatedProperties: "keyword 'unevaluatedProperties' is not supported for constrained output",
  unevaluatedItems: "keyword 'unevaluatedItems' is not supported for constrained output",
  contentEncoding: "keyword 'contentEncoding' is not supported for constrained output",
  contentSchema: "keyword 'contentSchema' is not supported for constrained output",
  $dynamicRef: "keyword '$dynamicRef' is not supported for constrained output",
  $recursiveRef: "keyword '$recursiveRef' is not supported for constrained output",
};
const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'];
/** Formats zod emits only together with a `pattern` that defines them: the pattern is enforced. */
const PATTERN_DEFINED_FORMATS = new Set(['cuid', 'cuid2', 'ulid', 'nanoid', 'e164', 'base64', 'base64url', 'jwt', 'emoji', 'xid', 'ksuid', 'cidrv4', 'cidrv6', 'mac', 'includes', 'starts_with', 'ends_with', 'lowercase', 'uppercase']);
/** Internal keys of merged schemas (allOf): lists where a schema has one value. */
const PATTERNS = '\u0000patterns';
const FORMATS = '\u0000formats';
const NOTS = '\u0000nots';

export interface CompileOptions {
  /** Upper bound on schema nodes (a hostile schema cannot make compilation expensive). */
  maxNodes?: number;
}

/** $ref hops in a row (a → b → c …) and nesting depth beyond which a schema is refused. */
export const MAX_REF_CHAIN = 32;
export const MAX_SCHEMA_DEPTH = 128;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function typeOfValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const nonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Compiles `schema` (the root of its document); throws SchemaError for what cannot be enforced. */
export function compileSchema(schema: unknown, opts: CompileOptions = {}): ValueNode {
  const maxNodes = opts.maxNodes ?? 10_000;
  let nodes = 0;
  const root = schema;
  const refs = new Map<string, ValueNode>();

  function lookupRef(ref: string, at: string): unknown {
    if (ref === '#') return root;
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    if (!m) throw new SchemaError(`$ref '${ref.slice(0, 80)}' is not supported (only '#', '#/$defs/…' and '#/definitions/…')`, at);
    const name = decodeURIComponent(m[2]!).replace(/~1/g, '/').replace(/~0/g, '~');
    const defs = isObj(root) ? root[m[1]!] : undefined;
    const target = isObj(defs) && Object.prototype.hasOwnProperty.call(defs, name) ? defs[name] : undefined;
    if (target === undefined) throw new SchemaError(`$ref '${ref.slice(0, 80)}' points to nothing`, at);
    return target;
  }

  /** Follows a chain of bare $refs to a real schema (for merging), refusing long chains. */
  function deref(s: unknown, at: string): unknown {
    let hops = 0;
    while (isObj(s) && typeof s.$ref === 'string' && Object.keys(s).every((k) => k === '$ref' || ANNOTATIONS.has(k))) {
      if (++hops > MAX_REF_CHAIN) throw new SchemaError(`$ref chain is longer than ${MAX_REF_CHAIN} hops`, at);
      s = lookupRef(s.$ref, at);
    }
    return s;
  }

  function resolveRef(ref: string, at: string, depth: number, chain: number): ValueNode {
    const hit = refs.get(ref);
    if (hit) return hit;
    if (chain > MAX_REF_CHAIN) throw new SchemaError(`$ref chain is longer than ${MAX_REF_CHAIN} hops`, at);
    const target = lookupRef(ref, at);
    // Placeholder first: recursive schemas refer back to it while it is being compiled.
    const node: ValueNode = { alts: [] };
    refs.set(ref, node);
    node.alts.push(...compile(target, ref, depth + 1, chain + 1).alts);
    return node;
  }

  function compile(s: unknown, at: string, depth: number, chain = 0): ValueNode {
    if (++nodes > maxNodes) throw new SchemaError(`schema is too large (more than ${maxNodes} subschemas)`, at);
    if (depth > MAX_SCHEMA_DEPTH) throw new SchemaError(`schema nests deeper than ${MAX_SCHEMA_DEPTH} levels (counting $ref hops)`, at);
    if (s === true) return ANY;
    if (s === false) throw new SchemaError('schema `false` accepts no value', at);
    if (!isObj(s)) throw new SchemaError('a schema must be an object or a boolean', at);
    for (const k of Object.keys(s)) if (REFUSED[k]) throw new SchemaError(REFUSED[k]!, at);

    if (s.$ref !== undefined) {
      if (typeof s.$ref !== 'string') throw new SchemaError('$ref must be a string', at);
      const others = Object.keys(s).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
      if (others.length === 0) return resolveRef(s.$ref, at, depth, chain);
      // $ref with sibling keywords (2019-09+): both apply.
      const { $ref, ...rest } = s;
      return compile({ allOf: [{ $ref }, rest] }, at, depth + 1);
    }

    if (s.allOf !== undefined) {
      if (!Array.isArray(s.allOf) || s.allOf.length === 0) throw new SchemaError("'allOf' must be a non-empty array", at);
      const { allOf, ...rest } = s;
      const members = [...(allOf as unknown[]), ...(Object.keys(rest).some((k) => !ANNOTATIONS.has(k)) ? [rest] : [])];
      if (members.length === 1) return compile(members[0], `${at}/allOf/0`, depth + 1);
      return compile(mergeAll(members.map((m, i) => deref(m, `${at}/allOf/${i}`)), at), at, depth + 1);
    }

    const union = s.anyOf ?? s.oneOf;
    if (union !== undefined) {
      const kw = s.anyOf !== undefined ? 'anyOf' : 'oneOf';
      if (s.anyOf !== undefined && s.oneOf !== undefined) {
        const { oneOf, ...rest } = s;
        return compile({ allOf: [rest, { anyOf: oneOf }] }, at, depth + 1);
      }
      if (!Array.isArray(union) || union.length === 0) throw new SchemaError(`'${kw}' must be a non-empty array`, at);
      const { anyOf: _a, oneOf: _o, ...rest } = s;
      const others = Object.keys(rest).filter((k) => !ANNOTATIONS.has(k));
      // Keywords next to the union apply to every branch.
      const branches = others.length ? union.map((b) => ({ allOf: [rest, b] })) : union;
      const alts: Alt[] = [];
      branches.forEach((sub, i) => alts.push(...compile(sub, `${at}/${kw}/${i}`, depth + 1).alts));
      if (s.nullable === true) alts.push(literalAlt([null]));
      return { alts };
    }

    let typeList: string[] | null = null;
    if (s.type !== undefined) {
      const raw = Array.isArray(s.type) ? s.type : [s.type];
      if (raw.length === 0) throw new SchemaError("'type' must not be empty", at);
      for (const t of raw) if (typeof t !== 'string' || !TYPES.includes(t)) throw new SchemaError(`unknown type '${String(t).slice(0, 20)}'`, at);
      typeList = raw as string[];
    }
    if (s.nullable === true && typeList && !typeList.includes('null')) typeList = [...typeList, 'null'];

    // `not`: what can be decided on the spot — types, and values (enum/const).
    const nots = [...(s.not !== undefined ? [s.not] : []), ...((s[NOTS] as unknown[]) ?? [])];
    const notValues: unknown[] = [];
    for (const n0 of nots) {
      const n = deref(n0, `${at}/not`);
      if (n === true || (isObj(n) && Object.keys(n).every((k) => ANNOTATIONS.has(k)))) throw new SchemaError("'not' excludes every value", at);
      if (!isObj(n)) throw new SchemaError("'not' must be a schema", at);
      const keys = Object.keys(n).filter((k) => !ANNOTATIONS.has(k));
      if (keys.length === 1 && keys[0] === 'type') {
        const ex = new Set(Array.isArray(n.type) ? (n.type as string[]) : [n.type as string]);
        typeList = (typeList ?? TYPES).filter((t) => !ex.has(t) && !(t === 'integer' && ex.has('number')));
        if (typeList.includes('number') && ex.has('integer')) throw new SchemaError("'not: {type: integer}' on numbers is not supported", at);
        if (typeList.length === 0) throw new SchemaError("no value satisfies the schema: 'not' excludes every type", at);
      } else if (keys.length === 1 && (keys[0] === 'enum' || keys[0] === 'const')) {
        notValues.push(...(keys[0] === 'const' ? [n.const] : Array.isArray(n.enum) ? n.enum : []));
      } else throw new SchemaError("'not' is supported only with 'type', 'enum' or 'const'", at);
    }

    if (s.enum !== undefined || s.const !== undefined) {
      let values: unknown[];
      if (s.const !== undefined) values = [s.const];
      else {
        if (!Array.isArray(s.enum) || s.enum.length === 0) throw new SchemaError("'enum' must be a non-empty array", at);
        values = s.enum;
      }
      if (s.enum !== undefined && s.const !== undefined) values = values.filter((v) => (s.enum as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(v)));
      for (const v of values) {
        if (typeof v === 'number' && !Number.isFinite(v)) throw new SchemaError('enum values must be finite numbers', at);
        if (typeof v === 'string' && v.length > 10_000) throw new SchemaError('enum strings must be at most 10,000 characters', at);
      }
      // Other keywords next to enum/const: keep only the values that satisfy them too.
      const { enum: _e, const: _c, nullable: _n, ...rest } = s;
      if (Object.keys(rest).some((k) => !ANNOTATIONS.has(k))) {
        const check = compile({ ...rest, ...(typeList ? { type: typeList } : {}) }, at, depth + 1);
        values = values.filter((v) => valueAccepted(check, v));
      } else if (typeList) {
        const ts = new Set(typeList);
        values = values.filter((v) => ts.has(typeOfValue(v)) || (typeOfValue(v) === 'integer' && ts.has('number')));
      }
      if (s.nullable === true && !values.includes(null)) values.push(null);
      const ex = new Set(notValues.map((v) => JSON.stringify(v)));
      values = values.filter((v) => !ex.has(JSON.stringify(v)));
      if (values.length === 0) throw new SchemaError('no value satisfies both the enum/const and the other keywords', at);
      return { alts: [{ ...literalAlt(values), at }] };
    }

    if (!typeList) {
      // No type: infer from the keywords present (like llama.cpp); none at all means any value.
      const has = (...ks: string[]) => ks.some((k) => s[k] !== undefined);
      const inferred: string[] = [];
      if (has('properties', 'required', 'additionalProperties', 'patternProperties', 'propertyNames', 'minProperties', 'maxProperties')) inferred.push('object');
      if (has('items', 'prefixItems', 'additionalItems', 'minItems', 'maxItems', 'uniqueItems', 'contains')) inferred.push('array');
      if (has('minLength', 'maxLength', 'pattern', 'format', PATTERNS, FORMATS)) inferred.push('string');
      if (has('minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf')) inferred.push('number');
      if (inferred.length === 0 && notValues.length === 0) return ANY;
      typeList = inferred.length ? inferred : TYPES;
    }

    const alts: Alt[] = [];
    const literals: unknown[] = [];
    for (const t of new Set(typeList)) {
      if (t === 'object') alts.push(compileObject(s, at, depth));
      else if (t === 'array') alts.push(compileArray(s, at, depth));
      else if (t === 'string') alts.push(compileString(s, at, notValues.filter((v): v is string => typeof v === 'string')));
      else if (t === 'number' || t === 'integer') {
        if (t === 'integer' && typeList.includes('number')) continue;
        const n = compileNumber(s, at, t === 'integer', notValues.filter((v): v is number => typeof v === 'number'));
        if (n) alts.push(n);
      } else if (t === 'boolean') literals.push(true, false);
      else literals.push(null);
    }
    if (literals.length) {
      const ex = new Set(notValues.map((v) => JSON.stringify(v)));
      const kept = literals.filter((v) => !ex.has(JSON.stringify(v)));
      if (kept.length) alts.push({ ...literalAlt(kept), at });
    }
    if (alts.length === 0) throw new SchemaError('no value satisfies the schema', at);
    return { alts };
  }

  /** A string schema (propertyNames) as the automaton of the names it allows. */
  function keyLanguage(node: ValueNode, at: string): Dfa | null {
    const parts: Dfa[] = [];
    let any = false;
    for (const a of node.alts) {
      if (a.kind === 'string') {
        if (a.minLength === 0 && a.maxLength === Infinity && !a.dfa) any = true;
        else parts.push(stringAltDfa(a, at));
      } else if (a.kind === 'literal') {
        const words = a.texts.map((t) => JSON.parse(new TextDecoder().decode(t)) as unknown).filter((v): v is string => typeof v === 'string');
        if (words.length) parts.push(literalsDfa(words));
      }
    }
    if (any) return null;
    return parts.length === 0 ? literalsDfa([]) : parts.length === 1 ? parts[0]! : guard(() => unionDfa(parts), at);
  }

  function compileObject(s: Obj, at: string, depth: number): ObjectAlt {
    const propsRaw = s.properties;
    if (propsRaw !== undefined && !isObj(propsRaw)) throw new SchemaError("'properties' must be an object", at);
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) throw new SchemaError("'required' must be an array of strings", at);
    const req = new Set(required as string[]);
    const props: Prop[] = [];
    const mkProp = (name: string, value: ValueNode): Prop => ({ name, key: enc.encode(JSON.stringify(name).slice(1)), value, required: req.has(name) });

    // Free keys: patternProperties, additionalProperties, propertyNames.
    const patterns: { dfa: Dfa; value: ValueNode; src: string }[] = [];
    if (s.patternProperties !== undefined) {
      if (!isObj(s.patternProperties)) throw new SchemaError("'patternProperties' must be an object", at);
      for (const [p, sub] of Object.entries(s.patternProperties)) {
        const pat = guard(() => compilePattern(p), `${at}/patternProperties`);
        if (pat.minLength > 0 || pat.maxLength !== Infinity) throw new SchemaError('length lookaheads in patternProperties are not supported', `${at}/patternProperties`);
        const here = `${at}/patternProperties/${p.slice(0, 40)}`;
        const value = compile(sub, here, depth + 1);
        for (const q of patterns) {
          if (intersectDfa(q.dfa, pat.dfa).size > 0 && JSON.stringify((s.patternProperties as Obj)[q.src]) !== JSON.stringify(sub)) {
            throw new SchemaError('patternProperties whose patterns overlap must have the same schema', here);
          }
        }
        patterns.push({ dfa: pat.dfa, value, src: p });
      }
    }
    let additional: ValueNode | null;
    const ap = s.additionalProperties;
    const hasNames = s.propertyNames !== undefined;
    if (ap === undefined) additional = propsRaw === undefined && patterns.length === 0 ? ANY : hasNames ? ANY : null;
    else if (ap === false) additional = null;
    else if (ap === true) additional = ANY;
    else additional = compile(ap, `${at}/additionalProperties`, depth + 1);
    let names: Dfa | null = null;
    if (hasNames) {
      const pn = s.propertyNames;
      if (pn === false) names = literalsDfa([]);
      else if (pn !== true) names = keyLanguage(compile(pn, `${at}/propertyNames`, depth + 1), `${at}/propertyNames`);
    }
    const nameOk = (n: string) => !names || dfaMatches(names, n);
    /** The value schema of an undeclared key (null = not allowed). */
    const freeValue = (n: string): ValueNode | null => {
      if (!nameOk(n)) return null;
      const m = patterns.find((p) => dfaMatches(p.dfa, n));
      return m ? m.value : additional;
    };

    for (const [name, sub] of Object.entries(propsRaw ?? {})) {
      const here = `${at}/properties/${name.slice(0, 40)}`;
      if (!nameOk(name)) {
        if (req.has(name)) throw new SchemaError(`no value satisfies the schema: required property '${name.slice(0, 40)}' is not allowed by 'propertyNames'`, at);
        continue;
      }
      const m = patterns.find((p) => dfaMatches(p.dfa, name));
      if (m && JSON.stringify(sub) !== JSON.stringify((s.patternProperties as Obj)[m.src])) {
        const both = compile({ allOf: [sub, (s.patternProperties as Obj)[m.src]] }, here, depth + 1);
        props.push(mkProp(name, both));
      } else props.push(mkProp(name, compile(sub, here, depth + 1)));
    }
    // Required names that are not declared: allowed as free keys, they become declared.
    for (const r of req) {
      if (props.some((p) => p.name === r)) continue;
      const v = freeValue(r);
      if (!v) throw new SchemaError(`no value satisfies the schema: required property '${r.slice(0, 40)}' is not allowed (not in 'properties', and no other key may be added)`, at);
      props.push(mkProp(r, v));
    }

    // The free-key language (declared names removed), when something constrains the names.
    let freeKeys: StringAlt | null = null;
    let allowsFree = additional !== null || patterns.length > 0;
    if (allowsFree && (names !== null || additional === null)) {
      let lang: Dfa = additional !== null ? compilePattern('').dfa : patterns.length === 1 ? patterns[0]!.dfa : guard(() => unionDfa(patterns.map((p) => p.dfa)), at);
      if (names) lang = guard(() => intersectDfa(lang, names!), at);
      lang = guard(() => subtractDfa(lang, literalsDfa(props.map((p) => p.name))), at);
      const few = finiteLanguage(lang, 64);
      if (few) {
        // Few names (z.record(z.enum(…), …)): they become declared optional keys, in that order.
        for (const n of few) props.push(mkProp(n, freeValue(n)!));
        allowsFree = false;
      } else freeKeys = stringAlt(0, Infinity, lang, at);
    }

    const minProps = s.minProperties ?? 0;
    const maxProps = s.maxProperties ?? Infinity;
    if (!nonNegInt(minProps)) throw new SchemaError("'minProperties' must be a non-negative integer", at);
    if (maxProps !== Infinity && !nonNegInt(maxProps)) throw new SchemaError("'maxProperties' must be a non-negative integer", at);
    const nReq = props.filter((p) => p.required).length;
    if (nReq > (maxProps as number)) throw new SchemaError(`no value satisfies the schema: ${nReq} required properties but 'maxProperties' is ${maxProps}`, at);
    if (minProps > (maxProps as number)) throw new SchemaError("no value satisfies the schema: 'minProperties' is larger than 'maxProperties'", at);
    if (!allowsFree && minProps > props.length) throw new SchemaError(`no value satisfies the schema: 'minProperties' is ${minProps} but only ${props.length} properties are allowed`, at);
    return {
      kind: 'object',
      props,
      additional: allowsFree ? additional : null,
      patterns: allowsFree ? patterns.map(({ dfa, value }) => ({ dfa, value })) : [],
      freeKeys,
      minProps,
      maxProps: maxProps as number,
      generic: false,
      at,
    };
  }

  function compileArray(s: Obj, at: string, depth: number): ArrayAlt {
    let prefixRaw: unknown[] = [];
    let rest: unknown = s.items;
    if (Array.isArray(s.prefixItems)) {
      prefixRaw = s.prefixItems;
      if (s.additionalItems !== undefined) throw new SchemaError("'additionalItems' goes with an array 'items' (draft-07), not with 'prefixItems'", at);
    } else if (s.prefixItems !== undefined) throw new SchemaError("'prefixItems' must be an array", at);
    if (Array.isArray(s.items)) {
      if (s.prefixItems !== undefined) throw new SchemaError("'items' must be a schema when 'prefixItems' is given", at);
      prefixRaw = s.items;
      rest = s.additionalItems;
    } else if (s.additionalItems !== undefined && s.prefixItems === undefined) rest = s.items; // additionalItems without array items: ignored by validators
    const prefix = prefixRaw.map((sub, i) => compile(sub, `${at}/${Array.isArray(s.items) ? 'items' : 'prefixItems'}/${i}`, depth + 1));
    const items = rest === false ? null : rest === undefined ? ANY : compile(rest, `${at}/items`, depth + 1);
    const minItems = s.minItems ?? 0;
    let maxItems = s.maxItems ?? Infinity;
    if (!nonNegInt(minItems)) throw new SchemaError("'minItems' must be a non-negative integer", at);
    if (maxItems !== Infinity && !nonNegInt(maxItems)) throw new SchemaError("'maxItems' must be a non-negative integer", at);
    if (items === null) maxItems = Math.min(maxItems as number, prefix.length);
    if (minItems > (maxItems as number)) throw new SchemaError(`no value satisfies the schema: 'minItems' (${minItems}) is larger than the number of items allowed (${maxItems})`, at);
    if (minItems > 10_000) throw new SchemaError("'minItems' is too large (at most 10,000)", at);
    let unique = false;
    if (s.uniqueItems === true) {
      const scalar = (n: ValueNode | null) => !n || (n !== ANY && n.alts.every((a) => a.kind === 'string' || a.kind === 'number' || (a.kind === 'literal' && a.texts.every((t) => t[0] !== 0x7b && t[0] !== 0x5b))));
      if (!prefix.every(scalar) || !scalar(items)) throw new SchemaError("'uniqueItems' is supported only for arrays of scalars (strings, numbers, booleans, null, enums)", at);
      unique = true;
      // Enough distinct values for minItems: enums and booleans are finite.
      if (items && prefix.length < minItems && items.alts.every((a) => a.kind === 'literal')) {
        const distinct = new Set(items.alts.flatMap((a) => (a as LiteralAlt).texts.map((t) => new TextDecoder().decode(t)))).size;
        if (prefix.length + distinct < minItems) throw new SchemaError(`no value satisfies the schema: 'minItems' is ${minItems} but only ${distinct} distinct items exist`, at);
      }
    }
    const contains = compileContains(s, prefixRaw, rest, prefix, items, unique, at, depth);
    return { kind: 'array', prefix, items, minItems, maxItems: maxItems as number, unique, contains, generic: false, at };
  }

  /** `contains` with minContains/maxContains (2019-09+ semantics), as two item schemas per position. */
  function compileContains(s: Obj, prefixRaw: unknown[], rest: unknown, prefix: ValueNode[], items: ValueNode | null, unique: boolean, at: string, depth: number): ContainsRule | null {
    if (s.contains === undefined) return null;
    const min = s.minContains ?? 1;
    const max = s.maxContains ?? Infinity;
    if (!nonNegInt(min)) throw new SchemaError("'minContains' must be a non-negative integer", at);
    if (max !== Infinity && !nonNegInt(max)) throw new SchemaError("'maxContains' must be a non-negative integer", at);
    if (min > (max as number)) throw new SchemaError("no value satisfies the schema: 'minContains' is larger than 'maxContains'", at);
    if (min > 10_000) throw new SchemaError("'minContains' is too large (at most 10,000)", at);
    if (min === 0 && max === Infinity) {
      compile(s.contains, `${at}/contains`, depth + 1); // still a schema we must be able to read
      return null;
    }
    const here = `${at}/contains`;
    /** The node, or null when no value satisfies it. */
    const orNone = (f: () => ValueNode): ValueNode | null => {
      try {
        return f();
      } catch (err) {
        if (err instanceof SchemaError && err.unsatisfiable) return null;
        throw err;
      }
    };
    const both = (item: unknown): ValueNode | null =>
      item === false ? null : orNone(() => compile(item === undefined || item === true ? s.contains : { allOf: [item, s.contains] }, here, depth + 1));
    const without = (item: unknown, node: ValueNode | null): ValueNode | null => {
      if (item === false) return null;
      if (max === Infinity) return node;
      try {
        return orNone(() => compile({ allOf: [item ?? true, { not: s.contains }] }, here, depth + 1));
      } catch (err) {
        if (err instanceof SchemaError) throw new SchemaError(`'maxContains' needs a 'contains' that only names types or values (type, enum, const): ${err.message}`, here);
        throw err;
      }
    };
    const hitPrefix = prefixRaw.map(both);
    const hitItems = both(rest);
    let missPrefix = prefixRaw.map((x, i) => without(x, prefix[i]!));
    let missItems = without(rest, items);
    let maxHits = max as number;
    const hits = [...hitPrefix, hitItems].filter((n): n is ValueNode => n !== null);
    if (unique && hits.every((n) => n.alts.every((a) => a.kind === 'literal'))) {
      // uniqueItems with finitely many matching values: at most that many can count, and every
      // occurrence of one must count (else a value used uncounted leaves too few for minContains).
      const values = [...new Set(hits.flatMap((n) => n.alts.flatMap((a) => (a as LiteralAlt).texts.map((t) => new TextDecoder().decode(t)))))].map((t) => JSON.parse(t) as unknown);
      maxHits = Math.min(maxHits, values.length);
      if (min > maxHits) throw new SchemaError(`no value satisfies the schema: 'minContains' is ${min} but only ${values.length} distinct items can match 'contains'`, here);
      if (max === Infinity && values.length) {
        const exclude = (item: unknown): ValueNode | null => (item === false ? null : orNone(() => compile({ allOf: [item ?? true, { not: { enum: values } }] }, here, depth + 1)));
        missPrefix = prefixRaw.map(exclude);
        missItems = exclude(rest);
      }
    }
    return { min, max: maxHits, hitPrefix, hitItems, missPrefix, missItems };
  }

  function compileString(s: Obj, at: string, notStrings: string[]): StringAlt {
    const minLength0 = s.minLength ?? 0;
    const maxLength0 = s.maxLength ?? Infinity;
    if (!nonNegInt(minLength0)) throw new SchemaError("'minLength' must be a non-negative integer", at);
    if (maxLength0 !== Infinity && !nonNegInt(maxLength0)) throw new SchemaError("'maxLength' must be a non-negative integer", at);
    let minLength = minLength0;
    let maxLength = maxLength0 as number;
    const sources: string[] = [];
    const pats = [...(s.pattern !== undefined ? [s.pattern] : []), ...((s[PATTERNS] as unknown[]) ?? [])];
    for (const p of pats) {
      if (typeof p !== 'string') throw new SchemaError("'pattern' must be a string", at);
      sources.push(p);
    }
    const fmts = [...(s.format !== undefined ? [s.format] : []), ...((s[FORMATS] as unknown[]) ?? [])];
    for (const f of fmts) {
      if (typeof f !== 'string') throw new SchemaError("'format' must be a string", at);
      const p = FORMAT_PATTERNS[f];
      if (p) sources.push(p);
      else if (!(PATTERN_DEFINED_FORMATS.has(f) && pats.length > 0)) {
        throw new SchemaError(`format '${f.slice(0, 40)}' is not supported (supported: ${Object.keys(FORMAT_PATTERNS).join(', ')})`, at);
      }
    }
    let dfa: Dfa | null = null;
    for (const src of sources) {
      const c = guard(() => compilePattern(src), `${at}/pattern`);
      minLength = Math.max(minLength, c.minLength);
      maxLength = Math.min(maxLength, c.maxLength);
      dfa = dfa ? guard(() => intersectDfa(dfa!, c.dfa), `${at}/pattern`) : c.dfa;
    }
    if (notStrings.length) dfa = guard(() => subtractDfa(dfa ?? compilePattern('').dfa, literalsDfa(notStrings)), at);
    if (minLength > maxLength) throw new SchemaError("no value satisfies the schema: 'minLength' is larger than 'maxLength'", at);
    if (dfa && dfa.size === 0) throw new SchemaError('no string satisfies the pattern/format', at);
    return stringAlt(minLength, maxLength, dfa, at);
  }

  function compileNumber(s: Obj, at: string, integer0: boolean, notNums: number[]): NumberAlt | null {
    const num = (k: string): number | undefined => {
      const v = s[k];
      if (v === undefined) return undefined;
      if (typeof v === 'boolean' && (k === 'exclusiveMinimum' || k === 'exclusiveMaximum')) {
        throw new SchemaError(`boolean '${k}' (draft-04) is not supported; use a number`, at);
      }
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new SchemaError(`'${k}' must be a finite number`, at);
      return v;
    };
    let integer = integer0;
    let lo = -Infinity;
    let loEx = false;
    let hi = Infinity;
    let hiEx = false;
    const min = num('minimum');
    const exMin = num('exclusiveMinimum');
    const max = num('maximum');
    const exMax = num('exclusiveMaximum');
    if (min !== undefined) lo = min;
    if (exMin !== undefined && exMin >= lo) [lo, loEx] = [exMin, true];
    if (max !== undefined) hi = max;
    if (exMax !== undefined && exMax <= hi) [hi, hiEx] = [exMax, true];
    let multipleOf = 1;
    const mo = num('multipleOf');
    if (mo !== undefined) {
      if (mo <= 0) throw new SchemaError("'multipleOf' must be positive", at);
      if (Number.isInteger(mo)) {
        integer = true; // a multiple of an integer is an integer (written without a fraction)
        multipleOf = mo;
      } else if (!(integer && Number.isInteger(1 / mo))) throw new SchemaError("'multipleOf' with a fraction is not supported (only integer multiples)", at);
    }
    if (integer) {
      // Integers: inclusive integer bounds.
      lo = loEx ? Math.floor(lo) + 1 : Math.ceil(lo);
      hi = hiEx ? Math.ceil(hi) - 1 : Math.floor(hi);
      loEx = hiEx = false;
    }
    const ok = lo < hi || (lo === hi && !loEx && !hiEx);
    if (!ok) throw new SchemaError('no number satisfies the bounds (minimum/maximum)', at);
    // Bounds no written number reaches cost nothing: zod's ±(2^53 − 1) on every .int().
    // Excluded values (`not: {enum/const}`) that the bounds still allow.
    const not = [...new Set(notNums)].filter((v) => v >= lo && v <= hi && !(v === lo && loEx) && !(v === hi && hiEx) && (!integer || (Number.isInteger(v) && v % multipleOf === 0)));
    const free = lo <= -BOUNDED_MAX && hi >= BOUNDED_MAX && multipleOf === 1 && not.length === 0;
    if (free) return { kind: 'number', integer, maxDigits: lo === -Infinity && hi === Infinity ? MAX_INT_DIGITS : BOUNDED_DIGITS, bounds: null, at };
    if (integer && multipleOf > 1) {
      const first = Math.ceil(Math.max(lo, -BOUNDED_MAX) / multipleOf) * multipleOf;
      if (first > Math.min(hi, BOUNDED_MAX)) throw new SchemaError(`no integer between the bounds is a multiple of ${multipleOf}`, at);
    }
    if (lo > BOUNDED_MAX || hi < -BOUNDED_MAX) throw new SchemaError('bounds beyond ±10^15 are not supported', at);
    if (not.length) {
      const count = integer ? Math.floor(Math.min(hi, BOUNDED_MAX) / multipleOf) - Math.ceil(Math.max(lo, -BOUNDED_MAX) / multipleOf) + 1 : lo < hi ? Infinity : 1;
      if (count <= not.length) throw new SchemaError("no number satisfies the bounds once the values excluded by 'not' are removed", at);
    }
    return { kind: 'number', integer, maxDigits: BOUNDED_DIGITS, bounds: { lo, loEx, hi, hiEx, multipleOf, not }, at };
  }

  /** Merges allOf members (already dereferenced) into one schema; unions are distributed. */
  function mergeAll(members: unknown[], at: string): unknown {
    for (const m of members) {
      if (m === false) throw new SchemaError('no value satisfies the schema: an allOf member is `false`', at);
      if (m !== true && !isObj(m)) throw new SchemaError('a schema must be an object or a boolean', at);
    }
    let objs = members.filter(isObj);
    // Nested allOf: flatten.
    objs = objs.flatMap((o) => (Array.isArray(o.allOf) ? [...(o.allOf as unknown[]).map((x) => deref(x, at)).filter(isObj), omit(o, 'allOf')] : [o]));
    const ui = objs.findIndex((o) => o.anyOf !== undefined || o.oneOf !== undefined);
    if (ui >= 0) {
      const u = objs[ui]!;
      const branches = (u.anyOf ?? u.oneOf) as unknown[];
      if (!Array.isArray(branches)) throw new SchemaError("'anyOf' must be a non-empty array", at);
      if (branches.length > 64) throw new SchemaError('allOf with a union of more than 64 branches is not supported', at);
      const others = objs.filter((_, i) => i !== ui);
      const base = omit(omit(u, 'anyOf'), 'oneOf');
      return { anyOf: branches.map((b) => ({ allOf: [...others, base, b] })) };
    }
    const out: Obj = {};
    for (const o of objs) {
      for (const [k, v] of Object.entries(o)) {
        if (ANNOTATIONS.has(k) || k === '$ref') continue;
        if (!(k in out)) {
          if (k === 'pattern') out[PATTERNS] = [...((out[PATTERNS] as unknown[]) ?? []), v];
          else if (k === 'format') out[FORMATS] = [...((out[FORMATS] as unknown[]) ?? []), v];
          else if (k === 'not') out[NOTS] = [...((out[NOTS] as unknown[]) ?? []), v];
          else if (k === PATTERNS || k === FORMATS || k === NOTS) out[k] = [...((out[k] as unknown[]) ?? []), ...(v as unknown[])];
          else out[k] = v;
          continue;
        }
        const cur = out[k];
        switch (k) {
          case 'type': {
            const a = Array.isArray(cur) ? (cur as string[]) : [cur as string];
            const b = Array.isArray(v) ? (v as string[]) : [v as string];
            const t = a.flatMap((x) => (b.includes(x) ? [x] : x === 'number' && b.includes('integer') ? ['integer'] : x === 'integer' && b.includes('number') ? ['integer'] : []));
            if (t.length === 0) throw new SchemaError('no value satisfies the schema: allOf members have no type in common', at);
            out.type = [...new Set(t)];
            break;
          }
          case 'properties': {
            const merged: Obj = { ...(cur as Obj) };
            for (const [pk, pv] of Object.entries(v as Obj)) merged[pk] = pk in merged ? { allOf: [merged[pk], pv] } : pv;
            out.properties = merged;
            break;
          }
          case 'required':
            out.required = [...new Set([...(cur as string[]), ...(v as string[])])];
            break;
          case 'minimum': case 'exclusiveMinimum': case 'minLength': case 'minItems': case 'minProperties': case 'minContains':
            out[k] = Math.max(cur as number, v as number);
            break;
          case 'maximum': case 'exclusiveMaximum': case 'maxLength': case 'maxItems': case 'maxProperties': case 'maxContains':
            out[k] = Math.min(cur as number, v as number);
            break;
          case 'uniqueItems':
            out[k] = cur === true || v === true;
            break;
          case 'enum': {
            if (!Array.isArray(cur) || !Array.isArray(v)) throw new SchemaError("'enum' must be a non-empty array", at);
            const both = cur.filter((x) => v.some((y) => JSON.stringify(x) === JSON.stringify(y)));
            if (both.length === 0) throw new SchemaError('no value satisfies the schema: allOf members have no enum value in common', at);
            out.enum = both;
            break;
          }
          case 'const':
            if (JSON.stringify(cur) !== JSON.stringify(v)) throw new SchemaError('no value satisfies the schema: allOf members have different const values', at);
            break;
          case 'multipleOf':
            if (Number.isInteger(cur) && Number.isInteger(v)) out[k] = ((cur as number) * (v as number)) / gcd(cur as number, v as number);
            else if (cur !== v) throw new SchemaError("allOf members with different fractional 'multipleOf' are not supported", at);
            break;
          case 'pattern': out[PATTERNS] = [...((out[PATTERNS] as unknown[]) ?? []), v]; break;
          case 'format': out[FORMATS] = [...((out[FORMATS] as unknown[]) ?? []), v]; break;
          case 'not': out[NOTS] = [...((out[NOTS] as unknown[]) ?? []), v]; break;
          case PATTERNS: case FORMATS: case NOTS: out[k] = [...(cur as unknown[]), ...(v as unknown[])]; break;
          case 'items': case 'propertyNames':
            out[k] = cur === false || v === false ? false : { allOf: [cur, v] };
            break;
          case 'additionalProperties':
            out[k] = cur === false || v === false ? false : { allOf: [cur, v] };
            break;
          default:
            if (JSON.stringify(cur) !== JSON.stringify(v)) throw new SchemaError(`allOf members with different '${k.slice(0, 30)}' are not supported`, at);
        }
      }
    }
    // additionalProperties of one member applies to the properties the others declare.
    const declared = (o: Obj) => Object.keys(isObj(o.properties) ? o.properties : {});
    if (isObj(out.properties)) {
      const props = { ...(out.properties as Obj) };
      const req = new Set((out.required as string[] | undefined) ?? []);
      for (const o of objs) {
        if (o.additionalProperties === undefined || o.additionalProperties === true || o.patternProperties !== undefined) continue;
        const own = new Set(declared(o));
        for (const name of Object.keys(props)) {
          if (own.has(name)) continue;
          if (o.additionalProperties === false) {
            if (req.has(name)) throw new SchemaError(`no value satisfies the schema: property '${name.slice(0, 40)}' is required by one allOf member and forbidden by another`, at);
            delete props[name];
          } else props[name] = { allOf: [props[name], o.additionalProperties] };
        }
      }
      out.properties = props;
      // Members without their own additionalProperties keep the merged object open to the others'
      // properties only (what the members declare): no extra keys beyond them.
    }
    return out;
  }

  let node: ValueNode;
  try {
    node = compile(schema, '#', 0);
  } catch (err) {
    if (err instanceof RangeError) throw new SchemaError(`schema nests too deeply (more than ${MAX_SCHEMA_DEPTH} levels or a $ref chain longer than ${MAX_REF_CHAIN})`, '#');
    throw err;
  }
  return prune(node);
}

function omit(o: Obj, k: string): Obj {
  const { [k]: _, ...rest } = o;
  return rest;
}

function guard<T>(f: () => T, at: string): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof RegexError) throw new SchemaError(err.message, at);
    throw err;
  }
}

const MAX_REACH_BITS = 4_000_000;

export function stringAlt(minLength: number, maxLength: number, dfa: Dfa | null, at: string): StringAlt {
  let reach: Uint32Array[] | null = null;
  if (dfa && minLength > 0 && maxLength !== Infinity) {
    // Exact "can it still end with a length in [min, max]": per state, the set of remaining lengths.
    if (dfa.size * (maxLength + 1) > MAX_REACH_BITS) throw new SchemaError('pattern/format with both minLength and a large maxLength is too complex', at);
    const W = (maxLength >> 5) + 1;
    reach = Array.from({ length: dfa.size }, () => new Uint32Array(W));
    let layer: number[] = [];
    for (let q = 0; q < dfa.size; q++) if (dfa.accept[q]) layer.push(q);
    const rev: number[][] = Array.from({ length: dfa.size }, () => []);
    dfa.trans.forEach((t, q) => t.to.forEach((x) => rev[x]!.push(q)));
    for (let r = 0; r <= maxLength && layer.length; r++) {
      const next = new Set<number>();
      for (const q of layer) {
        reach[q]![r >> 5]! |= 1 << (r & 31);
        for (const p of rev[q]!) next.add(p);
      }
      layer = [...next];
    }
  }
  return { kind: 'string', minLength, maxLength, dfa, reach, at };
}

function stringAltDfa(a: StringAlt, at: string): Dfa {
  let d = a.dfa ?? compilePattern('').dfa;
  if (a.minLength > 0 || a.maxLength !== Infinity) {
    if (a.maxLength !== Infinity && a.maxLength > 1000) throw new SchemaError("'maxLength' above 1,000 in propertyNames is not supported", at);
    const len = compilePattern(`^[\\s\\S]{${a.minLength},${a.maxLength === Infinity ? '' : a.maxLength}}$`).dfa;
    d = guard(() => intersectDfa(d, len), at);
  }
  return d;
}

/** Whether a string state (automaton state `q`, `len` characters so far) can still end validly. */
export function stringFeasible(a: StringAlt, q: number, len: number): boolean {
  const d = a.dfa!;
  if (len >= a.minLength) return len + d.minRemain[q]! <= a.maxLength;
  if (a.maxLength === Infinity) return d.maxRemain[q]! >= a.minLength - len;
  const bits = a.reach![q]!;
  for (let r = a.minLength - len; r <= a.maxLength - len; r++) if (bits[r >> 5]! & (1 << (r & 31))) return true;
  return false;
}

/** Whether the canonical JSON text of `v` is a complete document for `node` (enum filtering). */
function valueAccepted(node: ValueNode, v: unknown): boolean {
  // Lazy import cycle avoided: the recognizer only needs the node types from here.
  return acceptText!(node, JSON.stringify(v));
}
let acceptText: ((node: ValueNode, text: string) => boolean) | null = null;
/** Set by recognizer.ts (it depends on this module, not the other way round). */
export function setTextAcceptor(f: (node: ValueNode, text: string) => boolean): void {
  acceptText = f;
}

/**
 * Which alternatives can produce a finite value at all (least fixpoint: recursion must bottom
 * out); unsatisfiable ones are removed so the recognizer never offers a dead end. Throws when
 * the root has none left, naming the place that cannot end.
 */
function prune(root: ValueNode): ValueNode {
  const nodes: ValueNode[] = [];
  const seen = new Set<ValueNode>();
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    nodes.push(n);
    for (const a of n.alts) {
      if (a.kind === 'object') {
        for (const p of a.props) stack.push(p.value);
        if (a.additional) stack.push(a.additional);
        for (const p of a.patterns) stack.push(p.value);
      } else if (a.kind === 'array') {
        stack.push(...a.prefix);
        if (a.items) stack.push(a.items);
        if (a.contains) for (const x of [...a.contains.hitPrefix, a.contains.hitItems, ...a.contains.missPrefix, a.contains.missItems]) if (x) stack.push(x);
      }
    }
  }
  const okAlt = new Set<Alt>();
  const okNode = new Set<ValueNode>();
  let changed = true;
  const altOk = (a: Alt): boolean => {
    switch (a.kind) {
      case 'object': {
        if (!a.props.every((p) => !p.required || okNode.has(p.value))) return false;
        // minProperties: enough keys with satisfiable values.
        if (a.minProps === 0) return true;
        const freeOk = (a.additional !== null && okNode.has(a.additional)) || a.patterns.some((p) => okNode.has(p.value));
        return freeOk || a.props.filter((p) => okNode.has(p.value)).length >= a.minProps;
      }
      case 'array':
        if (a.contains) return containsFeasible(a, 0, 0, (x) => x !== null && okNode.has(x));
        for (let i = 0; i < a.minItems; i++) {
          const item = i < a.prefix.length ? a.prefix[i]! : a.items;
          if (!item || !okNode.has(item)) return false;
        }
        return true;
      default:
        return true;
    }
  };
  while (changed) {
    changed = false;
    for (const n of nodes) {
      for (const a of n.alts) {
        if (!okAlt.has(a) && altOk(a)) {
          okAlt.add(a);
          changed = true;
        }
      }
      if (!okNode.has(n) && n.alts.some((a) => okAlt.has(a))) {
        okNode.add(n);
        changed = true;
      }
    }
  }
  if (!okNode.has(root)) throw new SchemaError(`no value satisfies the schema: ${explain(root, okNode, new Set())}`, whereOf(root, okNode, new Set()));
  // Rewrite in place: drop what cannot be completed (ANY is shared and always fine).
  for (const n of nodes) {
    if (n === ANY) continue;
    n.alts = n.alts.filter((a) => okAlt.has(a));
    for (let i = 0; i < n.alts.length; i++) {
      const a = n.alts[i]!;
      if (a.kind === 'object' && !a.generic) {
        const props = a.props.filter((p) => okNode.has(p.value));
        const additional = a.additional && okNode.has(a.additional) ? a.additional : null;
        const patterns = a.patterns.filter((p) => okNode.has(p.value));
        n.alts[i] = { ...a, props, additional, patterns, freeKeys: additional || patterns.length ? a.freeKeys : null };
      } else if (a.kind === 'array' && !a.generic) {
        let max = a.maxItems;
        const k = a.prefix.findIndex((p) => !okNode.has(p));
        if (k >= 0) max = Math.min(max, k);
        const items = a.items && okNode.has(a.items) ? a.items : null;
        if (!items) max = Math.min(max, a.prefix.length);
        const okOr = (x: ValueNode | null) => (x && okNode.has(x) ? x : null);
        const c = a.contains;
        const contains = c && { ...c, hitPrefix: c.hitPrefix.map(okOr), hitItems: okOr(c.hitItems), missPrefix: c.missPrefix.map(okOr), missItems: okOr(c.missItems) };
        n.alts[i] = { ...a, items, maxItems: max, contains };
      }
    }
  }
  return root;
}

function explain(n: ValueNode, ok: Set<ValueNode>, path: Set<ValueNode>): string {
  if (n.alts.length === 0) return 'a $ref cycle without a schema in it';
  if (path.has(n)) return 'it requires itself, so the recursion can never end';
  path.add(n);
  for (const a of n.alts) {
    if (a.kind === 'object') {
      const p = a.props.find((p) => p.required && !ok.has(p.value));
      if (p) return explain(p.value, ok, path);
    } else if (a.kind === 'array') {
      const item = a.prefix.find((x) => !ok.has(x)) ?? a.items;
      if (item && !ok.has(item)) return explain(item, ok, path);
    }
  }
  return 'no alternative can be completed';
}

function whereOf(n: ValueNode, ok: Set<ValueNode>, path: Set<ValueNode>): string {
  const here = (n.alts[0] as { at?: string } | undefined)?.at ?? '#';
  if (path.has(n)) return here;
  path.add(n);
  for (const a of n.alts) {
    if (a.kind === 'object') {
      const p = a.props.find((p) => p.required && !ok.has(p.value));
      if (p) return path.has(p.value) ? `${a.at}/properties/${p.name.slice(0, 40)}` : whereOf(p.value, ok, path);
    }
  }
  return here;
}
