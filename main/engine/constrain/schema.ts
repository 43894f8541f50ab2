// Compiles a JSON Schema (the subset OpenAI structured outputs use, plus a few cheap extras) into
// the value graph the recognizer walks. Pure TS, no MLX: the server compiles every schema once to
// reject what we cannot enforce (400) before any engine work, the engine compiles it again.
//
// Semantics (documented in the README's API section):
// - A value node is a set of alternatives ("alts"): object, array, string, number/integer, or a
//   literal (enum/const values, true/false/null) matched as its canonical JSON text
//   (JSON.stringify, so no whitespace inside enum objects/arrays, numbers as JS prints them).
// - anyOf / type arrays / nullable are unions of alts. allOf with one member is that member.
// - Objects: keys are emitted in the schema's `properties` order (like OpenAI and llama.cpp);
//   required keys are always present, optional ones may be skipped. additionalProperties: false —
//   or absent while `properties` is given (as llama.cpp and outlines do: the model never invents
//   keys) — allows no other keys; true or a schema allows extra, distinct keys (after, between or
//   before declared ones). An object schema without `properties` is a free map.
// - Refused (SchemaError → HTTP 400): keywords that constrain values we cannot enforce while
//   generating (pattern, format, minimum/maximum, multipleOf, oneOf, not, if/then/else, …),
//   $ref outside the document, unsatisfiable schemas. Annotations (title, description, default,
//   examples, …) and unknown non-standard keywords are ignored (validators ignore them too).

export class SchemaError extends Error {
  override name = 'SchemaError';
  constructor(
    message: string,
    /** JSON-pointer-like location inside the schema, e.g. `#/properties/age`. */
    readonly at: string,
  ) {
    super(`${message} (at ${at})`);
  }
}

export interface ObjectAlt {
  kind: 'object';
  props: Prop[];
  /** Schema of keys not in `props`; null = no other keys. */
  additional: ValueNode | null;
  /** A container of the "any JSON" node: limited in nesting depth by the recognizer. */
  generic: boolean;
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
  items: ValueNode;
  minItems: number;
  maxItems: number;
  generic: boolean;
}

export interface StringAlt {
  kind: 'string';
  minLength: number;
  maxLength: number;
}

export interface NumberAlt {
  kind: 'number';
  integer: boolean;
}

export interface LiteralAlt {
  kind: 'literal';
  /** Canonical JSON texts (UTF-8), sorted bytewise, distinct. */
  texts: Uint8Array[];
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

/** Any JSON value (json_object's values, `{}` schemas, additionalProperties: true). */
export const ANY: ValueNode = { alts: [] };
const ANY_OBJECT: ObjectAlt = { kind: 'object', props: [], additional: ANY, generic: true };
const ANY_ARRAY: ArrayAlt = { kind: 'array', items: ANY, minItems: 0, maxItems: Infinity, generic: true };
ANY.alts.push(
  ANY_OBJECT,
  ANY_ARRAY,
  { kind: 'string', minLength: 0, maxLength: Infinity },
  { kind: 'number', integer: false },
  literalAlt([true, false, null]),
);
/** Any JSON object: the `json_object` response format. */
export const ANY_OBJECT_NODE: ValueNode = { alts: [ANY_OBJECT] };

/** Keywords that carry no constraint on the value (or are handled elsewhere). */
const ANNOTATIONS = new Set([
  '$schema', '$id', '$comment', '$anchor', 'title', 'description', 'default', 'examples', 'deprecated',
  'readOnly', 'writeOnly', '$defs', 'definitions', 'strict', 'contentMediaType',
]);
/** Standard validation keywords we cannot enforce while generating: refused, never ignored. */
const REFUSED = new Set([
  'pattern', 'format', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minProperties', 'maxProperties', 'patternProperties', 'propertyNames', 'dependentRequired',
  'dependentSchemas', 'dependencies', 'if', 'then', 'else', 'not', 'oneOf', 'contains', 'minContains',
  'maxContains', 'prefixItems', 'additionalItems', 'unevaluatedProperties', 'unevaluatedItems',
  'contentEncoding', 'contentSchema', '$dynamicRef', '$recursiveRef',
]);
const TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);

export interface CompileOptions {
  /** Upper bound on schema nodes (a hostile schema cannot make compilation expensive). */
  maxNodes?: number;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function typeOfValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function valueMatchesTypes(v: unknown, types: Set<string>): boolean {
  const t = typeOfValue(v);
  return types.has(t) || (t === 'integer' && types.has('number'));
}

const nonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Compiles `schema` (the root of its document); throws SchemaError for what cannot be enforced. */
export function compileSchema(schema: unknown, opts: CompileOptions = {}): ValueNode {
  const maxNodes = opts.maxNodes ?? 10_000;
  let nodes = 0;
  const root = schema;
  const refs = new Map<string, ValueNode>();

  function resolveRef(ref: string, at: string): ValueNode {
    const hit = refs.get(ref);
    if (hit) return hit;
    let target: unknown;
    if (ref === '#') target = root;
    else {
      const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
      if (!m) throw new SchemaError(`$ref '${ref.slice(0, 80)}' is not supported (only '#', '#/$defs/…' and '#/definitions/…')`, at);
      const name = m[2]!.replace(/~1/g, '/').replace(/~0/g, '~');
      const defs = isObj(root) ? root[m[1]!] : undefined;
      target = isObj(defs) && Object.prototype.hasOwnProperty.call(defs, name) ? defs[name] : undefined;
      if (target === undefined) throw new SchemaError(`$ref '${ref.slice(0, 80)}' points to nothing`, at);
    }
    // Placeholder first: recursive schemas refer back to it while it is being compiled.
    const node: ValueNode = { alts: [] };
    refs.set(ref, node);
    node.alts.push(...compile(target, ref).alts);
    return node;
  }

  function compile(s: unknown, at: string): ValueNode {
    if (++nodes > maxNodes) throw new SchemaError(`schema is too large (more than ${maxNodes} subschemas)`, at);
    if (s === true) return ANY;
    if (s === false) throw new SchemaError('schema `false` accepts no value', at);
    if (!isObj(s)) throw new SchemaError('a schema must be an object or a boolean', at);
    for (const k of Object.keys(s)) {
      if (REFUSED.has(k)) throw new SchemaError(`keyword '${k}' is not supported for constrained output`, at);
    }
    if (s.uniqueItems === true) throw new SchemaError("keyword 'uniqueItems: true' is not supported for constrained output", at);

    if (s.$ref !== undefined) {
      if (typeof s.$ref !== 'string') throw new SchemaError('$ref must be a string', at);
      const others = Object.keys(s).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
      if (others.length > 0) throw new SchemaError(`keywords next to $ref are not supported ('${others[0]}')`, at);
      return resolveRef(s.$ref, at);
    }

    if (s.allOf !== undefined) {
      if (!Array.isArray(s.allOf) || s.allOf.length !== 1) throw new SchemaError("'allOf' is supported only with exactly one schema", at);
      const others = Object.keys(s).filter((k) => k !== 'allOf' && !ANNOTATIONS.has(k));
      if (others.length > 0) throw new SchemaError(`keywords next to allOf are not supported ('${others[0]}')`, at);
      return compile(s.allOf[0], `${at}/allOf/0`);
    }

    let typeList: string[] | null = null;
    if (s.type !== undefined) {
      const raw = Array.isArray(s.type) ? s.type : [s.type];
      if (raw.length === 0) throw new SchemaError("'type' must not be empty", at);
      for (const t of raw) if (typeof t !== 'string' || !TYPES.has(t)) throw new SchemaError(`unknown type '${String(t).slice(0, 20)}'`, at);
      typeList = raw as string[];
    }
    if (s.nullable === true && typeList && !typeList.includes('null')) typeList = [...typeList, 'null'];

    if (s.anyOf !== undefined) {
      if (!Array.isArray(s.anyOf) || s.anyOf.length === 0) throw new SchemaError("'anyOf' must be a non-empty array", at);
      const others = Object.keys(s).filter((k) => k !== 'anyOf' && k !== 'nullable' && !ANNOTATIONS.has(k));
      if (others.length > 0) throw new SchemaError(`keywords next to anyOf are not supported ('${others[0]}'); move them into each branch`, at);
      const alts: Alt[] = [];
      s.anyOf.forEach((sub, i) => alts.push(...compile(sub, `${at}/anyOf/${i}`).alts));
      if (s.nullable === true) alts.push(literalAlt([null]));
      return { alts };
    }

    if (s.enum !== undefined || s.const !== undefined) {
      let values: unknown[];
      if (s.const !== undefined) values = [s.const];
      else {
        if (!Array.isArray(s.enum) || s.enum.length === 0) throw new SchemaError("'enum' must be a non-empty array", at);
        values = s.enum;
      }
      if (s.enum !== undefined && s.const !== undefined) values = values.filter((v) => (s.enum as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(v)));
      if (typeList) {
        const ts = new Set(typeList);
        values = values.filter((v) => valueMatchesTypes(v, ts));
      }
      if (s.nullable === true && !values.includes(null)) values.push(null);
      for (const v of values) {
        if (typeof v === 'number' && !Number.isFinite(v)) throw new SchemaError('enum values must be finite numbers', at);
        if (typeof v === 'string' && (typeof v.length !== 'number' || v.length > 10_000)) throw new SchemaError('enum strings must be at most 10,000 characters', at);
        if (typeof v === 'object' && v !== null) {
          // Objects/arrays in enums are matched as their compact JSON text; nothing more to check here.
        }
      }
      if (values.length === 0) throw new SchemaError('no value satisfies both the enum/const and the type', at);
      return { alts: [literalAlt(values)] };
    }

    if (!typeList) {
      // No type: infer from the keywords present (like llama.cpp); none at all means any value.
      if (s.properties !== undefined || s.required !== undefined || s.additionalProperties !== undefined) typeList = ['object'];
      else if (s.items !== undefined || s.minItems !== undefined || s.maxItems !== undefined) typeList = ['array'];
      else if (s.minLength !== undefined || s.maxLength !== undefined) typeList = ['string'];
      else return ANY;
    }

    const alts: Alt[] = [];
    const literals: unknown[] = [];
    for (const t of new Set(typeList)) {
      if (t === 'object') alts.push(compileObject(s, at));
      else if (t === 'array') alts.push(compileArray(s, at));
      else if (t === 'string') alts.push(compileString(s, at));
      else if (t === 'number' || t === 'integer') {
        if (t === 'integer' && typeList.includes('number')) continue;
        alts.push({ kind: 'number', integer: t === 'integer' });
      } else if (t === 'boolean') literals.push(true, false);
      else literals.push(null);
    }
    if (literals.length) alts.push(literalAlt(literals));
    return { alts };
  }

  function compileObject(s: Obj, at: string): ObjectAlt {
    const propsRaw = s.properties;
    if (propsRaw !== undefined && !isObj(propsRaw)) throw new SchemaError("'properties' must be an object", at);
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) throw new SchemaError("'required' must be an array of strings", at);
    const req = new Set(required as string[]);
    const props: Prop[] = [];
    for (const [name, sub] of Object.entries(propsRaw ?? {})) {
      const key = enc.encode(JSON.stringify(name).slice(1));
      props.push({ name, key, value: compile(sub, `${at}/properties/${name.slice(0, 40)}`), required: req.has(name) });
    }
    let additional: ValueNode | null;
    const ap = s.additionalProperties;
    if (ap === undefined) additional = propsRaw === undefined ? ANY : null;
    else if (ap === false) additional = null;
    else if (ap === true) additional = ANY;
    else additional = compile(ap, `${at}/additionalProperties`);
    for (const r of req) {
      if (!props.some((p) => p.name === r)) {
        throw new SchemaError(`required property '${r.slice(0, 40)}' is not listed in 'properties'`, at);
      }
    }
    return { kind: 'object', props, additional, generic: false };
  }

  function compileArray(s: Obj, at: string): ArrayAlt {
    if (s.items !== undefined && Array.isArray(s.items)) throw new SchemaError("tuple 'items' (an array) is not supported", at);
    const items = s.items === undefined ? ANY : compile(s.items, `${at}/items`);
    const minItems = s.minItems ?? 0;
    const maxItems = s.maxItems ?? Infinity;
    if (!nonNegInt(minItems)) throw new SchemaError("'minItems' must be a non-negative integer", at);
    if (maxItems !== Infinity && !nonNegInt(maxItems)) throw new SchemaError("'maxItems' must be a non-negative integer", at);
    if (minItems > (maxItems as number)) throw new SchemaError("'minItems' is larger than 'maxItems'", at);
    if (minItems > 10_000) throw new SchemaError("'minItems' is too large (at most 10,000)", at);
    return { kind: 'array', items, minItems, maxItems: maxItems as number, generic: false };
  }

  function compileString(s: Obj, at: string): StringAlt {
    const minLength = s.minLength ?? 0;
    const maxLength = s.maxLength ?? Infinity;
    if (!nonNegInt(minLength)) throw new SchemaError("'minLength' must be a non-negative integer", at);
    if (maxLength !== Infinity && !nonNegInt(maxLength)) throw new SchemaError("'maxLength' must be a non-negative integer", at);
    if (minLength > (maxLength as number)) throw new SchemaError("'minLength' is larger than 'maxLength'", at);
    return { kind: 'string', minLength, maxLength: maxLength as number };
  }

  const node = compile(schema, '#');
  // A $ref cycle without a real schema in it (`{"$ref": "#"}`) leaves a node with no alternative.
  const seen = new Set<ValueNode>();
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.alts.length === 0) throw new SchemaError('no value satisfies the schema (a $ref cycle without a schema)', '#');
    for (const a of n.alts) {
      if (a.kind === 'object') {
        for (const p of a.props) stack.push(p.value);
        if (a.additional) stack.push(a.additional);
      } else if (a.kind === 'array') stack.push(a.items);
    }
  }
  return node;
}

