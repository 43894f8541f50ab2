// Token-level constraint on the REAL Qwen3 vocabulary (151,643 byte-level BPE tokens + added
// tokens): the sorted-vocabulary mask equals a brute-force check of every token, partial UTF-8
// tokens are handled, real tokenizations of valid documents pass, EOS only at the end, special
// tokens never; and forced tool calls round-trip through engine-text's parsers in all formats.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTextPipeline, parseToolCalls, TOOL_MARKER_TOKENS, type TextPipeline } from '../../main/engine/text/index.ts';
import {
  advanceBytes,
  advanceText,
  allowedTokenIds,
  ANY_OBJECT_NODE,
  buildTokenTable,
  canEnd,
  compileConstraint,
  compileSchema,
  initialState,
  isDone,
  TokenConstraint,
  TriggeredTokenConstraint,
  lazyToolCallConstraint,
  createTokenConstraint,
  tokenMask,
  toolCallConstraint,
  type RecognizerState,
  type TokenTable,
  type ValueNode,
} from '../../main/engine/constrain/index.ts';
import { QWEN3_TOKENIZER_DIR } from '../helpers/tiny-model.ts';

const VOCAB = 151_936; // Qwen3's embedding rows (ids past the tokenizer's are padding)
let text: TextPipeline;
let table: TokenTable;
let eos: Set<number>;
const enc = new TextEncoder();

before(async () => {
  text = await loadTextPipeline(QWEN3_TOKENIZER_DIR);
  table = buildTokenTable(text.tokenizer, VOCAB, new Set(TOOL_MARKER_TOKENS));
  eos = new Set(text.eosTokenIds);
});

function bruteForce(state: RecognizerState): number[] {
  const out: number[] = [];
  for (let id = 0; id < VOCAB; id++) {
    const b = table.bytes[id];
    if (b && advanceBytes(state, b)) out.push(id);
  }
  return out;
}

const email = (maxLength?: number) =>
  compileSchema({
    type: 'object',
    // zod 4's z.email(): the format plus zod's own pattern.
    properties: { e: { type: 'string', format: 'email', pattern: "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$", ...(maxLength ? { maxLength } : {}) } },
    required: ['e'],
  });
const node = (n: ValueNode) => n;

const person = () =>
  compileSchema({
    type: 'object',
    properties: { name: { type: 'string', maxLength: 4 }, kind: { enum: ['cat', 'dog', 'cow'] }, n: { type: 'integer' } },
    required: ['name', 'kind', 'n'],
    additionalProperties: false,
  });

describe('token table', () => {
  test('bytes per id: byte-level tokens decode to raw bytes, specials other than tool markers have none', () => {
    const id = (s: string) => text.tokenizer.tokenToId(s)!;
    assert.deepEqual([...table.bytes[id('Ġ{')]!], [0x20, 0x7b]);
    assert.equal(table.bytes[151644], null); // <|im_start|>
    assert.equal(table.bytes[151645], null); // <|im_end|> (EOS is handled separately)
    assert.equal(new TextDecoder().decode(table.bytes[151657]!), '<tool_call>');
    assert.equal(table.bytes[151700], null); // embedding padding row
    // Every id's bytes are exactly what the tokenizer decodes it to (when it is whole UTF-8).
    let checked = 0;
    for (let i = 0; i < 151_643; i += 97) {
      const b = table.bytes[i]!;
      const s = new TextDecoder('utf-8', { fatal: false }).decode(b);
      if (s.includes('\uFFFD')) continue;
      assert.equal(text.decode([i]), s, `id ${i}`);
      checked++;
    }
    assert.ok(checked > 1400);
  });

  const states: [string, () => ValueNode, string | Uint8Array][] = [
    ['json_object start', () => ANY_OBJECT_NODE, ''],
    ['after {', () => ANY_OBJECT_NODE, '{'],
    ['free key', () => ANY_OBJECT_NODE, '{"ab'],
    ['free string (fast path)', () => ANY_OBJECT_NODE, '{"a":"hello'],
    ['string inside an array', () => ANY_OBJECT_NODE, '{"a":["x'],
    ['half a UTF-8 character', () => ANY_OBJECT_NODE, Uint8Array.of(...enc.encode('{"a":"'), 0xe6, 0x97)],
    ['number', () => ANY_OBJECT_NODE, '{"a":12'],
    ['after a value', () => ANY_OBJECT_NODE, '{"a":12,'],
    ['declared key', person, '{"na'],
    ['bounded string', person, '{"name":"ab'],
    ['enum literal', person, '{"name":"x","kind":"c'],
    ['integer at the root of the last value', person, '{"name":"x","kind":"cat","n":4'],
    ['strings in several anyOf branches (different maxLength)', () => compileSchema({ anyOf: [{ type: 'string', maxLength: 3 }, { type: 'string', maxLength: 6 }, { enum: ['abcdefgh'] }] }), '"ab'],
    ['keys in several anyOf branches', () => compileSchema({ anyOf: [{ type: 'object' }, { type: 'object', additionalProperties: { type: 'integer' } }] }), '{"k'],
    // Pattern/format strings (pattern-mask.ts: character classes, grouped tokens, closing tails).
    ['email: start of the string', () => email(), '{"e":"'],
    ['email: local part', () => email(), '{"e":"ada.lo'],
    ['email: after @', () => email(), '{"e":"ada@ex'],
    ['email: after a dot in the domain', () => email(), '{"e":"ada@example.c'],
    ['email + maxLength: near the limit', () => email(24), '{"e":"abcdefghijklmnopq@x.'],
    ['uuid: mid-way', () => compileSchema({ type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] }), '{"id":"123e4567-e8'],
    ['date-time: the time part', () => compileSchema({ type: 'array', items: { type: 'string', format: 'date-time' } }), '["2024-02-29T1'],
    ['pattern with minLength and maxLength (exact remaining lengths)', () => compileSchema({ type: 'string', pattern: '^(ab)+$', minLength: 3, maxLength: 9 }), '"ab'],
    ['pattern with non-ASCII characters (tokens ending inside one)', () => compileSchema({ type: 'string', pattern: '^[a-zé日本語]+$', maxLength: 12 }), '"a'],
    ['pattern with escapes (\\n, \\")', () => compileSchema({ type: 'object', properties: { s: { type: 'string', pattern: '^[a-z\\n"]*$' } } }), '{"s":"a'],
    ['root pattern string (only EOS may follow the quote)', () => compileSchema({ type: 'string', pattern: '^[a-z]{2,5}$' }), '"ab'],
    ['pattern-constrained free key (record with regex keys)', () => compileSchema({ type: 'object', propertyNames: { pattern: '^[A-Z_]+$' }, additionalProperties: { type: 'integer' } }), '{"AB'],
    ['uniqueItems array of pattern strings (the close depends on the text)', () => compileSchema({ type: 'array', items: { type: 'string', pattern: '^[a-c]{1,3}$' }, uniqueItems: true }), '["ab","a'],
    ['contains: an item read as counting and as not counting (literal + pattern string)', () => compileSchema({ type: 'array', items: { type: 'string', maxLength: 8 }, contains: { const: 'urgent' }, minContains: 1, maxContains: 1 }), '["bug", "ur'],
    ['anyOf: a pattern string and a free string', () => compileSchema({ anyOf: [{ type: 'string', format: 'uuid' }, { type: 'string', maxLength: 5 }] }), '"12'],
    ['pattern string in a tool call (suffix after the value)', () => node(compileConstraint({ schema: { type: 'object', properties: { d: { type: 'string', format: 'date' } }, required: ['d'] }, prefix: '<tool_call>\n', suffix: '\n</tool_call>' }).node), '{"d":"2024-0'],
  ];
  for (const [name, node, prefix, pattern = /pattern|email|uuid|date|contains|record with regex/.test(name)] of states) {
    test(`sorted-vocabulary mask = brute force: ${name}`, () => {
      const st = (typeof prefix === 'string' ? advanceText(initialState(node()), prefix) : advanceBytes(initialState(node()), prefix))!;
      assert.ok(st, String(prefix));
      const want = bruteForce(st);
      assert.deepEqual(allowedTokenIds(table, st).sort((a, b) => a - b), want);
      // The sampler's form: the same set, as a deny list inside strings.
      const m = tokenMask(table, st);
      let got: number[];
      if ('deny' in m) {
        const denied = new Set(m.deny);
        assert.equal(denied.size, m.deny.length, 'no duplicates');
        got = [];
        for (let id = 0; id < VOCAB; id++) if (!denied.has(id)) got.push(id);
        // The shorter of the two lists (a free string: a few thousand refused ids).
        assert.ok(m.deny.length <= VOCAB / 2 && (pattern || m.deny.length < 10_000), `${name}: deny list of ${m.deny.length}`);
      } else {
        got = [...m.allow].sort((a, b) => a - b);
        assert.ok(m.allow.length <= VOCAB / 2 + 8, `${name}: allow list of ${m.allow.length}`);
      }
      assert.deepEqual(got, want);
    });
  }

  test('partial UTF-8: a token ending inside a character is allowed in a string; then only its continuation', () => {
    // Feed the first byte of "é" (0xC3) as a byte token: afterwards every allowed token must
    // start with a continuation byte.
    const st = advanceBytes(advanceText(initialState(ANY_OBJECT_NODE), '{"a":"')!, Uint8Array.of(0xc3))!;
    const ids = allowedTokenIds(table, st);
    assert.ok(ids.length > 0);
    for (const id of ids) {
      const b0 = table.bytes[id]![0]!;
      assert.ok(b0 >= 0x80 && b0 <= 0xbf, `id ${id} starts with ${b0.toString(16)}`);
    }
    // In a key that must be one of the declared ASCII names, no non-ASCII lead byte is possible.
    const key = advanceText(initialState(person()), '{"')!;
    for (const id of allowedTokenIds(table, key)) assert.ok(table.bytes[id]![0]! < 0x80);
  });
});

/** The allowed ids a TokenMask stands for, ascending. */
function maskIds(m: ReturnType<typeof tokenMask>): number[] {
  if ('allow' in m) return [...m.allow].sort((a, b) => a - b);
  const denied = new Set(m.deny);
  const out: number[] = [];
  for (let id = 0; id < VOCAB; id++) if (!denied.has(id) && table.bytes[id]) out.push(id);
  return out;
}

describe('pattern masks are cached per automaton state, never across what they depend on', () => {
  // Masks inside pattern strings are cached on the token table by (automaton content, state,
  // length context); the closing tokens are decided per step. Each case asks for masks that share
  // a cache key's parts but must differ, in an order where a stale entry would be returned, and
  // compares every mask with the brute force.
  const tok = (s: string) => text.tokenizer.tokenToId(s)!;
  const check = (node: ValueNode, prefix: string) => {
    const st = advanceText(initialState(node), prefix)!;
    assert.ok(st, prefix);
    const got = maskIds(tokenMask(table, st));
    assert.deepEqual(got, bruteForce(st), prefix);
    return new Set(got);
  };
  const emailIn = (rest: Record<string, unknown>, required: string[], extra: Record<string, unknown> = {}) =>
    compileSchema({ type: 'object', properties: { e: { type: 'string', format: 'email', ...extra }, ...rest }, required: ['e', ...required], additionalProperties: false });

  test('the same email state before another required key and at the end of the object', () => {
    const prefix = '{"e":"ada@example.co';
    const last = check(emailIn({}, []), prefix);
    const more = check(emailIn({ n: { type: 'integer' } }, ['n']), prefix);
    const lastAgain = check(emailIn({}, []), prefix);
    assert.deepEqual(lastAgain, last);
    // '"}' closes the object only where no key is left; '",' only where one is.
    assert.ok(last.has(tok('"}')) && !last.has(tok('",')));
    assert.ok(more.has(tok('",')) && !more.has(tok('"}')));
  });

  test('the same automaton state with and without maxLength, and at different lengths of one string', () => {
    const unbounded = check(emailIn({}, []), '{"e":"ada@exam');
    const bounded = check(emailIn({}, [], { maxLength: 12 }), '{"e":"ada@exam');
    assert.ok(bounded.size < unbounded.size);
    // One state of ^[a-z]+$ (the loop), far from maxLength (length-free) and near it.
    const word = () => compileSchema({ type: 'string', pattern: '^[a-z]+$', maxLength: 40 });
    const far = check(word(), '"ab');
    const near = check(word(), '"' + 'a'.repeat(37));
    const farAgain = check(word(), '"abcd');
    assert.deepEqual(farAgain, far);
    assert.ok(near.size < far.size);
    for (const id of near) if (table.bytes[id]![0] !== 0x22) assert.ok(table.bytes[id]!.length <= 3, 'at most 3 more letters');
  });

  test('a root string (only the end may follow) and the same pattern inside an array', () => {
    const pat = { type: 'string', pattern: '^[a-z]{2,5}$' };
    const root = check(compileSchema(pat), '"abc');
    const item = check(compileSchema({ type: 'array', items: pat }), '["abc');
    const rootAgain = check(compileSchema(pat), '"abc');
    assert.deepEqual(rootAgain, root);
    assert.ok(item.has(tok('",')) && item.has(tok('"]')));
    assert.ok(!root.has(tok('",')) && !root.has(tok('"]')) && root.has(tok('"')));
  });

  test('a pattern-constrained free key that may run into a key already written is checked by its text, not only its automaton state', () => {
    // ^[a-z]{1,4}$ keys, "frie" written: after "fri" the letter e leads only to a duplicate.
    const rec = () => compileSchema({ type: 'object', propertyNames: { pattern: '^[a-z]{1,4}$' }, additionalProperties: { type: 'integer' } });
    const fresh = check(rec(), '{"frie": 1, "abc');
    const clash = check(rec(), '{"frie": 1, "fri');
    assert.ok(fresh.has(tok('e')));
    assert.ok(!clash.has(tok('e')) && clash.has(tok('a')));
  });

  test('an anyOf of a pattern string and a free string, and a contains item read two ways, combine their masks', () => {
    check(compileSchema({ anyOf: [{ type: 'string', format: 'email' }, { type: 'string', maxLength: 3 }] }), '"ab');
    check(compileSchema({ anyOf: [{ type: 'string', format: 'email' }, { type: 'string', maxLength: 3 }] }), '"abc');
    const contains = () => compileSchema({ type: 'array', items: { type: 'string', maxLength: 8 }, contains: { const: 'urgent' }, minContains: 1, maxContains: 1 });
    check(contains(), '["');
    check(contains(), '["urgent');
    check(contains(), '["urgent", "u');
  });
});

describe('TokenConstraint', () => {
  test('real tokenizations of valid documents are accepted token by token; EOS only once complete', () => {
    const docs: [ValueNode, string][] = [
      [ANY_OBJECT_NODE, '{"greeting": "héllo 🫠 日本", "list": [1, 2.5, true, null], "nested": {"k": []}}'],
      [ANY_OBJECT_NODE, '{\n  "a": "b"\n}'],
      [person(), '{"name": "Tom", "kind": "dog", "n": 42}'],
    ];
    for (const [node, doc] of docs) {
      const c = new TokenConstraint(table, node, eos);
      const ids = text.encode(doc, { addSpecialTokens: false });
      for (const [i, id] of ids.entries()) {
        for (const e of eos) assert.equal(c.accepts(e), false, `EOS before the end of ${doc}`);
        assert.ok(c.accepts(id), `token ${i} ${JSON.stringify(text.decode([id]))} of ${doc}`);
        c.advance(id);
      }
      assert.ok(c.done, doc);
      for (const e of eos) assert.ok(c.accepts(e));
      assert.deepEqual(c.allowedTokens().sort(), [...eos].sort(), 'after a complete object only EOS');
    }
  });

  test('refused tokens are refused, and advance() on them throws without moving', () => {
    const c = new TokenConstraint(table, person(), eos);
    const bad = text.encode('[', { addSpecialTokens: false })[0]!;
    assert.equal(c.accepts(bad), false);
    assert.throws(() => c.advance(bad), /not allowed/);
    const good = text.encode('{"', { addSpecialTokens: false });
    for (const id of good) {
      assert.ok(c.accepts(id));
      c.advance(id);
    }
    assert.equal(c.accepts(151644), false); // <|im_start|>
    assert.ok(c.stats.checks > 0);
  });

  test('a root number may end (EOS allowed) but may also continue', () => {
    const c = new TokenConstraint(table, compileSchema({ type: 'integer' }), eos);
    for (const id of text.encode('12', { addSpecialTokens: false })) c.advance(id);
    assert.ok(c.canEnd);
    assert.equal(c.done, false);
    const allowed = new Set(c.allowedTokens());
    for (const e of eos) assert.ok(allowed.has(e));
    assert.ok(allowed.has(text.tokenizer.tokenToId('3')!));
  });
});

describe('forced tool calls in every tool-call format', () => {
  const tools = [
    { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false } } },
    { type: 'function' as const, function: { name: 'noop' } },
  ];
  const cases = [
    ['hermes', '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>'],
    ['llama3_json', '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}'],
    ['mistral', '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]'],
  ] as const;
  for (const [format, call] of cases) {
    test(`${format}: the constrained text is complete exactly at the end of the call and parses back`, () => {
      const c = compileConstraint(toolCallConstraint(format, tools)!);
      const st = advanceText(initialState(c.node, c), call);
      assert.ok(st && isDone(st), call);
      const parsed = parseToolCalls(call, format);
      assert.equal(parsed.toolCalls.length, 1);
      assert.equal(parsed.toolCalls[0]!.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(parsed.toolCalls[0]!.function.arguments), { city: 'Paris', unit: 'c' });
      // Another name, or arguments breaking the tool's schema, are refused.
      assert.equal(advanceText(initialState(c.node, c), call.replace('get_weather', 'rm_rf')), null);
      assert.equal(advanceText(initialState(c.node, c), call.replace('"c"', '"k"')), null);
      // A tool without parameters takes any object.
      const noop = call.replace('get_weather', 'noop');
      const st2 = advanceText(initialState(c.node, c), noop);
      assert.ok(st2 && isDone(st2), noop);
    });
  }
  test("'none' (no tool-call format in the template) → no constraint", () => {
    assert.equal(toolCallConstraint('none', tools), null);
  });
  test("a tool's root-relative $ref '#' is refused (it would point at the combined schema)", () => {
    const params = { type: 'object', properties: { child: { $ref: '#' } } };
    assert.throws(() => toolCallConstraint('hermes', [{ type: 'function', function: { name: 'f', parameters: params } }]), /\$defs/);
  });
  test('a tool parameter schema that is not an object is refused', () => {
    assert.throws(() => toolCallConstraint('hermes', [{ type: 'function', function: { name: 'f', parameters: { type: 'string' } } }]), /object/);
  });
  test('the hermes marker may be written as the <tool_call> added token', () => {
    const c = compileConstraint(toolCallConstraint('hermes', tools)!);
    const tc = new TokenConstraint(table, c.node, eos, c);
    assert.ok(tc.accepts(151657));
    assert.ok(canEnd(advanceText(initialState(c.node, c), '<tool_call>\n{"name": "noop", "arguments": {}}\n</tool_call>')!));
  });
});


describe('lazy tool-call constraint (tool_choice auto)', () => {
  const tools = [
    { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false } } },
  ];
  const make = () => createTokenConstraint(table, compileConstraint(lazyToolCallConstraint('hermes', tools)!), eos) as TriggeredTokenConstraint;
  const feed = (c: TriggeredTokenConstraint, s: string) => {
    for (const id of text.encode(s, { addSpecialTokens: false })) {
      assert.ok(c.accepts(id), `refused ${JSON.stringify(text.decode([id]))} in ${JSON.stringify(s)}`);
      c.advance(id);
    }
  };
  const CALL = '\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>';

  test('free text is free (any token, specials, EOS); a call is enforced from <tool_call> to </tool_call>; then free again', () => {
    const c = make();
    feed(c, 'Sure, [1, 2] {"not": "a call"} ');
    assert.ok(c.accepts(151644)); // <|im_start|>: free text takes anything
    for (const e of eos) assert.ok(c.accepts(e));
    assert.equal(c.active, false);
    assert.ok(c.accepts(151657)); // the <tool_call> added token
    c.advance(151657);
    assert.ok(c.active);
    for (const e of eos) assert.equal(c.accepts(e), false, 'no EOS inside a call');
    assert.equal(c.accepts(text.tokenizer.tokenToId('[')!), false);
    feed(c, CALL.slice(0, 20));
    feed(c, CALL.slice(20));
    assert.equal(c.active, false);
    assert.equal(c.done, false);
    for (const e of eos) assert.ok(c.accepts(e));
    feed(c, '\n<tool_call>' + CALL); // a second call
    assert.equal(c.active, false);
  });

  test('a wrong tool name or arguments are refused inside a call', () => {
    for (const bad of ['\n{"name": "rm_rf"', '\n{"name": "get_weather", "arguments": {"city": 1', '\n{"arguments"']) {
      const c = make();
      c.advance(151657);
      const ids = text.encode(bad, { addSpecialTokens: false });
      let refused = false;
      for (const id of ids) {
        if (!c.accepts(id)) {
          refused = true;
          break;
        }
        c.advance(id);
      }
      assert.ok(refused, bad);
    }
  });

  test('the trigger also fires when spelled with ordinary tokens across steps; the mask refuses exactly what breaks the call', () => {
    const c = make();
    for (const piece of ['<', 'tool', '_call']) {
      const id = text.tokenizer.tokenToId(piece)!;
      assert.ok(c.accepts(id), piece);
      c.advance(id);
    }
    assert.equal(c.active, false);
    const m = c.mask();
    assert.ok('deny' in m);
    const denied = new Set((m as { deny: number[] }).deny);
    // Every denied token starts with '>' (it completes the trigger) and then breaks the call;
    // every other token is accepted.
    let checked = 0;
    for (let id = 0; id < 151_643; id += 7) {
      const b = table.bytes[id];
      if (!b) continue;
      assert.equal(c.accepts(id), !denied.has(id), `id ${id}`);
      if (denied.has(id)) assert.equal(b[0], 0x3e);
      checked++;
    }
    assert.ok(checked > 20_000);
    assert.ok(denied.size > 0);
    const gt = text.tokenizer.tokenToId('>')!;
    assert.ok(c.accepts(gt));
    c.advance(gt);
    assert.ok(c.active);
  });

  test('only for formats with a marker, and never refusing: llama3_json / none / unenforceable parameters → no constraint', () => {
    assert.equal(lazyToolCallConstraint('llama3_json', tools), null);
    assert.equal(lazyToolCallConstraint('none', tools), null);
    assert.equal(lazyToolCallConstraint('hermes', [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'string', pattern: '(a)\\1' } } } } }]), null);
    assert.equal(lazyToolCallConstraint('mistral', tools)?.trigger, '[TOOL_CALLS]');
  });
});
