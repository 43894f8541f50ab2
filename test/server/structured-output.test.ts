// Structured outputs through the real server, the real engine process and the official `openai`
// client, on a tiny RANDOM-weight model: unconstrained, it writes gibberish (never JSON), so every
// parse/validate below holds only because constrained decoding enforced it token by token.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { recordingResponseCache, startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;
// Always a miss; records the keys of the requests that would be stored.
const { hook: recordingCache, keys: cacheKeys } = recordingResponseCache();

before(async () => {
  stack = await startStack({ hooks: { responseCache: recordingCache } });
  model = stack.modelInfo.id;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 180_000 });
});
after(async () => {
  await stack?.close();
});

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Describe a person as JSON.' }];

/**
 * Every string and array is bounded, so a complete document has a bounded number of bytes
 * (< 1,500 with the whitespace allowance) and max_tokens 1,500 always lets it finish: a
 * finish_reason other than 'stop' is a failure, not bad luck.
 */
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer' },
    color: { enum: ['red', 'green', 'blue'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 3 },
    address: {
      type: 'object',
      properties: { city: { type: 'string', minLength: 1, maxLength: 8 }, zip: { type: ['integer', 'null'] } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
    score: { anyOf: [{ type: 'number' }, { const: 'n/a' }] },
    active: { type: 'boolean' },
  },
  required: ['name', 'age', 'color', 'tags', 'address', 'score', 'active'],
  additionalProperties: false,
} as const;
const BIG = 1500;

const ajv = new Ajv({ strict: false });
const validatePerson = ajv.compile<unknown>(PERSON);

function assertValidPerson(content: string | null | undefined, label: string): Record<string, unknown> {
  assert.equal(typeof content, 'string', label);
  let value: unknown;
  assert.doesNotThrow(() => (value = JSON.parse(content!)), `${label}: not JSON: ${JSON.stringify(content)}`);
  assert.ok(validatePerson(value), `${label}: ${ajv.errorsText(validatePerson.errors)} in ${content}`);
  // Keys come in the schema's order.
  assert.deepEqual(Object.keys(value as object), Object.keys(PERSON.properties), label);
  return value as unknown as Record<string, unknown>;
}

/**
 * Independent oracle for output cut by max_tokens: a recursive-descent JSON parser for which the
 * end of input is "incomplete" (the text so far is a prefix of some JSON document) rather than an error.
 */
function jsonPrefixState(text: string): 'complete' | 'incomplete' | 'invalid' {
  let i = 0;
  class Eof extends Error {}
  class Bad extends Error {}
  const peek = () => {
    if (i >= text.length) throw new Eof();
    return text[i]!;
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const lit = (w: string) => {
    for (const c of w) if (peek() !== c) throw new Bad(); else i++;
  };
  const str = () => {
    lit('"');
    for (;;) {
      const c = peek();
      i++;
      if (c === '"') return;
      if (c === '\\') {
        const e = peek();
        i++;
        if (e === 'u') for (let k = 0; k < 4; k++) if (!/[0-9a-fA-F]/.test(peek())) throw new Bad(); else i++;
        else if (!'"\\/bfnrt'.includes(e)) throw new Bad();
      } else if (c < ' ') throw new Bad();
    }
  };
  const num = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m || m[0] === '' || m[0] === '-') {
      if (i + (m?.[0].length ?? 0) >= text.length) throw new Eof();
      throw new Bad();
    }
    i += m[0].length;
    if (i >= text.length) throw new Eof(); // a number may still grow
  };
  const value = (): void => {
    ws();
    const c = peek();
    if (c === '{') {
      i++;
      ws();
      if (peek() === '}') return void i++;
      for (;;) {
        ws();
        str();
        ws();
        lit(':');
        value();
        ws();
        const d = peek();
        i++;
        if (d === '}') return;
        if (d !== ',') throw new Bad();
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (peek() === ']') return void i++;
      for (;;) {
        value();
        ws();
        const d = peek();
        i++;
        if (d === ']') return;
        if (d !== ',') throw new Bad();
      }
    }
    if (c === '"') return str();
    if (c === 't') return lit('true');
    if (c === 'f') return lit('false');
    if (c === 'n') return lit('null');
    return num();
  };
  try {
    value();
    ws();
    return i === text.length ? 'complete' : 'invalid';
  } catch (e) {
    if (e instanceof Eof) return 'incomplete';
    return 'invalid';
  }
}

describe('response_format json_object', () => {
  test('output is always a JSON object (stop) or a valid JSON prefix cut by max_tokens (length); seeds × temperatures', async () => {
    let stops = 0;
    for (const [temperature, seed] of [
      [0, undefined],
      [1, 1],
      [1, 2],
      [0.7, 3],
      [1.5, 4],
    ] as const) {
      const res = await client.chat.completions.create({
        model,
        messages,
        temperature,
        ...(seed !== undefined ? { seed } : {}),
        max_tokens: 40,
        response_format: { type: 'json_object' },
      });
      const c = res.choices[0]!;
      const text = c.message.content ?? '';
      const label = `t=${temperature} seed=${seed}: ${JSON.stringify(text)}`;
      assert.ok(text.startsWith('{'), label);
      if (c.finish_reason === 'stop') {
        stops++;
        const v = JSON.parse(text) as unknown;
        assert.ok(v && typeof v === 'object' && !Array.isArray(v), label);
      } else {
        assert.equal(c.finish_reason, 'length', label);
        assert.equal(res.usage?.completion_tokens, 40, label);
        assert.equal(jsonPrefixState(text), 'incomplete', label);
      }
    }
    // The oracle itself can fail: gibberish is neither a document nor a prefix.
    assert.equal(jsonPrefixState('{"a": tru'), 'incomplete');
    assert.equal(jsonPrefixState('{"a": x'), 'invalid');
    assert.equal(jsonPrefixState('{"a": 1}'), 'complete');
    void stops;
  });

  test('without response_format the same model writes no JSON (the constraint does the work)', async () => {
    const res = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 40 });
    assert.notEqual(jsonPrefixState(res.choices[0]!.message.content ?? ''), 'complete');
    assert.notEqual(jsonPrefixState(res.choices[0]!.message.content ?? ''), 'incomplete');
  });
});

describe('response_format json_schema', () => {
  const rf = { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } } as const;

  test('non-stream output parses and validates with ajv (nested object, enum, array, integer, anyOf); seeds × temperatures', async () => {
    const seen = new Set<string>();
    for (const [temperature, seed] of [
      [0, undefined],
      [1, 11],
      [1, 12],
      [0.8, 13],
    ] as const) {
      const res = await client.chat.completions.create({
        model,
        messages,
        temperature,
        ...(seed !== undefined ? { seed } : {}),
        max_tokens: BIG,
        response_format: rf,
      } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
      const c = res.choices[0]!;
      assert.equal(c.finish_reason, 'stop', `t=${temperature} seed=${seed}: ${c.message.content}`);
      assertValidPerson(c.message.content, `t=${temperature} seed=${seed}`);
      seen.add(c.message.content!);
    }
    assert.ok(seen.size >= 2, 'different seeds give different documents');
  });

  test('streaming deltas concatenate to the same valid JSON as the non-stream answer (temperature 0)', async () => {
    const body = { model, messages, temperature: 0, max_tokens: BIG, response_format: rf } as const;
    const whole = await client.chat.completions.create(body as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    const stream = await client.chat.completions.create({ ...body, stream: true } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    let text = '';
    let finish: string | null = null;
    let chunks = 0;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      chunks++;
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(finish, 'stop');
    assert.ok(chunks > 3);
    assert.equal(text, whole.choices[0]!.message.content);
    assertValidPerson(text, 'stream');
  });

  test("the openai SDK's parse() helper returns the parsed object", async () => {
    const res = await client.chat.completions.parse({ model, messages, seed: 5, temperature: 1, max_tokens: BIG, response_format: rf } as never);
    const msg = (res as { choices: { message: { parsed: unknown; content: string } }[] }).choices[0]!.message;
    assertValidPerson(msg.content, 'parse()');
    assert.deepEqual(msg.parsed, JSON.parse(msg.content));
  });

  test('a schema with a root array and with $defs/$ref also holds', async () => {
    const schema = {
      $defs: { item: { type: 'object', properties: { id: { type: 'integer' }, kind: { enum: ['a', 'b'] } }, required: ['id', 'kind'], additionalProperties: false } },
      type: 'object',
      properties: { items: { type: 'array', items: { $ref: '#/$defs/item' }, minItems: 1, maxItems: 3 } },
      required: ['items'],
      additionalProperties: false,
    };
    const validate = ajv.compile(schema);
    const res = await client.chat.completions.create({
      model,
      messages,
      seed: 21,
      temperature: 1,
      max_tokens: 600,
      response_format: { type: 'json_schema', json_schema: { name: 'items', schema } },
    });
    const c = res.choices[0]!;
    assert.equal(c.finish_reason, 'stop', String(c.message.content));
    const v = JSON.parse(c.message.content!) as { items: unknown[] };
    assert.ok(validate(v), ajv.errorsText(validate.errors));
    assert.ok(v.items.length >= 1 && v.items.length <= 3);
  });

  test('max_tokens too small → finish_reason length and (as with OpenAI) possibly incomplete JSON', async () => {
    const res = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 3, response_format: rf } as never);
    const c = (res as OpenAI.Chat.ChatCompletion).choices[0]!;
    assert.equal(c.finish_reason, 'length');
    assert.equal((res as OpenAI.Chat.ChatCompletion).usage?.completion_tokens, 3);
    assert.equal(jsonPrefixState(c.message.content ?? ''), 'incomplete');
  });

  test('the response-cache key carries the constraint (a JSON answer is never served for a text request)', async () => {
    cacheKeys.length = 0;
    // Thinking stays on for both (forced JSON would otherwise render the non-thinking prompt), so
    // the prompts are identical and only the constraint tells the two keys apart.
    const req = { model, messages: [{ role: 'user' as const, content: 'cache key probe' }], temperature: 0, max_tokens: 4, chat_template_kwargs: { enable_thinking: true } } as never;
    await client.chat.completions.create(req);
    await client.chat.completions.create({ ...(req as object), response_format: { type: 'json_object' } } as never);
    assert.equal(cacheKeys.length, 2);
    assert.equal(cacheKeys[0]!.constraint ?? null, null);
    assert.deepEqual(cacheKeys[1]!.constraint, { schema: null });
    assert.deepEqual(cacheKeys[0]!.promptIds, cacheKeys[1]!.promptIds);
  });

  test('/v1/completions takes response_format too', async () => {
    const res = await client.completions.create({
      model,
      prompt: 'JSON:',
      temperature: 0,
      max_tokens: BIG,
      response_format: rf,
    } as never);
    const c = (res as OpenAI.Completions.Completion).choices[0]!;
    assert.equal(c.finish_reason, 'stop');
    assertValidPerson(c.text, 'completions');
  });
});

describe('schemas that cannot be enforced → 400, never ignored', () => {
  const cases: [unknown, RegExp][] = [
    [{ type: 'object', properties: { id: { type: 'string', pattern: '^(a)\\1$' } } }, /backreferences/],
    [{ type: 'object', properties: { n: { if: { type: 'integer' }, then: { minimum: 0 } } } }, /if\/then\/else/],
    [{ type: 'string', format: 'credit-card' }, /format 'credit-card'/],
    [{ type: 'array', contains: { type: 'integer', minimum: 3 }, maxContains: 1 }, /maxContains/],
    [{ type: 'object', properties: { a: { $ref: '#' } }, required: ['a'] }, /recursion can never end.*#\/properties\/a/],
    [{ $ref: 'https://example.com/schema.json' }, /\$ref/],
    [{ type: 'object', properties: {}, required: ['missing'] }, /missing/],
    [{ type: 'array', minItems: 3, maxItems: 1 }, /minItems/],
    [{ type: 'banana' }, /banana/],
  ];
  for (const [schema, message] of cases) {
    test(`${JSON.stringify(schema).slice(0, 70)}`, async () => {
      await assert.rejects(
        client.chat.completions.create({ model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } } as never),
        (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'response_format' && message.test(err.message) && !/\/home|\/tmp|at .*:\d+/.test(err.message),
      );
    });
  }

  test('json_schema without a schema, with a bad name or strict, or a bad type → 400 param response_format', async () => {
    for (const response_format of [
      { type: 'json_schema', json_schema: { name: 'x' } },
      { type: 'json_schema', json_schema: null },
      { type: 'json_schema', json_schema: { name: 'has space', schema: { type: 'object' } } },
      { type: 'json_schema', json_schema: { name: 'x', strict: 1, schema: { type: 'object' } } },
      { type: 'json_object', schema: 'object' },
      { type: 'yaml' },
    ]) {
      await assert.rejects(
        client.chat.completions.create({ model, messages, response_format } as never),
        (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'response_format',
        JSON.stringify(response_format),
      );
    }
  });

  test("lenient like llama-server / LM Studio: no name, strict: \"true\", and json_object with a 'schema' (all enforced)", async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    for (const response_format of [
      { type: 'json_schema', json_schema: { schema } },
      { type: 'json_schema', json_schema: { name: 'x', strict: 'true', schema } },
      { type: 'json_object', schema },
    ]) {
      const res = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 200, response_format } as never);
      const c = (res as OpenAI.Chat.ChatCompletion).choices[0]!;
      assert.equal(c.finish_reason, 'stop', JSON.stringify(response_format));
      assert.equal(typeof (JSON.parse(c.message.content!) as { ok: unknown }).ok, 'boolean');
    }
  });
});

describe('tool_choice required / named: a real, schema-valid tool call is forced', () => {
  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather for a city',
        parameters: {
          type: 'object',
          properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['c', 'f'] }, days: { type: 'integer' } },
          required: ['city', 'unit', 'days'],
          additionalProperties: false,
        },
      },
    },
    {
      type: 'function',
      function: {
        name: 'get_time',
        parameters: { type: 'object', properties: { tz: { enum: ['UTC', 'CET', 'PST'] } }, required: ['tz'], additionalProperties: false },
      },
    },
  ];
  const validators = new Map(tools.map((t) => [t.type === 'function' ? t.function.name : '', ajv.compile(t.type === 'function' ? t.function.parameters! : {})]));
  const toolMessages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];

  function assertCall(res: OpenAI.Chat.ChatCompletion, label: string, name?: string): void {
    const c = res.choices[0]!;
    assert.equal(c.finish_reason, 'tool_calls', `${label}: ${JSON.stringify(c.message)}`);
    const calls = c.message.tool_calls ?? [];
    assert.equal(calls.length, 1, label);
    const call = calls[0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.match(call.id, /^call_/);
    if (name) assert.equal(call.function.name, name, label);
    const validate = validators.get(call.function.name);
    assert.ok(validate, `${label}: unknown tool ${call.function.name}`);
    const args = JSON.parse(call.function.arguments);
    assert.ok(validate(args), `${label}: ${ajv.errorsText(validate.errors)} in ${call.function.arguments}`);
  }

  test("tool_choice 'required' → finish_reason tool_calls, one call to an offered tool with valid arguments; seeds", async () => {
    for (const [temperature, seed] of [
      [0, undefined],
      [1, 31],
      [1, 32],
    ] as const) {
      const res = await client.chat.completions.create({
        model,
        messages: toolMessages,
        tools,
        tool_choice: 'required',
        temperature,
        ...(seed !== undefined ? { seed } : {}),
        max_tokens: 400,
      });
      assertCall(res, `required t=${temperature} seed=${seed}`);
    }
  });

  test('a named function is the one called (non-stream and stream)', async () => {
    for (const name of ['get_weather', 'get_time']) {
      const res = await client.chat.completions.create({
        model,
        messages: toolMessages,
        tools,
        tool_choice: { type: 'function', function: { name } },
        seed: 41,
        temperature: 1,
        max_tokens: 400,
      });
      assertCall(res, `named ${name}`, name);
    }
    const stream = await client.chat.completions.create({
      model,
      messages: toolMessages,
      tools,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      temperature: 0,
      max_tokens: 400,
      stream: true,
    });
    let name = '';
    let args = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      for (const tc of ch.delta.tool_calls ?? []) {
        name += tc.function?.name ?? '';
        args += tc.function?.arguments ?? '';
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(name, 'get_weather');
    assert.ok(validators.get('get_weather')!(JSON.parse(args)), args);
  });

  test('without tool_choice the random model calls nothing (the forcing is what makes the call)', async () => {
    const res = await client.chat.completions.create({ model, messages: toolMessages, tools, temperature: 0, max_tokens: 30 });
    assert.notEqual(res.choices[0]!.finish_reason, 'tool_calls');
  });

  test("tool_choice auto carries a lazy constraint (from '<tool_call>' on) in the request and its cache key", async () => {
    cacheKeys.length = 0;
    const res = await client.chat.completions.create({ model, messages: toolMessages, tools, temperature: 0, max_tokens: 8 });
    assert.equal(res.choices.length, 1);
    assert.equal(cacheKeys.length, 1);
    const c = cacheKeys[0]!.constraint!;
    assert.equal(c.trigger, '<tool_call>');
    assert.equal(c.prefix, '<tool_call>\n');
    assert.equal(c.suffix, '\n</tool_call>');
  });

  test('a forced tool whose parameters use an unsupported keyword → 400 naming the tool', async () => {
    const bad: OpenAI.Chat.ChatCompletionTool[] = [
      tools[1]!,
      { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'string', pattern: '(a)\\1' } } } } },
    ];
    await assert.rejects(
      client.chat.completions.create({ model, messages: toolMessages, tools: bad, tool_choice: 'required' }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'tools[1].function.parameters' && /backreferences/.test(err.message),
    );
    // With tool_choice auto nothing is enforced, so the same tools are accepted.
    const ok = await client.chat.completions.create({ model, messages: toolMessages, tools: bad, temperature: 0, max_tokens: 2 });
    assert.equal(ok.choices.length, 1);
  });
});
