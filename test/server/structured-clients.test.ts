// The structured-output helpers of the client libraries users reach for, against the real server on
// a loopback port (real engine process, tiny RANDOM-weight model with the Qwen3 vocabulary): each
// library turns a zod schema into JSON Schema its own way (.int() → ±2^53 bounds, .email() →
// format + pattern, .regex() → pattern, record → propertyNames, tuple → prefixItems or draft-07
// items/additionalItems, discriminatedUnion → oneOf/anyOf) and validates the answer with zod itself.
// Unconstrained, this model writes gibberish: every parsed object below exists only because the
// recognizer enforced those keywords.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { generateObject } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let model: string;

before(async () => {
  stack = await startStack();
  model = stack.modelInfo.id;
});
after(async () => {
  await stack?.close();
});

const MAX = 1500;
// Bounded strings (max/regex/fixed-length formats) so a random model's document always ends.
const Shape = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('circle'), r: z.number().positive().max(100) }),
  z.object({ kind: z.literal('rect'), w: z.number().int().min(1).max(50), h: z.number().int().min(1).max(50) }),
]);
const Person = z.object({
  id: z.number().int(),
  age: z.number().int().min(0).max(120),
  email: z.email().max(24),
  code: z.string().regex(/^[A-Z]{2}-\d{3}$/),
  shape: Shape,
  nick: z.string().max(8).nullable(),
});
const Extra = z.object({
  scores: z.record(z.string().regex(/^[a-z]{1,4}$/), z.number().int().min(0).max(9)),
  point: z.tuple([z.number().int().min(-9).max(9), z.number().int().min(-9).max(9)]),
  id: z.uuid(),
});

describe('openai-node chat.completions.parse() with zodResponseFormat', () => {
  test('.int(), .min/.max, .positive(), .email(), .regex(), discriminatedUnion, nullable: parsed and zod-valid, several seeds', async () => {
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 300_000 });
    for (const seed of [1, 2, 3]) {
      const res = await client.chat.completions.parse({
        model,
        messages: [{ role: 'user', content: 'A person, as JSON.' }],
        response_format: zodResponseFormat(Person, 'person'),
        max_tokens: MAX,
        temperature: 1,
        seed,
      });
      const choice = res.choices[0]!;
      assert.equal(choice.finish_reason, 'stop', `seed ${seed}: ${choice.message.content}`);
      const parsed = choice.message.parsed;
      assert.ok(parsed, `seed ${seed}: nothing parsed from ${choice.message.content}`);
      assert.ok(Person.safeParse(parsed).success);
      assert.ok(Number.isInteger(parsed.id) && parsed.age >= 0 && parsed.age <= 120);
      assert.match(parsed.code, /^[A-Z]{2}-\d{3}$/);
    }
  });
});

describe('AI SDK generateObject (openai-compatible, supportsStructuredOutputs)', () => {
  test('record, tuple (draft-07 items/additionalItems), uuid, and the discriminated union', async () => {
    const provider = createOpenAICompatible({ name: 'mlxbar', baseURL: `${stack.url}/v1`, apiKey: 'unused', supportsStructuredOutputs: true });
    for (const [schema, seed] of [[Person, 4], [Extra, 5], [Extra, 6]] as const) {
      const { object, finishReason } = await generateObject({
        model: provider(model),
        schema: schema as z.ZodType<unknown>,
        prompt: 'Some JSON.',
        maxOutputTokens: MAX,
        temperature: 1,
        seed,
        maxRetries: 0,
      });
      assert.equal(finishReason, 'stop');
      assert.ok(schema.safeParse(object).success, JSON.stringify(object));
    }
  });
});

describe('LangChain withStructuredOutput (@langchain/openai)', () => {
  for (const method of ['jsonSchema', 'functionCalling'] as const) {
    test(`method ${method}: the zod schema comes back valid (${method === 'functionCalling' ? 'a forced tool call' : 'response_format json_schema'})`, async () => {
      const llm = new ChatOpenAI({ model, apiKey: 'unused', configuration: { baseURL: `${stack.url}/v1` }, temperature: 1, maxTokens: MAX, maxRetries: 0, modelKwargs: { seed: 7 } });
      for (const schema of [Person, Extra]) {
        const out = await llm.withStructuredOutput(schema as z.ZodType<Record<string, unknown>>, { method, name: 'answer' }).invoke('Some JSON.');
        assert.ok(schema.safeParse(out).success, JSON.stringify(out));
      }
    });
  }
});
