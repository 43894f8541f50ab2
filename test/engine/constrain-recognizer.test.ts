// The JSON-Schema recognizer in isolation: valid documents are accepted byte by byte, invalid
// prefixes are refused at the first bad byte, and (property tests with a seeded PRNG) everything
// it accepts as complete parses and validates with ajv, while it never reaches a dead end.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import {
  ANY_OBJECT_NODE,
  advanceByte,
  advanceText,
  canEnd,
  compileSchema,
  initialState,
  isDone,
  MAX_WS,
  SchemaError,
  type RecognizerState,
  type ValueNode,
} from '../../main/engine/constrain/index.ts';
import { rng } from '../helpers/rng.ts';

const enc = new TextEncoder();
const ajv = new Ajv({ strict: false });

/** 'done' | 'end' (may end, may continue) | 'open' | 'reject@<byte index>' */
function run(node: ValueNode, text: string, opts = {}): string {
  let s: RecognizerState | null = initialState(node, opts);
  const bytes = enc.encode(text);
  for (let i = 0; i < bytes.length; i++) {
    s = advanceByte(s!, bytes[i]!);
    if (!s) return `reject@${i}`;
  }
  return isDone(s!) ? 'done' : canEnd(s!) ? 'end' : 'open';
}

describe('recognizer: json_object (any JSON object)', () => {
  const ok = [
    '{}',
    '{"a":1}',
    '{"a": [1, -2.5e+3, 0, -0, 1E2, true, false, null, "x", {}, []], "b": {"c": {"d": []}}}',
    '{"esc": "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD7FF \\ue000 \\uFFFF"}',
    '{"unicode é 日本 🫠": "𝔘 龘"}',
    '{\n  "a": 1,\n\t"b": 2\n}',
  ];
  for (const t of ok) test(`accepts ${JSON.stringify(t).slice(0, 60)}`, () => assert.equal(run(ANY_OBJECT_NODE, t), 'done'));

  const bad: [string, number][] = [
    ['[1]', 0], // json_object: the root must be an object
    [' {}', 0], // no leading whitespace
    ['{"a":01}', 6], // leading zero
    ['{"a":1,}', 7], // trailing comma
    ['{"a":1 "b":2}', 7], // missing comma
    ['{"a":1, "a":2}', 10], // duplicate key (refused at its closing quote)
    ['{"a":"\u0001"}', 6], // raw control character
    ['{"a":"\\x"}', 7], // bad escape
    ['{"a":"\\u12G4"}', 10],
    ['{"a":"\\uD83D\\uDE00"}', 9], // surrogate escapes (raw UTF-8 writes astral characters)
    ['{"a":"\\udc00"}', 9],
    ['{"a":tru}', 8],
    ['{"a":1.}', 7],
    ['{"a":-}', 6],
    ['{"a":1e}', 7],
    ['{}x', 2], // nothing after the document
    ['{ \r"a":1}', 2], // \r is not part of the whitespace grammar
    ['{  "a":1}', 2], // one space, or a newline + indentation
  ];
  for (const [t, at] of bad) test(`refuses ${JSON.stringify(t)} at byte ${at}`, () => assert.equal(run(ANY_OBJECT_NODE, t), `reject@${at}`));

  test('invalid UTF-8 inside strings is refused (overlong, surrogates, stray continuation)', () => {
    const open = advanceText(initialState(ANY_OBJECT_NODE), '{"a":"')!;
    for (const seq of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0x80], [0xf5], [0xe0, 0x80], [0xf4, 0x90]]) {
      let s: RecognizerState | null = open;
      for (const b of seq) s = s && advanceByte(s, b);
      assert.equal(s, null, seq.map((b) => b.toString(16)).join(' '));
    }
    // A partial character stays open, and only its continuation may follow.
    const e = advanceByte(open, 0xc3)!;
    assert.ok(e);
    assert.equal(advanceByte(e, 0x22), null);
    assert.ok(advanceByte(e, 0xa9));
  });

  test(`whitespace is bounded: a newline plus at most ${MAX_WS} indentation bytes`, () => {
    assert.equal(run(ANY_OBJECT_NODE, `{\n${' '.repeat(MAX_WS)}"a":1}`), 'done');
    assert.equal(run(ANY_OBJECT_NODE, `{\n${' '.repeat(MAX_WS + 1)}"a":1}`), `reject@${MAX_WS + 2}`);
    assert.equal(run(ANY_OBJECT_NODE, '{\n\n"a":1}'), 'reject@2');
  });

  test('numbers have bounded digits (a model cannot loop on digits)', () => {
    assert.equal(run(ANY_OBJECT_NODE, `{"a":${'9'.repeat(16)}}`), 'done');
    assert.equal(run(ANY_OBJECT_NODE, `{"a":${'9'.repeat(17)}}`), 'reject@21');
    assert.equal(run(ANY_OBJECT_NODE, '{"a":1e99}'), 'done');
    assert.equal(run(ANY_OBJECT_NODE, '{"a":1e999}'), 'reject@9');
  });

  test('nesting inside free JSON is bounded', () => {
    assert.equal(run(ANY_OBJECT_NODE, '{"a":' + '['.repeat(20) + ']'.repeat(20) + '}'), 'done');
    assert.match(run(ANY_OBJECT_NODE, '{"a":' + '['.repeat(100)), /^reject@/);
  });
});

describe('recognizer: schemas', () => {
  const person = compileSchema({
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 3 },
      age: { type: 'integer' },
      tags: { type: 'array', items: { enum: ['a', 'b'] }, minItems: 1, maxItems: 2 },
      nick: { type: ['string', 'null'] },
      opt: { type: 'number' },
    },
    required: ['name', 'age', 'tags'],
    additionalProperties: false,
  });

  const cases: [string, string][] = [
    ['{"name":"abc","age":12,"tags":["a","b"]}', 'done'],
    ['{"name":"é日🫠","age":-3,"tags":["b"],"nick":null,"opt":1.5}', 'done'],
    ['{"name":"a","age":1,"tags":["a"],"opt":2}', 'done'], // optional 'nick' skipped
    ['{"name":"abcd"', 'reject@12'], // maxLength 3
    ['{"name":""', 'reject@9'], // minLength 1
    ['{"age":1', 'reject@2'], // keys in schema order; 'name' is required first
    ['{"name":"a","tags"', 'reject@13'], // cannot skip required 'age'
    ['{"name":"a","age":1.5', 'reject@19'], // integer
    ['{"name":"a","age":1e3', 'reject@19'],
    ['{"name":"a","age":1,"tags":[]', 'reject@28'], // minItems 1
    ['{"name":"a","age":1,"tags":["a","b","a"]', 'reject@35'], // maxItems 2
    ['{"name":"a","age":1,"tags":["c"]', 'reject@29'], // enum
    ['{"name":"a","age":1,"tags":["a"],"extra":1}', 'reject@34'], // additionalProperties false
    ['{"name":"a","age":1,"tags":["a"],"opt":1,"nick":null}', 'reject@40'], // order: nothing may follow 'opt'
    ['{"name":"a","age":1,"tags":["a"]', 'open'],
    ['{"name":"a","age":1,"tags":["a"],', 'open'],
  ];
  for (const [t, want] of cases) test(`${t} → ${want}`, () => assert.equal(run(person, t), want));

  test('required keys: `}` only when all are present, `,` only when another key can follow', () => {
    const s = compileSchema({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'], additionalProperties: false });
    assert.equal(run(s, '{}'), 'reject@1');
    assert.equal(run(s, '{"a":1,'), 'reject@6');
    assert.equal(run(s, '{"a":1}'), 'done');
  });

  test('additionalProperties: a schema → extra distinct keys with valid values; absent with properties → none', () => {
    const extra = compileSchema({ type: 'object', properties: { a: { type: 'string' } }, additionalProperties: { type: 'integer' } });
    assert.equal(run(extra, '{"x":1,"a":"s","y":2}'), 'done');
    assert.equal(run(extra, '{"x":"s"'), 'reject@5');
    assert.equal(run(extra, '{"x":1,"x":2}'), 'reject@9');
    assert.equal(run(extra, '{"a":"s","a":"t"}'), 'reject@11');
    const closed = compileSchema({ type: 'object', properties: { a: { type: 'string' } } });
    assert.equal(run(closed, '{"b"'), 'reject@2');
    const free = compileSchema({ type: 'object' });
    assert.equal(run(free, '{"anything":[1,{"x":null}]}'), 'done');
  });

  test('enum / const / anyOf / type arrays / nullable, including numbers that could continue', () => {
    const e = compileSchema({ enum: [1, 12, 'x', null, { k: [1] }] });
    assert.equal(run(e, '1'), 'end'); // may end, or continue to 12
    assert.equal(run(e, '12'), 'done');
    assert.equal(run(e, '13'), 'reject@1');
    assert.equal(run(e, '"x"'), 'done');
    assert.equal(run(e, '{"k":[1]}'), 'done');
    assert.equal(run(e, '{"k": [1]}'), 'reject@5'); // enum objects: compact JSON text only
    const any = compileSchema({ anyOf: [{ type: 'object', properties: { t: { const: 'a' }, v: { type: 'integer' } }, required: ['t', 'v'] }, { type: 'object', properties: { t: { const: 'b' }, w: { type: 'boolean' } }, required: ['t', 'w'] }] });
    assert.equal(run(any, '{"t":"a","v":1}'), 'done');
    assert.equal(run(any, '{"t":"b","w":true}'), 'done');
    assert.equal(run(any, '{"t":"b","v"'), 'reject@10');
    const nul = compileSchema({ type: 'string', nullable: true });
    assert.equal(run(nul, 'null'), 'done');
    const ta = compileSchema({ type: ['integer', 'boolean'] });
    assert.equal(run(ta, 'false'), 'done');
    assert.equal(run(ta, '7'), 'end');
    assert.equal(run(ta, '"'), 'reject@0');
  });

  test('$defs / $ref, including recursion', () => {
    const tree = compileSchema({
      $defs: { node: { type: 'object', properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['v', 'kids'], additionalProperties: false } },
      $ref: '#/$defs/node',
    });
    assert.equal(run(tree, '{"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[{"v":4,"kids":[]}]}]}'), 'done');
    assert.equal(run(tree, '{"v":1,"kids":[{"v":2}'), 'reject@21');
  });

  test('prefix/suffix literals around the value (tool-call markup)', () => {
    const s = compileSchema({ type: 'object', properties: { name: { const: 'f' } }, required: ['name'] });
    const opts = { prefix: '<tool_call>\n', suffix: '\n</tool_call>' };
    assert.equal(run(s, '<tool_call>\n{"name":"f"}\n</tool_call>', opts), 'done');
    assert.equal(run(s, '<tool_call>\n{"name":"f"}', opts), 'open');
    assert.equal(run(s, '{"name"', opts), 'reject@0');
  });
});

describe('recognizer: numbers, patterns, formats, objects, arrays, combinators (issue 13)', () => {
  const table: [string, unknown, [string, string][]][] = [
    ['integer bounds, digit by digit', { type: 'integer', minimum: 10, maximum: 25 }, [['3', 'reject@0'], ['26', 'reject@1'], ['2', 'open'], ['25', 'end'], ['10', 'end'], ['-', 'reject@0'], ['9', 'reject@0']]],
    ['negative integer bounds', { type: 'integer', minimum: -120, maximum: -7 }, [['-7', 'end'], ['-0', 'reject@1'], ['-1', 'open'], ['-121', 'reject@3'], ['-12', 'end'], ['5', 'reject@0']]],
    ["zod's .int(): ±(2^53 − 1) costs nothing (15 digits)", { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 }, [['-123', 'end'], ['9'.repeat(15), 'end'], ['9'.repeat(16), 'reject@15'], ['1.5', 'reject@1']]],
    ['exclusiveMinimum 0 (zod .positive()) on numbers', { type: 'number', exclusiveMinimum: 0 }, [['0', 'open'], ['0.0', 'open'], ['0.01', 'end'], ['-', 'reject@0'], ['3', 'end'], ['1e3', 'reject@1']]],
    ['decimal bounds with exclusiveMaximum', { type: 'number', minimum: -3, exclusiveMaximum: 5 }, [['5', 'reject@0'], ['4.99', 'end'], ['-3', 'end'], ['-3.', 'open'], ['-3.1', 'reject@3'], ['-4', 'reject@1']]],
    ['multipleOf (integer)', { type: 'integer', multipleOf: 7, minimum: 0, maximum: 20 }, [['14', 'end'], ['15', 'reject@1'], ['2', 'reject@0'], ['0', 'end'], ['7', 'end']]],
    ['pattern, escape-aware', { type: 'string', pattern: '^[a-z]+$' }, [['"ab\\u0063"', 'done'], ['"ab\\u0043', 'reject@7'], ['"é', 'reject@1'], ['""', 'reject@1']]],
    ['unanchored pattern matches anywhere', { type: 'string', pattern: 'q' }, [['"the quick"', 'done'], ['"the uick"', 'reject@9']]],
    ['email', { type: 'string', format: 'email' }, [['"a.b@ex.com"', 'done'], ['"a@"', 'reject@3'], ['"@', 'reject@1'], ['"a..b', 'reject@3']]],
    ['date-time (leap years)', { type: 'string', format: 'date-time' }, [['"2024-02-29T10:00:00Z"', 'done'], ['"2023-02-29', 'reject@10'], ['"2024-13', 'reject@7']]],
    ['pattern + lengths', { type: 'string', pattern: '^(ab)+$', minLength: 3, maxLength: 5 }, [['"abab"', 'done'], ['"ab"', 'reject@3'], ['"ababab', 'reject@5']]],
    ['record: propertyNames + additionalProperties', { type: 'object', propertyNames: { pattern: '^[a-z]+$' }, additionalProperties: { type: 'number' } }, [['{"x":1,"yy":2}', 'done'], ['{"X', 'reject@2'], ['{"x":1,"x"', 'reject@9']]],
    ['record with enum keys (zod)', { type: 'object', propertyNames: { type: 'string', enum: ['a', 'b'] }, additionalProperties: { type: 'string' }, required: ['a', 'b'] }, [['{"a":"x","b":"y"}', 'done'], ['{"b"', 'reject@2'], ['{"a":"x"}', 'reject@8']]],
    ['patternProperties only', { type: 'object', patternProperties: { '^x_': { type: 'integer' } }, additionalProperties: false }, [['{"x_1":1,"x_2":3}', 'done'], ['{"y', 'reject@2'], ['{"x_1":"', 'reject@7']]],
    ['min/maxProperties', { type: 'object', minProperties: 2, maxProperties: 2 }, [['{"a":1}', 'reject@6'], ['{"a":1,"b":2}', 'done'], ['{"a":1,"b":2,', 'reject@12']]],
    ['prefixItems + items: false (zod tuple)', { type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }], items: false, minItems: 2, maxItems: 2 }, [['["a",1]', 'done'], ['["a",1,', 'reject@6'], ['[1', 'reject@1'], ['["a"]', 'reject@4']]],
    ['draft-07 array items + additionalItems', { type: 'array', items: [{ type: 'string' }], additionalItems: { type: 'boolean' } }, [['["a",true,false]', 'done'], ['["a",1', 'reject@5']]],
    ['uniqueItems on scalars', { type: 'array', items: { type: 'integer' }, uniqueItems: true }, [['[1,2,1]', 'reject@6'], ['[1,2,3]', 'done'], ['["a"', 'reject@1']]],
    ['uniqueItems on an enum: no comma once every value is used', { type: 'array', items: { enum: ['a', 'b'] }, uniqueItems: true }, [['["a","b"]', 'done'], ['["a","a"', 'reject@6'], ['["a","b",', 'reject@8']]],
    ['uniqueItems on booleans: a repeated literal is refused before it completes', { type: 'array', items: { type: 'boolean' }, uniqueItems: true }, [['[true, tru', 'reject@7'], ['[true,false]', 'done'], ['[false,fa', 'reject@7']]],
    ['allOf of objects is merged', { allOf: [{ type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }, { type: 'object', properties: { b: { type: 'integer' } }, required: ['b'] }] }, [['{"a":"x","b":1}', 'done'], ['{"a":"x"}', 'reject@8']]],
    ['oneOf is generated as anyOf', { oneOf: [{ type: 'string' }, { type: 'integer' }] }, [['5', 'end'], ['"x"', 'done'], ['true', 'reject@0']]],
    ['not: a value', { type: 'string', not: { enum: ['a'] } }, [['"a"', 'reject@2'], ['"ab"', 'done']]],
    ['not: a type', { not: { type: ['object', 'array', 'string', 'number'] } }, [['true', 'done'], ['null', 'done'], ['"', 'reject@0'], ['1', 'reject@0']]],
    ['contains: at least one item that matches', { type: 'array', items: { type: ['string', 'integer'] }, contains: { type: 'integer' } }, [['["a"]', 'reject@4'], ['["a",1]', 'done'], ['[]', 'reject@1'], ['[1]', 'done'], ['[true', 'reject@1']]],
    ['minContains/maxContains count exactly', { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, contains: { const: 5 }, minContains: 2, maxContains: 2 }, [['[5,5]', 'done'], ['[5,5,5', 'reject@5'], ['[5,1]', 'reject@4'], ['[1,2,5,5]', 'done'], ['[5,5,7]', 'done']]],
    ['contains: the last item allowed by maxItems must count', { type: 'array', items: { type: ['string', 'integer'] }, contains: { type: 'string' }, maxItems: 2 }, [['[1,', 'open'], ['[1,2', 'reject@3'], ['[1,"x"]', 'done'], ['["x",2]', 'done']]],
    ['contains with prefixItems', { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], items: false, contains: { type: 'string' } }, [['[1,"a"]', 'done'], ['[1]', 'reject@2']]],
    ['maxContains 0: no item may match', { type: 'array', items: { enum: ['a', 'b'] }, contains: { const: 'a' }, minContains: 0, maxContains: 0 }, [['["a', 'reject@2'], ['["b","b"]', 'done'], ['[]', 'done']]],
    ['contains inside objects, with uniqueItems', { type: 'object', properties: { roles: { type: 'array', items: { enum: ['admin', 'user', 'guest'] }, uniqueItems: true, contains: { const: 'user' } } }, required: ['roles'] }, [['{"roles":["admin","user"]}', 'done'], ['{"roles":["admin","guest"]', 'reject@25'], ['{"roles":["user","user"', 'reject@18']]],
    ['enum filtered by its siblings', { type: 'string', enum: ['a', 'bb', 'ccc'], maxLength: 2 }, [['"a"', 'done'], ['"ccc"', 'reject@1']]],
  ];
  for (const [name, schema, cases] of table) {
    test(name, () => {
      const node = compileSchema(schema);
      for (const [t, want] of cases) assert.equal(run(node, t), want, `${t} for ${JSON.stringify(schema)}`);
    });
  }

  test('a $ref chain beyond the limit is a 400 that says so', () => {
    const deep: Record<string, unknown> = { $defs: {} };
    const defs = deep.$defs as Record<string, unknown>;
    for (let i = 0; i < 50; i++) defs[`d${i}`] = { $ref: `#/$defs/d${i + 1}` };
    defs.d50 = { type: 'string' };
    deep.$ref = '#/$defs/d0';
    assert.throws(() => compileSchema(deep), /\$ref chain is longer than 32/);
    defs.d10 = { type: 'string' };
    assert.equal(run(compileSchema(deep), '"x"'), 'done');
  });

  test('optional branches that can never end are pruned, so no dead end is offered', () => {
    const s = compileSchema({ type: 'object', properties: { a: { type: 'integer' }, loop: { $ref: '#/$defs/L' } }, required: ['a'], $defs: { L: { type: 'object', properties: { x: { $ref: '#/$defs/L' } }, required: ['x'] } } });
    assert.equal(run(s, '{"a":1,"loop"'), 'reject@6'); // no key may follow 'a'
    assert.equal(run(s, '{"a":1}'), 'done');
  });
});

describe('schema compiler: what cannot be enforced is refused, never ignored', () => {
  const refused: [unknown, RegExp][] = [
    [{ type: 'string', pattern: '(a)\\1' }, /backreferences/],
    [{ type: 'string', pattern: '(?<=a)b' }, /lookbehind/],
    [{ type: 'string', pattern: '(?=a)*' }, /quantifier|lookahead/],
    [{ type: 'string', pattern: '\\bword' }, /word boundar/],
    [{ type: 'string', pattern: '[z-a]' }, /out of order/],
    [{ type: 'string', format: 'credit-card' }, /format 'credit-card'/],
    [{ type: 'string', pattern: '^a$', format: 'email' }, /no string/],
    [{ type: 'number', multipleOf: 0.01 }, /multipleOf/],
    [{ type: 'number', minimum: 5, maximum: 1 }, /bounds/],
    [{ type: 'integer', exclusiveMinimum: 1, exclusiveMaximum: 2 }, /bounds/],
    [{ type: 'integer', minimum: 1, maximum: 6, multipleOf: 7 }, /multiple of 7/],
    [{ type: 'number', exclusiveMinimum: true }, /draft-04/],
    [{ type: 'object', properties: { a: {}, b: {} }, required: ['a', 'b'], maxProperties: 1 }, /maxProperties/],
    [{ type: 'object', properties: { a: {} }, additionalProperties: false, minProperties: 2 }, /minProperties/],
    [{ type: 'object', propertyNames: { pattern: '^x' }, properties: { y: {} }, required: ['y'] }, /propertyNames/],
    [{ not: {} }, /not/],
    [{ type: 'integer', not: { minimum: 3 } }, /not/],
    [{ if: {}, then: {} }, /conditional schemas \(if\/then\/else\)/],
    [{ type: 'array', contains: { type: 'integer', minimum: 3 }, maxContains: 1 }, /maxContains.*type, enum, const/],
    [{ type: 'array', contains: { type: 'integer' }, minContains: 3, maxContains: 2 }, /minContains/],
    [{ type: 'array', items: { type: 'string' }, contains: { type: 'integer' } }, /no value satisfies/],
    [{ type: 'array', contains: { type: 'integer' }, maxItems: 2, minContains: 3 }, /no value satisfies/],
    [{ type: 'array', contains: { if: {} } }, /conditional/],
    [{ type: 'array', items: { type: 'object' }, uniqueItems: true }, /uniqueItems/],
    [{ type: 'array', items: { enum: ['a', 'b'] }, uniqueItems: true, minItems: 3 }, /distinct/],
    [{ type: 'array', prefixItems: [{}], items: false, minItems: 2 }, /minItems/],
    [{ allOf: [{ type: 'string' }, { type: 'integer' }] }, /no type in common/],
    [{ allOf: [{ type: 'object', properties: { a: {} }, required: ['a'] }, { type: 'object', properties: { b: {} }, additionalProperties: false }] }, /'a' is required by one allOf member and forbidden/],
    [{ $ref: 'other.json#/x' }, /\$ref/],
    [{ $ref: '#/$defs/missing' }, /points to nothing/],
    [{ $ref: '#' }, /cycle/],
    [{ type: 'object', properties: { a: { $ref: '#' } }, required: ['a'] }, /recursion can never end/],
    [{ type: 'object', properties: { a: {} }, required: ['b'], additionalProperties: false }, /'b'/],
    [{ enum: [] }, /enum/],
    [{ type: 'string', enum: [1, 2] }, /no value/],
    [{ type: 'string', enum: ['ab', 'abc'], maxLength: 1 }, /no value/],
    [{ type: 'string', minLength: 5, maxLength: 2 }, /minLength/],
    [{ type: 'thing' }, /thing/],
    [false, /false/],
    ['string', /object or a boolean/],
  ];
  for (const [schema, msg] of refused) {
    test(JSON.stringify(schema), () => assert.throws(() => compileSchema(schema), (e: unknown) => e instanceof SchemaError && msg.test(e.message)));
  }
  test('annotations and unknown vendor keywords are ignored; allOf with one member is that member', () => {
    assert.doesNotThrow(() => compileSchema({ title: 't', description: 'd', default: 1, examples: [1], $schema: 'x', 'x-foo': 1, type: 'integer' }));
    assert.equal(run(compileSchema({ allOf: [{ type: 'boolean' }] }), 'true'), 'done');
  });
  test('a huge schema is refused by size, not by time', () => {
    const props: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) props[`p${i}`] = { type: 'integer' };
    assert.throws(() => compileSchema({ type: 'object', properties: props }), /too large/);
  });
});

// ------------------------------------------------------------------------ property tests

type Schema = Record<string, unknown>;

/** A random schema of the supported subset (bounded so random walks finish). */
function randomSchema(r: () => number, depth: number): Schema {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const kinds = depth > 2 ? ['string', 'integer', 'number', 'boolean', 'enum', 'null'] : ['object', 'array', 'string', 'integer', 'number', 'boolean', 'enum', 'anyOf', 'object', 'nullable'];
  const k = pick(kinds);
  switch (k) {
    case 'object': {
      const n = 1 + Math.floor(r() * 4);
      const properties: Record<string, Schema> = {};
      const required: string[] = [];
      for (let i = 0; i < n; i++) {
        const name = pick(['a', 'b', 'name', 'é', 'x y', 'q"t', 'k\\n', 'id']) + i;
        properties[name] = randomSchema(r, depth + 1);
        if (r() < 0.7) required.push(name);
      }
      const s: Schema = { type: 'object', properties, required };
      const ap = r();
      s.additionalProperties = ap < 0.6 ? false : ap < 0.8 ? { type: 'integer' } : true;
      return s;
    }
    case 'array': {
      const min = Math.floor(r() * 2);
      return { type: 'array', items: randomSchema(r, depth + 1), minItems: min, maxItems: min + Math.floor(r() * 3) };
    }
    case 'string':
      return r() < 0.5 ? { type: 'string', maxLength: 1 + Math.floor(r() * 6) } : { type: 'string', minLength: 1, maxLength: 8 };
    case 'enum':
      // Scalars only: enum objects/arrays match their compact JSON text (tested above), and the
      // documents here are also written indented.
      return { enum: [pick(['x', 'yy', 'é']), pick([1, 12, -3.5, null, true]), pick(['zz', 0, false])] };
    case 'anyOf':
      return { anyOf: [randomSchema(r, depth + 1), randomSchema(r, depth + 1)] };
    case 'nullable':
      return { type: ['integer', 'null'] };
    default:
      return { type: k };
  }
}

/** A random value valid for `s` (keys in schema order, as the recognizer requires). */
function randomValue(r: () => number, s: Schema): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  if (s.enum) return pick(s.enum as unknown[]);
  if (s.anyOf) return randomValue(r, pick(s.anyOf as Schema[]));
  const t = Array.isArray(s.type) ? pick(s.type as string[]) : (s.type as string);
  const str = (max: number, min = 0) => {
    const n = min + Math.floor(r() * (max - min + 1));
    let out = '';
    for (let i = 0; i < n; i++) out += pick(['a', 'Z', ' ', '"', '\\', '\n', 'é', '日', '🫠', '\u0001', '/']);
    return out;
  };
  switch (t) {
    case 'object': {
      const o: Record<string, unknown> = {};
      const req = new Set(s.required as string[]);
      for (const [k, sub] of Object.entries(s.properties as Record<string, Schema>)) if (req.has(k) || r() < 0.5) o[k] = randomValue(r, sub);
      if (s.additionalProperties && r() < 0.5) o[`extra${Math.floor(r() * 9)}`] = s.additionalProperties === true ? { n: [1, 'x'] } : 7;
      return o;
    }
    case 'array': {
      const n = (s.minItems as number) + Math.floor(r() * ((s.maxItems as number) - (s.minItems as number) + 1));
      return Array.from({ length: n }, () => randomValue(r, s.items as Schema));
    }
    case 'string':
      return str((s.maxLength as number) ?? 8, (s.minLength as number) ?? 0);
    case 'integer':
      return Math.floor((r() - 0.5) * 1e6);
    case 'number':
      return pick([0, -0.5, 3.25e-7, 123456.75, -1e21]);
    case 'boolean':
      return r() < 0.5;
    default:
      return null;
  }
}

/** Bytes from a random walk over what the recognizer allows (biased towards structure so it ends). */
function randomWalk(r: () => number, node: ValueNode, maxBytes: number): { bytes: number[]; state: RecognizerState } {
  let s = initialState(node);
  const bytes: number[] = [];
  while (!isDone(s) && bytes.length < maxBytes) {
    const allowed: number[] = [];
    for (let b = 0; b < 256; b++) if (advanceByte(s, b)) allowed.push(b);
    // Never a dead end: something may always follow until the document may end.
    if (allowed.length === 0 && canEnd(s)) break; // e.g. a root number at its digit limit: only EOS
    assert.ok(allowed.length > 0, `dead end after ${JSON.stringify(Buffer.from(bytes).toString('latin1'))}`);
    if (canEnd(s) && r() < 0.3) break;
    const weights = allowed.map((b) => (b < 0x80 && /["{}\[\],:0-9a-z\\]/.test(String.fromCharCode(b)) ? 40 : 1));
    let x = r() * weights.reduce((a, w) => a + w, 0);
    let i = 0;
    while ((x -= weights[i]!) > 0) i++;
    bytes.push(allowed[i]!);
    s = advanceByte(s, allowed[i]!)!;
  }
  return { bytes, state: s };
}

describe('recognizer: property tests (seeded)', () => {
  test('random valid documents of random schemas are accepted byte by byte (several whitespace styles)', () => {
    const r = rng(20261126);
    let docs = 0;
    for (let i = 0; i < 300; i++) {
      const schema = randomSchema(r, 0);
      const node = compileSchema(schema);
      const validate = ajv.compile(schema);
      for (let j = 0; j < 4; j++) {
        const value = randomValue(r, schema);
        assert.ok(validate(value), `generator bug: ${JSON.stringify(value)} for ${JSON.stringify(schema)}`);
        const text = JSON.stringify(value, null, [0, 2, '\t', 4][j]);
        const res = run(node, text);
        assert.ok(res === 'done' || res === 'end', `${res} for ${text} with ${JSON.stringify(schema)}`);
        docs++;
      }
    }
    assert.equal(docs, 1200);
  });

  test('whatever the recognizer accepts as complete parses and validates (random walks); it never dead-ends', () => {
    const r = rng(7);
    let complete = 0;
    for (let i = 0; i < 250; i++) {
      const schema = randomSchema(r, 0);
      const node = compileSchema(schema);
      const validate = ajv.compile(schema);
      const { bytes, state } = randomWalk(r, node, 3000);
      if (!canEnd(state)) continue; // cut by the byte budget: nothing to check
      complete++;
      const text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
      const value = JSON.parse(text) as unknown;
      assert.ok(validate(value), `${ajv.errorsText(validate.errors)}: ${text} for ${JSON.stringify(schema)}`);
    }
    assert.ok(complete > 200, `only ${complete} walks completed`);
  });

  test('single-byte corruptions of valid documents: accepted only if still valid JSON for the schema', () => {
    const r = rng(99);
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      const schema = randomSchema(r, 0);
      const node = compileSchema(schema);
      const validate = ajv.compile(schema);
      const bytes = enc.encode(JSON.stringify(randomValue(r, schema)));
      for (let j = 0; j < 5; j++) {
        const m = Uint8Array.from(bytes);
        m[Math.floor(r() * m.length)] = Math.floor(r() * 128);
        let s: RecognizerState | null = initialState(node);
        for (const b of m) if (s) s = advanceByte(s, b);
        if (s && canEnd(s)) {
          const v = JSON.parse(new TextDecoder().decode(m)) as unknown;
          assert.ok(validate(v), `accepted an invalid document: ${new TextDecoder().decode(m)}`);
        } else refused++;
      }
    }
    assert.ok(refused > 500, `${refused} corruptions refused`);
  });
});

describe('recognizer: contains / minContains / maxContains agree with ajv (2020-12, seeded)', () => {
  const ajv2020 = new Ajv2020({ strict: false });
  const POOL: unknown[] = ['a', 'b', 'ab', 0, 1, 3, true, false, null];
  /** Every array of POOL values up to `n` items. */
  const arrays = (n: number): unknown[][] => {
    const out: unknown[][] = [[]];
    for (let len = 1, layer: unknown[][] = [[]]; len <= n; len++) {
      layer = layer.flatMap((a) => POOL.map((v) => [...a, v]));
      out.push(...layer);
    }
    return out;
  };
  const ALL = arrays(3);
  function randomContains(r: () => number): Schema {
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
    const s: Schema = { type: 'array', maxItems: 1 + Math.floor(r() * 3) };
    const items = pick<Schema | undefined>([undefined, { enum: ['a', 'b', 1, true] }, { type: ['string', 'integer'], maxLength: 2, minimum: 0, maximum: 3 }, { type: 'integer', minimum: 0, maximum: 3 }, { type: ['boolean', 'null', 'string'], maxLength: 1 }]);
    if (items) s.items = items;
    if (r() < 0.25) s.prefixItems = [pick<Schema>([{ type: 'integer' }, { enum: ['a', null] }, { type: 'string' }])];
    s.contains = pick<Schema>([{ const: 'a' }, { type: 'integer' }, { enum: [1, 'b'] }, { type: 'string' }, { type: 'boolean' }, { type: 'integer', minimum: 1 }]);
    if (r() < 0.6) s.minContains = Math.floor(r() * 3);
    if (r() < 0.5) s.maxContains = ((s.minContains as number | undefined) ?? 1) + Math.floor(r() * 2);
    if (items && r() < 0.3) s.uniqueItems = true; // (uniqueItems on any JSON is refused)
    if (r() < 0.3) s.minItems = Math.floor(r() * 3);
    return s;
  }

  test('accept/reject equals ajv on every array of up to 3 pool values; random walks validate and never dead-end', () => {
    const r = rng(1313);
    let compiled = 0;
    let unsat = 0;
    let checked = 0;
    let valid = 0;
    for (let i = 0; i < 120; i++) {
      const schema = randomContains(r);
      const validate0 = ajv2020.compile(schema);
      // ajv 8.20 skips `contains` on an EMPTY array when `prefixItems` is present (the generated
      // check sits under `if (valid0)`, set only when there is a first item), so it accepts `[]`
      // against minContains ≥ 1. prefixItems says nothing about an empty array: the same schema
      // without it is the reference there.
      const { prefixItems: _p, ...noPrefix } = schema;
      const validateEmpty = ajv2020.compile(noPrefix);
      const validate = Object.assign((a: unknown) => (Array.isArray(a) && a.length === 0 ? validateEmpty(a) : validate0(a)), { get errors() { return validate0.errors; } });
      let node: ValueNode;
      try {
        node = compileSchema(schema);
      } catch (err) {
        assert.ok(err instanceof SchemaError, String(err));
        if (!err.unsatisfiable) {
          // Refused, and said why: maxContains with a `contains` that is not a type/value test,
          // or uniqueItems on arrays of any JSON.
          assert.match(err.message, /maxContains|uniqueItems/);
          continue;
        }
        unsat++;
        // A 400 for "no value satisfies": ajv agrees on every candidate (maxItems ≤ 3).
        for (const a of ALL) assert.ok(!validate(a), `unsatisfiable per compileSchema, but ajv accepts ${JSON.stringify(a)} for ${JSON.stringify(schema)}`);
        continue;
      }
      compiled++;
      for (const a of ALL) {
        const text = JSON.stringify(a);
        const theirs = validate(a) === true;
        const res = run(node, text);
        const mine = res === 'done' || res === 'end';
        assert.equal(mine, theirs, `${text} for ${JSON.stringify(schema)}: recognizer ${res}, ajv ${theirs}`);
        checked++;
        if (theirs) valid++;
      }
      for (let w = 0; w < 3; w++) {
        let walk: ReturnType<typeof randomWalk>;
        try {
          walk = randomWalk(r, node, 400);
        } catch (err) {
          throw new Error(`${(err as Error).message} for ${JSON.stringify(schema)}`);
        }
        const { bytes, state } = walk;
        if (!canEnd(state)) continue;
        const text = new TextDecoder().decode(Uint8Array.from(bytes));
        assert.ok(validate(JSON.parse(text)), `${ajv2020.errorsText(validate.errors)}: ${text} for ${JSON.stringify(schema)}`);
      }
    }
    // The workaround above is needed (the ajv bug is real), and harmless elsewhere.
    assert.equal(ajv2020.compile({ type: 'array', prefixItems: [{ type: 'integer' }], contains: { const: 'a' } })([]), true);
    assert.ok(compiled > 60 && unsat > 5, `${compiled} compiled, ${unsat} unsatisfiable`);
    assert.ok(valid > checked / 50 && valid < checked / 2, `${valid} of ${checked} valid: the corpus should mix valid and near-valid documents`);
  });
});

describe('recognizer: free keys from a small name set never lead into a used name', () => {
  // Seen in a forced tool call: `"scores":{"elev":1,"frie":-0,"frie` — a second "frie" could not close
  // (duplicate) and nothing else could follow (max 4 letters): the generation ended mid-document.
  const scores = { type: 'object', propertyNames: { pattern: '^[a-z]{1,4}$' }, additionalProperties: { type: 'integer', minimum: 0, maximum: 9 }, maxProperties: 3 };
  test('the duplicate key is refused where it would still need to grow, not after it is written', () => {
    const node = compileSchema(scores);
    assert.equal(run(node, '{"frie":1,"frie'), 'reject@14', 'the 4th letter of a used 4-letter name');
    assert.equal(run(node, '{"frie":1,"fri'), 'open', 'a prefix with fresh completions (fria…) stays open');
    assert.equal(run(node, '{"frie":1,"frib":2}'), 'done');
    const onlyOne = compileSchema({ type: 'object', propertyNames: { enum: ['ab'] }, additionalProperties: { type: 'integer' } });
    assert.equal(run(onlyOne, '{"ab":1,'), 'reject@7', 'no `,` when no fresh key exists');
    assert.equal(run(onlyOne, '{"ab":1}'), 'done');
  });
  test('random walks over tiny key languages never dead-end and always validate', () => {
    const r = rng(33);
    const schemas = [
      scores,
      { type: 'object', propertyNames: { pattern: '^[ab]{1,2}$' }, additionalProperties: { type: 'integer', minimum: 0, maximum: 9 } },
      { type: 'object', propertyNames: { enum: ['x', 'xy', 'xyz'] }, additionalProperties: { type: 'boolean' }, minProperties: 2 },
      { type: 'object', properties: { a: { type: 'integer' } }, propertyNames: { maxLength: 1 }, additionalProperties: { type: 'null' } },
    ];
    let complete = 0;
    for (const schema of schemas) {
      const node = compileSchema(schema);
      const validate = new Ajv2020({ strict: false }).compile(schema);
      for (let i = 0; i < 60; i++) {
        const { bytes, state } = randomWalk(r, node, 600);
        if (!canEnd(state)) continue;
        complete++;
        const text = Buffer.from(bytes).toString('utf8');
        assert.ok(validate(JSON.parse(text)), `${text} for ${JSON.stringify(schema)}`);
      }
    }
    assert.ok(complete > 150, `only ${complete} walks completed`);
  });
});
