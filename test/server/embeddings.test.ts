// POST /v1/embeddings through the official `openai` client (which asks for base64 by default and
// decodes it) and raw HTTP, against the real server + real MLX engine on a tiny random-weight
// Qwen3-layout model with the real tokenizer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { LEAK_RE, postJson, startStack, type TestStack } from './helpers.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;
let hidden: number;

before(async () => {
  // Two work slots: an embeddings request can reach the engine while a chat generation streams,
  // so the engine's own queue (not only the server's slot) is what keeps them apart.
  stack = await startStack({ config: { maxConcurrent: 2 } });
  model = stack.modelInfo.id;
  hidden = stack.modelInfo.hiddenSize;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  await stack?.close();
});

const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
const maxDiff = (a: number[], b: number[]) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
const decodeB64 = (s: string) => {
  const b = Buffer.from(s, 'base64');
  return Array.from(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4));
};
const errorOf = (body: string) => (JSON.parse(body) as { error: { code: string; param: string | null; message: string } }).error;

describe('embeddings: happy paths (openai client)', () => {
  test('default request (SDK base64 path): shape, unit norm, usage = tokenizer count, model echoed', async () => {
    const res = await client.embeddings.create({ model, input: 'The quick brown fox' });
    assert.equal(res.object, 'list');
    assert.equal(res.model, model);
    assert.equal(res.data.length, 1);
    assert.equal(res.data[0].object, 'embedding');
    assert.equal(res.data[0].index, 0);
    const v = res.data[0].embedding;
    assert.equal(v.length, hidden);
    assert.ok(v.every((x) => typeof x === 'number' && Number.isFinite(x)));
    assert.ok(Math.abs(norm(v) - 1) < 1e-5, `norm ${norm(v)}`);
    const n = stack.text.encode('The quick brown fox').length;
    assert.deepEqual(res.usage, { prompt_tokens: n, total_tokens: n });
  });

  test("encoding_format 'float' equals the base64 path exactly; raw base64 is little-endian float32", async () => {
    const input = 'embeddings are vectors';
    const viaSdk = (await client.embeddings.create({ model, input })).data[0].embedding;
    const asFloat = await client.embeddings.create({ model, input, encoding_format: 'float' });
    assert.deepEqual(asFloat.data[0].embedding, viaSdk);
    const raw = await postJson(stack.port, '/v1/embeddings', { model, input, encoding_format: 'base64' });
    assert.equal(raw.status, 200);
    const b64 = JSON.parse(raw.body).data[0].embedding;
    assert.equal(typeof b64, 'string');
    assert.deepEqual(decodeB64(b64), viaSdk);
    // Without encoding_format the server answers floats (OpenAI's default).
    const plain = await postJson(stack.port, '/v1/embeddings', { model, input });
    assert.deepEqual(JSON.parse(plain.body).data[0].embedding, viaSdk);
  });

  test('deterministic: the same input gives the same vector', async () => {
    const a = (await client.embeddings.create({ model, input: 'repeat me' })).data[0].embedding;
    const b = (await client.embeddings.create({ model, input: 'repeat me' })).data[0].embedding;
    assert.deepEqual(a, b);
  });

  test('batch: order preserved and each item equals its individual result; different inputs differ', async () => {
    const inputs = ['alpha', 'a much longer sentence about beta and gamma', 'γάμμα δέλτα 🦊', 'alpha!'];
    const batch = await client.embeddings.create({ model, input: inputs });
    assert.deepEqual(batch.data.map((d) => d.index), [0, 1, 2, 3]);
    let tokens = 0;
    for (let i = 0; i < inputs.length; i++) {
      const one = (await client.embeddings.create({ model, input: inputs[i] })).data[0].embedding;
      assert.ok(maxDiff(batch.data[i].embedding, one) < 1e-5, `item ${i}`);
      tokens += stack.text.encode(inputs[i]).length;
    }
    assert.equal(batch.usage.prompt_tokens, tokens);
    for (let i = 0; i < inputs.length; i++) {
      for (let j = i + 1; j < inputs.length; j++) {
        assert.ok(cosine(batch.data[i].embedding, batch.data[j].embedding) < 0.9999, `${i} vs ${j} differ`);
      }
    }
  });

  test('dimensions: truncated prefix, renormalized to unit length; > hidden size is a 400', async () => {
    const full = (await client.embeddings.create({ model, input: 'matryoshka' })).data[0].embedding;
    const d = Math.floor(hidden / 4);
    const cut = (await client.embeddings.create({ model, input: 'matryoshka', dimensions: d })).data[0].embedding;
    assert.equal(cut.length, d);
    assert.ok(Math.abs(norm(cut) - 1) < 1e-5);
    const prefix = full.slice(0, d);
    const pn = norm(prefix);
    assert.ok(maxDiff(cut, prefix.map((x) => x / pn)) < 1e-6);
    await assert.rejects(client.embeddings.create({ model, input: 'x', dimensions: hidden + 1 }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, 'invalid_value');
      assert.equal(e.param, 'dimensions');
      return true;
    });
  });

  test('token-id input (number[] and number[][]) equals the string input after tokenization', async () => {
    const s = 'tokens in, vectors out';
    const ids = stack.text.encode(s);
    const byText = (await client.embeddings.create({ model, input: s })).data[0].embedding;
    const byIds = await client.embeddings.create({ model, input: ids });
    assert.deepEqual(byIds.data[0].embedding, byText);
    assert.equal(byIds.usage.prompt_tokens, ids.length);
    const nested = await client.embeddings.create({ model, input: [ids, stack.text.encode('second')] });
    assert.deepEqual(nested.data[0].embedding, byText);
    assert.equal(nested.data.length, 2);
  });

  test('recorded in metrics under the /v1/embeddings route with its prompt tokens', async () => {
    const before = stack.records.length;
    const res = await client.embeddings.create({ model, input: ['one', 'two words'] });
    // The record is emitted when the response closes.
    for (let i = 0; i < 100 && !stack.records.slice(before).some((r) => r.route === '/v1/embeddings'); i++) await new Promise((r) => setTimeout(r, 20));
    const rec = stack.records.slice(before).find((r) => r.route === '/v1/embeddings');
    assert.ok(rec, 'a record for the embeddings request');
    assert.equal(rec.status, 200);
    assert.equal(rec.promptTokens, res.usage.prompt_tokens);
    assert.equal(rec.completionTokens, 0);
    assert.equal(rec.cancelled, false);
  });
});

describe('embeddings: errors', () => {
  const post = (body: unknown, headers: Record<string, string> = {}) => postJson(stack.port, '/v1/embeddings', body, headers);

  test('empty inputs, wrong types and too many items are 400 invalid_value on input; missing input names the parameter', async () => {
    for (const input of [[], '', ['ok', ''], [[]], [1, 'a'], [true], { text: 'x' }, [-1], [1.5]]) {
      const r = await post({ model, input });
      assert.equal(r.status, 400, JSON.stringify(input));
      const e = errorOf(r.body);
      assert.equal(e.code, 'invalid_value', JSON.stringify(input));
      assert.equal(e.param, 'input');
    }
    const missing = await post({ model });
    assert.equal(missing.status, 400);
    assert.equal(errorOf(missing.body).code, 'missing_required_parameter');
    const many = await post({ model, input: new Array(2049).fill('x') });
    assert.equal(many.status, 400);
    assert.match(errorOf(many.body).message, /at most 2048/);
    const fmt = await post({ model, input: 'x', encoding_format: 'binary' });
    assert.equal(errorOf(fmt.body).param, 'encoding_format');
    const vocab = await post({ model, input: [stack.modelInfo.vocabSize] });
    assert.equal(vocab.status, 400);
    assert.equal(errorOf(vocab.body).code, 'invalid_value');
  });

  test('the empty string list through the openai client is a 400 BadRequestError', async () => {
    await assert.rejects(client.embeddings.create({ model, input: [] }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, 'invalid_value');
      return true;
    });
  });

  test('an input longer than the context is 400 context_length_exceeded; "truncate": true cuts it to the context', async () => {
    const ctx = stack.modelInfo.contextLength;
    const ids = Array.from({ length: ctx + 5 }, (_, i) => 100 + (i % 1000));
    await assert.rejects(client.embeddings.create({ model, input: ids }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, 'context_length_exceeded', e.message);
      assert.equal(e.param, 'input');
      assert.doesNotMatch(e.message, LEAK_RE);
      return true;
    });
    const cut = await post({ model, input: [ids], truncate: true, encoding_format: 'float' });
    assert.equal(cut.status, 200, cut.body);
    const body = JSON.parse(cut.body);
    assert.equal(body.usage.prompt_tokens, ctx);
    const exact = await post({ model, input: [ids.slice(0, ctx)], encoding_format: 'float' });
    assert.deepEqual(JSON.parse(exact.body).data[0].embedding, body.data[0].embedding);
  });

  test('a total token budget per request: many medium inputs are refused before any work', async () => {
    const input = Array.from({ length: 2048 }, () => Array.from({ length: 33 }, (_, i) => 200 + i));
    const r = await post({ model, input });
    assert.equal(r.status, 400);
    const e = errorOf(r.body);
    assert.equal(e.code, 'invalid_value');
    assert.match(e.message, /at most 65536/);
  });

  test('wrong model → 404 model_not_found; foreign Origin → 403 (the server gates apply)', async () => {
    await assert.rejects(client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
    const r = await post({ model, input: 'x' }, { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    const get = await fetch(`${stack.url}/v1/embeddings`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST, OPTIONS');
    assert.equal(((await get.json()) as { error: { code: string } }).error.code, 'method_not_allowed');
    const empty = await fetch(`${stack.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' });
    assert.equal(empty.status, 400);
    assert.equal(((await empty.json()) as { error: { code: string } }).error.code, 'invalid_json');
  });
});

describe('embeddings: client disconnect', () => {
  test('a client that leaves mid-batch cancels it in the engine (recorded as cancelled); the next request is served', async () => {
    // 1,500 inputs of 40 tokens: far longer than the time to notice the disconnect.
    const input = Array.from({ length: 1500 }, (_, i) => Array.from({ length: 40 }, (_, j) => 300 + ((i * 41 + j) % 5000)));
    const one = await postJson(stack.port, '/v1/embeddings', { model, input: input.slice(0, 20) });
    assert.equal(one.status, 200);
    const before = stack.records.length;
    const ac = new AbortController();
    const pending = fetch(`${stack.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, input }),
      signal: ac.signal,
    }).catch((e: Error) => e);
    // Progress, not a fixed delay: leave once the batch holds a work slot (it is in the engine).
    for (let i = 0; i < 3000 && stack.server.load.active === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stack.server.load.active, 1, 'the batch reached the engine');
    ac.abort();
    assert.ok((await pending) instanceof Error, 'the client aborted');
    const next = await client.embeddings.create({ model, input: 'after the cancelled batch' });
    assert.equal(next.data.length, 1);
    for (let i = 0; i < 100 && !stack.records.slice(before).some((r) => r.cancelled); i++) await new Promise((r) => setTimeout(r, 20));
    const rec = stack.records.slice(before).find((r) => r.route === '/v1/embeddings' && r.cancelled);
    assert.ok(rec, 'the aborted request is recorded as cancelled');
    assert.equal(rec.status, 499);
  });
});

describe('embeddings during a streaming chat generation', () => {
  test('the chat output equals the same seeded request without the concurrent embedding; the embedding is unchanged too', async () => {
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me a long story about caches.' }];
    const params = { model, messages, max_tokens: 40, temperature: 0.9, seed: 4242 } as const;
    const collect = async (onFirst?: () => void) => {
      const stream = await client.chat.completions.create({ ...params, stream: true });
      let text = '';
      let first = true;
      let finish: string | null = null;
      for await (const c of stream) {
        const d = c.choices[0]?.delta?.content;
        if (d) {
          text += d;
          if (first) {
            first = false;
            onFirst?.();
          }
        }
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      return { text, finish };
    };
    const embInput = ['an embedding during generation', 'and another one'];
    const embAlone = await client.embeddings.create({ model, input: embInput });
    const alone = await collect();
    assert.ok(alone.text.length > 0);
    const during: Promise<OpenAI.CreateEmbeddingResponse>[] = [];
    const withEmb = await collect(() => {
      during.push(client.embeddings.create({ model, input: embInput }));
    });
    assert.equal(during.length, 1, 'the embeddings request was sent while the chat streamed');
    const emb = await during[0];
    assert.equal(withEmb.text, alone.text);
    assert.equal(withEmb.finish, alone.finish);
    for (let i = 0; i < embInput.length; i++) assert.deepEqual(emb.data[i].embedding, embAlone.data[i].embedding);
  });
});

// Library mode through the whole app (`startServe`: model manager, hardening hooks with memory
// admission, metrics): an embeddings request naming another library model loads it like a chat
// request would, and it is counted under its own route.
describe('embeddings in library mode (startServe)', { timeout: 600_000 }, () => {
  const A = 'tiny-qwen3';
  const B = 'tiny-llama';
  let root: string;
  let running: RunningServe | null = null;
  let lib: OpenAI;

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-emb-lib-'));
    const dataDir = path.join(root, 'data');
    await buildTinyModel({ family: 'qwen3' }, path.join(dataDir, 'models', A));
    await buildTinyModel({ family: 'llama' }, path.join(dataDir, 'models', B));
    const settings = { ...DEFAULT_SETTINGS, dataDir, contextLength: 2048 };
    running = await startServe(serveOptionsFor(path.join(dataDir, 'models', A), dataDir, { settings, idleUnloadMs: 0 }), () => {});
    assert.ok(running.models, 'library mode is on');
    lib = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  });
  after(async () => {
    await stopServeHard(running);
    rmSync(root, { recursive: true, force: true });
  });

  test('a request for library model B switches the engine to it; unknown names are 404; metrics count the route', async () => {
    const a = await lib.embeddings.create({ model: A, input: 'same text' });
    assert.equal(a.model, A);
    assert.equal(running!.engine.model!.architecture, 'qwen3');
    const b = await lib.embeddings.create({ model: B, input: 'same text' });
    assert.equal(b.model, B);
    assert.equal(running!.models!.loadedId, B);
    assert.equal(running!.engine.model!.architecture, 'llama');
    assert.equal(b.data[0].embedding.length, running!.engine.model!.hiddenSize);
    assert.ok(Math.abs(norm(b.data[0].embedding) - 1) < 1e-5);
    assert.notDeepEqual(b.data[0].embedding, a.data[0].embedding, 'another model, another vector');
    await assert.rejects(lib.embeddings.create({ model: 'nope', input: 'x' }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404 && e.code === 'model_not_found');
    // Back to A: the same vector as before (the switch reloaded the same weights).
    const again = await lib.embeddings.create({ model: A, input: 'same text' });
    assert.deepEqual(again.data[0].embedding, a.data[0].embedding);
    // Counted per route and status class (summed over the model label); records land when responses close.
    const count = (prom: string, cls: string) =>
      prom
        .split('\n')
        .filter((l) => l.startsWith('mlxbar_requests_total{') && l.includes('route="/v1/embeddings"') && l.includes(`status_class="${cls}"`))
        .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    let prom = '';
    for (let i = 0; i < 50; i++) {
      prom = await (await fetch(`${running!.url}/metrics`)).text();
      if (count(prom, '2xx') >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(count(prom, '2xx'), 3);
    assert.equal(count(prom, '4xx'), 1);
    // Embeddings stay out of the generation latency window (no tokens were generated).
    assert.match(prom, /mlxbar_request_duration_seconds_count\{route="\/v1\/embeddings",stream="false"\} 3/);
    assert.match(prom, /mlxbar_request_latency_p50_seconds 0\n/);
  });
});
