// logprobs / top_logprobs through the real server, the real engine process and the official
// `openai` client, on a tiny random-weight Qwen3-layout model (its gibberish is full of byte-level
// tokens that carry half a character, and of skipped special tokens: the hard cases for "the
// tokens concatenate to the text"). The numbers are checked against an independent log_softmax of
// the same model's logits computed in this process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { recordingResponseCache, startStack, postJson, type TestStack } from './helpers.ts';
import { loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { engineLogits } from '../engine/reference-helpers.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;
// Always a miss; records the keys of the requests that would be stored.
const { hook: recordingCache, keys: cacheSets } = recordingResponseCache();

before(async () => {
  stack = await startStack({ hooks: { responseCache: recordingCache } });
  model = stack.modelInfo.id;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  await stack?.close();
});

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me about logarithms.' }];
type Content = OpenAI.Chat.Completions.ChatCompletionTokenLogprob;

function checkEntries(content: Content[], k: number, label: string): void {
  for (const [i, t] of content.entries()) {
    assert.equal(typeof t.token, 'string', label);
    assert.ok(Number.isFinite(t.logprob) && t.logprob <= 0, `${label} #${i}: logprob ${t.logprob}`);
    assert.ok(Array.isArray(t.bytes) && t.bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255), `${label} #${i}: bytes`);
    assert.equal(t.top_logprobs.length, k, `${label} #${i}: ${k} alternatives`);
    let mass = 0;
    for (let j = 0; j < t.top_logprobs.length; j++) {
      const a = t.top_logprobs[j]!;
      assert.ok(a.logprob <= 0);
      if (j > 0) assert.ok(t.top_logprobs[j - 1]!.logprob >= a.logprob, `${label} #${i}: sorted descending`);
      mass += Math.exp(a.logprob);
    }
    assert.ok(mass <= 1 + 1e-5, `${label} #${i}: alternatives' probabilities sum to ${mass}`);
    if (k > 0) assert.ok(t.logprob <= t.top_logprobs[0]!.logprob + 1e-6, `${label} #${i}: nothing beats the top alternative`);
  }
}

/**
 * Same tokens, bytes and alternatives; numbers equal within 1e-4 (a second run of a prompt reuses
 * its KV from the prefix cache, whose logits differ from a fresh prefill by ~1e-6).
 */
function assertSameLogprobs(a: Content[], b: Content[], label: string): void {
  const strip = (c: Content[]) => c.map((t) => ({ token: t.token, bytes: t.bytes, top: t.top_logprobs.map((x) => ({ token: x.token, bytes: x.bytes })) }));
  assert.deepEqual(strip(a), strip(b), label);
  a.forEach((t, i) => {
    assert.ok(Math.abs(t.logprob - b[i]!.logprob) < 1e-4, `${label} #${i}`);
    t.top_logprobs.forEach((x, j) => assert.ok(Math.abs(x.logprob - b[i]!.top_logprobs[j]!.logprob) < 1e-4, `${label} #${i} alt ${j}`));
  });
}

async function streamChat(body: Record<string, unknown>): Promise<{ content: string; logprobs: Content[]; chunksWithLogprobs: number; finish: string | null }> {
  const s = await client.chat.completions.create({ model, messages, stream: true, ...body } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  let content = '';
  const logprobs: Content[] = [];
  let chunksWithLogprobs = 0;
  let finish: string | null = null;
  for await (const chunk of s) {
    const c = chunk.choices[0];
    if (!c) continue;
    content += c.delta.content ?? '';
    if (c.logprobs?.content) {
      chunksWithLogprobs++;
      logprobs.push(...c.logprobs.content);
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { content, logprobs, chunksWithLogprobs, finish };
}

describe('chat logprobs', () => {
  test('non-stream: OpenAI shape, chosen = top-1 at temperature 0, sorted alternatives, tokens concatenate to the content', async () => {
    const res = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 5 });
    const choice = res.choices[0]!;
    const content = choice.logprobs?.content;
    assert.ok(Array.isArray(content), 'logprobs.content is an array');
    assert.equal(content.length, res.usage?.completion_tokens, 'one entry per generated token');
    checkEntries(content, 5, 'non-stream');
    for (const t of content) {
      assert.equal(t.logprob, t.top_logprobs[0]!.logprob, 'greedy: the chosen token is the most likely one');
      assert.equal(t.token, t.top_logprobs[0]!.token);
      assert.deepEqual(t.bytes, t.top_logprobs[0]!.bytes);
    }
    assert.equal(content.map((t) => t.token).join(''), choice.message.content);
    // Without logprobs the field stays null (and the text is the same).
    const plain = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
    assert.equal(plain.choices[0]!.logprobs, null);
    assert.equal(plain.choices[0]!.message.content, choice.message.content);
  });

  test('top_logprobs 0 and 20: requested lengths', async () => {
    for (const k of [0, 20]) {
      const res = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: k });
      const content = res.choices[0]!.logprobs!.content!;
      assert.equal(content.length, 4);
      checkEntries(content, k, `k=${k}`);
    }
  });

  test('the numbers equal an independent log_softmax of the model logits (test process) within 1e-4', async () => {
    const k = 8;
    const res = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: k });
    const content = res.choices[0]!.logprobs!.content!;
    const lm: LoadedModel = await loadModel(stack.modelDir);
    const seq = stack.text.encodeChat([{ role: 'user', content: 'Tell me about logarithms.' }]).ids;
    const refIds: number[] = [];
    for (const [i, t] of content.entries()) {
      const rows = engineLogits(lm, seq);
      const row = rows[rows.length - 1]!;
      let m = -Infinity;
      for (const x of row) if (x > m) m = x;
      let s = 0;
      for (const x of row) s += Math.exp(x - m);
      const ref = row.map((x) => x - m - Math.log(s));
      const order = ref.map((v, id) => ({ v, id })).sort((a, b) => b.v - a.v);
      assert.ok(Math.abs(t.logprob - order[0]!.v) < 1e-4, `#${i}: ${t.logprob} vs ${order[0]!.v}`);
      for (let j = 0; j < k; j++) {
        assert.ok(Math.abs(t.top_logprobs[j]!.logprob - order[j]!.v) < 1e-4, `#${i} alt ${j}: ${t.top_logprobs[j]!.logprob} vs ${order[j]!.v}`);
        // Each alternative's bytes are its token's: they decode like the tokenizer decodes that id (whole characters only).
        const dec = stack.text.decode([order[j]!.id]);
        if (!dec.includes('\uFFFD') && j > 0) assert.equal(Buffer.from(t.top_logprobs[j]!.bytes ?? []).toString('utf8'), dec, `#${i} alt ${j} bytes`);
      }
      refIds.push(order[0]!.id);
      seq.push(order[0]!.id);
    }
    // The reference walked the same tokens: their text is the content.
    assert.equal(stack.text.decode(refIds, { skipSpecialTokens: true }), res.choices[0]!.message.content);
    // The seconds of synchronous compute above kept the event loop from seeing the server close
    // idle keep-alive sockets; one turn lets the client's pool notice before the next request.
    await new Promise((r) => setTimeout(r, 200));
  });

  test('stream: every token reported once, in chunks, equal to the non-stream logprobs; tokens concatenate to the streamed text', async () => {
    const body = { max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 };
    const streamed = await streamChat(body);
    const full = await client.chat.completions.create({ model, messages, ...body });
    assert.equal(streamed.content, full.choices[0]!.message.content);
    assert.equal(streamed.logprobs.map((t) => t.token).join(''), streamed.content);
    assertSameLogprobs(streamed.logprobs, full.choices[0]!.logprobs!.content!, 'stream vs non-stream');
    assert.ok(streamed.chunksWithLogprobs > 1, 'spread over chunks, not only at the end');
    checkEntries(streamed.logprobs, 3, 'stream');
  });

  test("stop strings: held-back tokens are reported once released; a cut stop string's tokens are not", async () => {
    const body = { max_tokens: 16, temperature: 0, logprobs: true, top_logprobs: 2 };
    const free = await client.chat.completions.create({ model, messages, ...body });
    const text = free.choices[0]!.message.content!;
    const all = free.choices[0]!.logprobs!.content!;
    // Token start offsets of the free run.
    const starts: number[] = [];
    let pos = 0;
    for (const t of all) {
      starts.push(pos);
      pos += t.token.length;
    }
    assert.equal(pos, text.length);
    // A stop string that begins mid-output (first occurrence), not at a token boundary if possible.
    let cut = -1;
    for (let i = Math.floor(text.length / 3); i < text.length - 2; i++) {
      const stop = text.slice(i, i + 2);
      if (text.indexOf(stop) === i && !/\s/.test(stop) && !starts.includes(i)) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      for (let i = 1; i < text.length - 2; i++) if (text.indexOf(text.slice(i, i + 2)) === i) { cut = i; break; }
    }
    assert.ok(cut > 0, `no usable stop string in ${JSON.stringify(text)}`);
    const stop = text.slice(cut, cut + 2);
    const expected = all.filter((_, i) => starts[i]! < cut);
    assert.ok(expected.length < all.length, 'some tokens lie beyond the cut');
    const straddles = !starts.includes(cut);
    for (const stream of [false, true]) {
      let content: string;
      let lps: Content[];
      if (stream) {
        const r = await streamChat({ ...body, stop: [stop] });
        content = r.content;
        lps = r.logprobs;
        assert.equal(r.finish, 'stop');
      } else {
        const r = await client.chat.completions.create({ model, messages, ...body, stop: [stop] });
        content = r.choices[0]!.message.content!;
        lps = r.choices[0]!.logprobs!.content!;
        assert.equal(r.choices[0]!.finish_reason, 'stop');
      }
      assert.equal(content, text.slice(0, cut), `stream=${stream}`);
      // Exactly the tokens that produced returned text (one may straddle the cut), none after it.
      assertSameLogprobs(lps, expected, `stream=${stream}`);
      const joined = lps.map((t) => t.token).join('');
      assert.ok(joined.startsWith(content), `stream=${stream}: tokens cover the content`);
      if (straddles) assert.ok(joined.length > content.length, `stream=${stream}: the token straddling the cut is reported`);
      else assert.equal(joined, content, `stream=${stream}`);
      const lastLen = lps.length > 0 ? lps[lps.length - 1]!.token.length : 0;
      assert.ok(joined.length - lastLen < content.length || content.length === 0, `stream=${stream}: no token starts beyond the content`);
    }
    // A stop string that only ever matches partially holds text back repeatedly: every token still comes out.
    const never = text[Math.floor(text.length / 2)]! + '\u0007never';
    const held = await streamChat({ ...body, stop: [never] });
    assert.equal(held.content, text);
    assertSameLogprobs(held.logprobs, all, 'held back');
  });

  test('json response_format: logprobs of the unconstrained model; tokens still concatenate to the JSON', async () => {
    const res = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 40,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
      response_format: { type: 'json_object' },
    });
    const content = res.choices[0]!.logprobs!.content!;
    const text = res.choices[0]!.message.content!;
    assert.equal(content.map((t) => t.token).join(''), text);
    checkEntries(content, 2, 'json');
    // A random model never writes '{' on its own: the first token is not its top choice.
    assert.equal(text[0], '{');
    assert.ok(content[0]!.logprob < content[0]!.top_logprobs[0]!.logprob);
  });

  test('responses with logprobs bypass the response cache', async () => {
    cacheSets.length = 0;
    await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0, logprobs: true });
    assert.equal(cacheSets.length, 0);
    await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
    assert.equal(cacheSets.length, 1);
  });
});

describe('legacy completions logprobs', () => {
  test('logprobs N → tokens, token_logprobs, top_logprobs, text_offset (non-stream and stream agree)', async () => {
    const prompt = 'The logarithm of';
    const res = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, logprobs: 4 });
    const c = res.choices[0]!;
    const lp = c.logprobs!;
    assert.ok(lp);
    assert.equal(lp.tokens!.length, res.usage?.completion_tokens);
    assert.equal(lp.tokens!.join(''), c.text);
    assert.equal(lp.token_logprobs!.length, lp.tokens!.length);
    assert.equal(lp.top_logprobs!.length, lp.tokens!.length);
    let at = 0;
    for (let i = 0; i < lp.tokens!.length; i++) {
      assert.equal(lp.text_offset![i], at);
      at += lp.tokens![i]!.length;
      const alts = lp.top_logprobs![i]!;
      const vals = Object.values(alts);
      assert.ok(vals.length >= 1 && vals.length <= 4);
      assert.ok(lp.token_logprobs![i]! <= 0);
      assert.equal(lp.token_logprobs![i], Math.max(...vals), 'greedy: the chosen token is the most likely');
    }
    const s = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, logprobs: 4, stream: true });
    const merged = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as unknown[], text_offset: [] as number[] };
    let text = '';
    for await (const chunk of s) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      text += ch.text;
      if (ch.logprobs) {
        merged.tokens.push(...ch.logprobs.tokens!);
        merged.token_logprobs.push(...ch.logprobs.token_logprobs!);
        merged.top_logprobs.push(...ch.logprobs.top_logprobs!);
        merged.text_offset.push(...ch.logprobs.text_offset!);
      }
    }
    assert.equal(text, c.text);
    assert.deepEqual(merged.tokens, lp.tokens);
    assert.deepEqual(merged.text_offset, lp.text_offset);
    merged.token_logprobs.forEach((v, i) => assert.ok(Math.abs(v - lp.token_logprobs![i]!) < 1e-4));
    merged.top_logprobs.forEach((d, i) => {
      const want = lp.top_logprobs![i]! as Record<string, number>;
      const got = d as Record<string, number>;
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
      for (const key of Object.keys(want)) assert.ok(Math.abs(got[key]! - want[key]!) < 1e-4);
    });
  });
});

describe('logprobs limits', () => {
  test('out-of-range or malformed values → 400 invalid_value naming the parameter', async () => {
    const chat: [string, string][] = [
      ['"logprobs":true,"top_logprobs":21', 'top_logprobs'],
      ['"logprobs":true,"top_logprobs":-1', 'top_logprobs'],
      ['"logprobs":true,"top_logprobs":2.5', 'top_logprobs'],
      ['"top_logprobs":3', 'top_logprobs'],
      ['"logprobs":false,"top_logprobs":3', 'top_logprobs'],
      ['"logprobs":"yes"', 'logprobs'],
      ['"logprobs":5', 'logprobs'],
    ];
    for (const [frag, param] of chat) {
      const res = await postJson(stack.port, '/v1/chat/completions', `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1,${frag}}`);
      assert.equal(res.status, 400, frag);
      const err = (JSON.parse(res.body) as { error: { code: string; param: string } }).error;
      assert.equal(err.code, 'invalid_value', frag);
      assert.equal(err.param, param, frag);
    }
    const legacy: [string, string][] = [
      ['"logprobs":21', 'logprobs'],
      ['"logprobs":-1', 'logprobs'],
      ['"logprobs":true', 'logprobs'],
      ['"logprobs":2,"top_logprobs":3', 'top_logprobs'],
    ];
    for (const [frag, param] of legacy) {
      const res = await postJson(stack.port, '/v1/completions', `{"prompt":"hi","max_tokens":1,${frag}}`);
      assert.equal(res.status, 400, frag);
      const err = (JSON.parse(res.body) as { error: { code: string; param: string } }).error;
      assert.equal(err.code, 'invalid_value', frag);
      assert.equal(err.param, param, frag);
    }
    // The openai client's error class for the limit.
    await assert.rejects(
      client.chat.completions.create({ model, messages, logprobs: true, top_logprobs: 21 }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'top_logprobs',
    );
  });
});
