// Large prompts are rendered + tokenized in worker threads, off the server's event loop (issue #11
// item 1). Checked with the real Qwen3 tokenizer and chat template of a tiny model and real worker
// threads: (1) the worker path gives exactly the ids, constraint and cache key of the inline path
// (chat with tools, forced tools, completions, embeddings) and the same errors; (2) on a real
// server, while a maximal prompt is being tokenized in a worker, /health answers and a running
// stream keeps producing chunks (ordering, not wall-clock: both happen before the big request is
// answered); (3) a client that leaves stops its render; (4) the wait queue is bounded.
// How long /health takes meanwhile is the bench's job: `npm run -s bench -- --only health-under-load`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadTextPipeline, type TextPipeline } from '../../main/engine/text/index.ts';
import { ApiError } from '../../main/common/errors.ts';
import { PromptPool, MAX_INLINE_MESSAGES } from '../../main/server/prompt-pool.ts';
import { LARGE_BODY_BYTES } from '../../main/server/gates.ts';
import { promptInput, renderPrompt, type PromptInput } from '../../main/server/prompt-render.ts';
import { prepareGeneration } from '../../main/server/prompt.ts';
import { validateChatRequest } from '../../main/server/validate.ts';
import type { ModelInfo } from '../../main/engine/types.ts';
import type { ResponseFormat } from '../../main/server/generation.ts';
import type { RequestTrack } from '../../main/server/track.ts';
import { startStack, postJson, rawRequest, LEAK_RE, TINY, type TestStack } from './helpers.ts';

const WORDS = 'the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly zebras'.split(' ');
/** Ordinary text (real BPE merges, not one repeated byte), `chars` long; `seed` makes it unique. */
function varied(chars: number, seed = 0): string {
  let s = `${seed} `;
  for (let i = 0; s.length < chars; i++) s += WORDS[(i * 7 + seed) % WORDS.length] + (i % 13 === 0 ? '.\n' : ' ');
  return s.slice(0, chars);
}

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['c', 'f'] } }, required: ['city'] },
    },
  },
  { type: 'function', function: { name: 'search', parameters: { type: 'object', properties: { q: { type: 'string', minLength: 1 } } } } },
];

const chatInput = (body: Record<string, unknown>): PromptInput => promptInput(validateChatRequest(body, { maxStopLength: 512 }));

describe('the worker path gives what the inline path gives', { timeout: 240_000 }, () => {
  let text: TextPipeline;
  let viaWorker: PromptPool;
  let inline: PromptPool;
  before(async () => {
    text = await loadTextPipeline(await buildTinyModel(TINY));
    // inlineMaxChars 0: every request goes to a worker thread.
    viaWorker = new PromptPool({ workers: 1, maxQueue: 8, inlineMaxChars: 0, retryAfterSeconds: 1 });
    inline = new PromptPool({ workers: 0, maxQueue: 8, inlineMaxChars: 0, retryAfterSeconds: 1 });
  });
  after(async () => {
    await viaWorker?.close();
  });

  const conversation = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: `Weather in Oslo? ${varied(3000, 1)}` },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 3}' },
    { role: 'user', content: 'And in Bergen, in f? Ünïcödé ✓ 你好' },
  ];

  const cases: Record<string, PromptInput> = {
    'chat with tools (tool_choice auto: lazy constraint)': chatInput({ messages: conversation, tools: TOOLS }),
    'chat with a forced tool call and template variables': chatInput({ messages: conversation, tools: TOOLS, tool_choice: 'required', chat_template_kwargs: { enable_thinking: true } }),
    'chat with response_format json_schema': chatInput({ messages: conversation, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'integer' } } } } } }),
    'completion prompt': { kind: 'completions', prompt: varied(5000, 2), constraint: null },
  };
  for (const [name, input] of Object.entries(cases)) {
    test(name, async () => {
      const w = await viaWorker.render(text, input);
      const i = await inline.render(text, input);
      assert.equal(w.where, 'worker');
      assert.equal(i.where, 'inline');
      assert.ok(w.count > 50);
      assert.deepEqual(w.ids, i.ids);
      assert.equal(w.opensThinking, i.opensThinking);
      assert.deepEqual(w.constraint, i.constraint);
      // …and what today's code computes directly on the pipeline.
      assert.deepEqual(w.ids, renderPrompt(input, text).ids);
    });
  }

  test('the response-cache key (prompt ids, sampling, constraint) is the same', async () => {
    const r = validateChatRequest({ messages: conversation, tools: TOOLS, tool_choice: 'required', temperature: 0 }, { maxStopLength: 512 });
    const info = { id: 'tiny', contextLength: 4096, fingerprint: 'f'.repeat(64), vocabSize: 151936 } as unknown as ModelInfo;
    const lease = { id: 'tiny', info, text, release() {} };
    const prep = (prompts: PromptPool) =>
      prepareGeneration(r, {} as RequestTrack, lease, { idPrefix: 'x-' } as ResponseFormat, { defaultMaxTokens: 16, responseCache: true, prompts });
    const [a, b] = [await prep(viaWorker), await prep(inline)];
    assert.ok(a.cacheKey && a.constraint);
    assert.deepEqual(a.cacheKey, b.cacheKey);
    assert.deepEqual(a.promptIds, b.promptIds);
    assert.equal(a.startInThinking, b.startInThinking);
  });

  test('embedding inputs', async () => {
    const texts = [varied(100, 3), 'Ünïcödé ✓ 你好', varied(7000, 4), ' leading space', 'x'];
    assert.deepEqual(await viaWorker.encodeTexts(text, texts), texts.map((s) => text.encode(s)));
    assert.deepEqual(await inline.encodeTexts(text, texts), texts.map((s) => text.encode(s)));
  });

  test('errors: the same ApiError (code, param, message), no paths or stacks', async () => {
    // A second model whose template raises (with a path in its text), and a forced tool whose schema cannot be enforced.
    const dir = mkdtempSync(path.join(tmpdir(), 'mlxbar-prompt-worker-'));
    try {
      await buildTinyModel(TINY, dir);
      writeFileSync(
        path.join(dir, 'chat_template.jinja'),
        "{%- for m in messages %}{%- if m.role == 'system' and not loop.first %}{{ raise_exception('system messages go first, see /home/me/app/x.ts:12:3') }}{%- endif %}" +
          "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}",
      );
      const strict = await loadTextPipeline(dir);
      const lateSystem: PromptInput = chatInput({ messages: [{ role: 'user', content: 'hi' }, { role: 'system', content: 'x' }] });
      const badTool: PromptInput = { kind: 'chat', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', if: { type: 'object' } } } }], toolChoice: 'required', constraint: null, templateKwargs: null };
      const outcome = async (p: PromptPool, t: TextPipeline, input: PromptInput) => {
        try {
          const r = await p.render(t, input);
          return 'error' in r.constraint ? r.constraint.error : null;
        } catch (err) {
          return err;
        }
      };
      for (const [t, input] of [[strict, lateSystem], [text, badTool]] as const) {
        const [w, i] = [await outcome(viaWorker, t, input), await outcome(inline, t, input)];
        assert.ok(w instanceof ApiError && i instanceof ApiError, `both fail: ${String(w)} / ${String(i)}`);
        assert.deepEqual(w.toJSON(), i.toJSON());
        assert.equal(w.status, i.status);
        assert.doesNotMatch(JSON.stringify(w.toJSON()), LEAK_RE);
      }
      // The same pool serves both models (one pipeline each in its worker).
      assert.deepEqual((await viaWorker.render(strict, chatInput({ messages: [{ role: 'user', content: 'hi' }] }))).ids, strict.encodeChat([{ role: 'user', content: 'hi' }]).ids);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('small requests stay inline; many messages or many characters go to a worker', async () => {
    const pool = new PromptPool({ workers: 1, maxQueue: 1, inlineMaxChars: 4096, retryAfterSeconds: 1 });
    try {
      assert.equal((await pool.render(text, chatInput({ messages: [{ role: 'user', content: 'hi' }] }))).where, 'inline');
      assert.equal((await pool.render(text, chatInput({ messages: [{ role: 'user', content: varied(5000) }] }))).where, 'worker');
      const many = Array.from({ length: MAX_INLINE_MESSAGES + 1 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'a' }));
      assert.equal((await pool.render(text, chatInput({ messages: many }))).where, 'worker');
    } finally {
      await pool.close();
    }
  });

  test('the wait queue is bounded: past it, 503 queue_full with Retry-After', async () => {
    const pool = new PromptPool({ workers: 1, maxQueue: 1, inlineMaxChars: 0, retryAfterSeconds: 3 });
    try {
      const input = (seed: number): PromptInput => ({ kind: 'completions', prompt: varied(200_000, seed), constraint: null });
      const running = pool.render(text, input(10)); // takes the worker
      const queued = pool.render(text, input(11)); // waits
      await assert.rejects(pool.render(text, input(12)), (err: unknown) => err instanceof ApiError && err.code === 'queue_full' && err.status === 503 && err.retryAfter === 3);
      assert.equal((await running).where, 'worker');
      assert.equal((await queued).where, 'worker');
    } finally {
      await pool.close();
    }
  });

  test('after idling, one worker stays (warm for the next large request), the others stop', async () => {
    const pool = new PromptPool({ workers: 2, maxQueue: 4, inlineMaxChars: 0, retryAfterSeconds: 1, idleMs: 20 });
    try {
      const input = (seed: number): PromptInput => ({ kind: 'completions', prompt: varied(20_000, seed), constraint: null });
      await Promise.all([pool.render(text, input(30)), pool.render(text, input(31))]);
      assert.equal(pool.load.workers, 2);
      for (let i = 0; pool.load.workers > 1 && i < 5000; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(pool.load.workers, 1);
      const started = pool.stats.workersStarted;
      assert.equal((await pool.render(text, input(32))).where, 'worker');
      assert.equal(pool.stats.workersStarted, started, 'the warm worker served it');
    } finally {
      await pool.close();
    }
  });

  test('an aborted render leaves the queue, or stops its worker when running', async () => {
    const pool = new PromptPool({ workers: 1, maxQueue: 4, inlineMaxChars: 0, retryAfterSeconds: 1 });
    try {
      const a = new AbortController();
      const b = new AbortController();
      const first = pool.render(text, { kind: 'completions', prompt: varied(400_000, 20), constraint: null }, { signal: a.signal });
      const second = pool.render(text, { kind: 'completions', prompt: varied(400_000, 21), constraint: null }, { signal: b.signal });
      assert.deepEqual(pool.load, { running: 1, queued: 1, workers: 1 });
      b.abort(new Error('gone'));
      await assert.rejects(second, /gone/);
      assert.equal(pool.load.queued, 0);
      a.abort(new Error('gone too'));
      await assert.rejects(first, /gone too/);
      assert.deepEqual(pool.load, { running: 0, queued: 0, workers: 0 }); // its thread was stopped
      assert.equal(pool.stats.cancelled, 2);
      // The next large request gets a fresh worker.
      assert.equal((await pool.render(text, { kind: 'completions', prompt: varied(3000, 22), constraint: null })).where, 'worker');
    } finally {
      await pool.close();
    }
  });
});

describe('a real server stays responsive while a maximal prompt is tokenized', { timeout: 300_000 }, () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({});
  });
  after(async () => {
    await stack?.close();
  });

  /** The largest prompt the cheap bounds let through (context × 64 characters): tokenized, then refused by the exact count. */
  const maximal = (seed: number) => ({ messages: [{ role: 'user', content: varied(stack.modelInfo.contextLength * 64 - 64, seed) }], max_tokens: 1 });

  /**
   * The big prompt is being rendered in a worker. Its body (> 256 KiB) is parsed in a worker first:
   * a running parse task is not the render, so wait for the parse to have finished too.
   */
  const rendering = (parsedBefore: number) => () => {
    const prompts = stack.server.prompts;
    return prompts.load.running === 1 && prompts.stats.parsed > parsedBefore;
  };

  const until = async (cond: () => boolean, what: string) => {
    for (let i = 0; !cond(); i++) {
      if (i > 20_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  };

  test('/health answers and a stream keeps streaming before the big request is answered', async () => {
    const prompts = stack.server.prompts;
    // A long stream first.
    let chunks = 0;
    let streamDone = false;
    const streamReq = http.request(
      { host: '127.0.0.1', port: stack.port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        res.on('data', (c: Buffer) => (chunks += (c.toString().match(/^data: /gm) ?? []).length));
        res.on('end', () => (streamDone = true));
        res.on('error', () => {});
      },
    );
    streamReq.on('error', () => {});
    streamReq.end(JSON.stringify({ messages: [{ role: 'user', content: 'tell me a story' }], max_tokens: 3000, stream: true }));
    await until(() => chunks >= 3, 'the stream to start');

    let bigDone = false;
    assert.ok(Buffer.byteLength(JSON.stringify(maximal(1))) > LARGE_BODY_BYTES, 'its body is parsed in a worker too');
    const isRendering = rendering(prompts.stats.parsed);
    const big = postJson(stack.port, '/v1/chat/completions', maximal(1)).finally(() => (bigDone = true));
    await until(() => isRendering() || bigDone, 'the big prompt to reach a worker');
    assert.equal(bigDone, false, 'the big prompt is being tokenized in a worker');

    for (let i = 0; i < 5; i++) assert.equal((await rawRequest(stack.port, { path: '/health' })).status, 200);
    const seen = chunks;
    await until(() => chunks >= seen + 3 || bigDone || streamDone, 'more stream chunks');
    assert.equal(bigDone, false, '/health answered 5 times and the stream advanced while the big prompt was still being tokenized');
    assert.ok(chunks >= seen + 3);
    assert.equal(prompts.load.running, 1);

    const r = await big;
    assert.equal(r.status, 400, r.body.slice(0, 300));
    const err = (JSON.parse(r.body) as { error: { code: string; message: string; param: string } }).error;
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(err.param, 'messages');
    assert.match(err.message, /but the prompt has \d+ tokens/); // counted exactly (by the worker)
    streamReq.destroy();
    await until(() => stack.records.some((x) => x.stream && x.cancelled), 'the stream to be recorded as cancelled');
  });

  test('a client that leaves during tokenization stops its render; the server goes on', async () => {
    const prompts = stack.server.prompts;
    const before = prompts.stats.cancelled;
    const cancelledRecords = () => stack.records.filter((x) => x.route === '/v1/chat/completions' && !x.stream && x.cancelled && x.status === 499).length;
    const recordsBefore = cancelledRecords();
    const req = http.request({ host: '127.0.0.1', port: stack.port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false });
    req.on('error', () => {});
    const isRendering = rendering(prompts.stats.parsed);
    req.end(JSON.stringify(maximal(2)));
    await until(isRendering, 'the big prompt to reach a worker');
    req.destroy();
    await until(() => prompts.stats.cancelled === before + 1 && prompts.load.running === 0, 'the render to be cancelled');
    await until(() => cancelledRecords() === recordsBefore + 1, 'the cancelled request to be recorded (499)');
    const workerRuns = prompts.stats.worker;
    const ok = await postJson(stack.port, '/v1/chat/completions', { messages: [{ role: 'user', content: varied(10_000, 3) }], max_tokens: 2 });
    assert.equal(ok.status, 200, ok.body.slice(0, 300));
    assert.equal(prompts.stats.worker, workerRuns + 1, 'rendered by a fresh worker');
  });

  test('embeddings: a large batch is tokenized in a worker, with the same token counts', async () => {
    const input = Array.from({ length: 48 }, (_, i) => varied(600, 100 + i));
    const workerRuns = stack.server.prompts.stats.worker;
    const r = await postJson(stack.port, '/v1/embeddings', { input });
    assert.equal(r.status, 200, r.body.slice(0, 300));
    const usage = (JSON.parse(r.body) as { usage: { prompt_tokens: number } }).usage;
    assert.equal(usage.prompt_tokens, input.reduce((a, s) => a + stack.text.encode(s).length, 0));
    assert.equal(stack.server.prompts.stats.worker, workerRuns + 1);
  });
});
