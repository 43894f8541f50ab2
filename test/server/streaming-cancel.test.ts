// Streaming protocol details, cancellation, queueing and engine failure (reliability-security.md §7
// groups E and F) on the real server + real engine process running a tiny model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import { startStack, postJson, parseSse, chat, LEAK_RE, type TestStack } from './helpers.ts';
import { createServer, type MlxBarServer, type ServerConfig } from '../../main/server/index.ts';
import type { CachedGeneration, ResponseCacheKey } from '../../main/server/hooks.ts';
import type { RequestRecord } from '../../main/common/metrics-types.ts';

let stack: TestStack;
const cacheSets: { key: ResponseCacheKey; value: CachedGeneration }[] = [];

before(async () => {
  stack = await startStack({
    hooks: {
      // Always a miss; records what the server hands to the cache.
      responseCache: { get: () => null, set: (key, value) => void cacheSets.push({ key, value }) },
    },
  });
});
after(async () => {
  await stack?.close();
});

/** Starts a request and returns once `until` has seen enough of the response, then destroys the socket. */
function startAndDrop(
  port: number,
  body: unknown,
  until: { firstChunk: true } | { afterMs: number } | { when: () => boolean },
): Promise<{ received: string }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    let received = '';
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        res.on('data', (c: Buffer) => {
          received += c.toString();
          if ('firstChunk' in until && received.includes('"content":"') && /"content":"[^"]/.test(received)) {
            req.destroy();
            resolve({ received });
          }
        });
        res.on('error', () => {});
      },
    );
    req.on('error', (err) => {
      if (req.destroyed) return resolve({ received });
      reject(err);
    });
    req.end(payload);
    if ('when' in until) {
      const poll = setInterval(() => {
        if (!until.when()) return;
        clearInterval(poll);
        req.destroy();
        resolve({ received });
      }, 5);
    }
    if ('afterMs' in until) {
      setTimeout(() => {
        req.destroy();
        resolve({ received });
      }, until.afterMs);
    }
  });
}

/** True once a generation has held the engine slot for `ms` (the request is being worked on). */
function activeFor(ms: number): () => boolean {
  let since = 0;
  return () => {
    if (stack.server.load.active === 0) return false;
    since ||= Date.now();
    return Date.now() - since >= ms;
  };
}

async function waitForRecord(pred: (r: RequestRecord) => boolean, timeoutMs = 30_000): Promise<RequestRecord> {
  const t0 = Date.now();
  for (;;) {
    const r = stack.records.find(pred);
    if (r) return r;
    if (Date.now() - t0 > timeoutMs) throw new Error('record not seen');
    await new Promise((res) => setTimeout(res, 50));
  }
}

/**
 * The cancelled generation released the engine (ordering, not timing: its record is out, and the work
 * slot is free without anyone waiting), and a short request is then served.
 */
async function assertServedPromptly(): Promise<void> {
  for (let i = 0; i < 600 && stack.server.load.active > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(stack.server.load, { active: 0, queued: 0 }, 'the cancelled generation still holds the engine');
  const res = await postJson(stack.port, '/v1/chat/completions', chat('after cancel', { max_tokens: 2 }));
  assert.equal(res.status, 200);
  assert.deepEqual(stack.server.load, { active: 0, queued: 0 });
}

describe('E. cancellation', () => {
  test('client disconnect mid-stream stops the engine within a step; nothing is cached', async () => {
    const setsBefore = cacheSets.length;
    const recBefore = stack.records.length;
    const { received } = await startAndDrop(stack.port, chat('tell me a long story', { max_tokens: 3000, stream: true, temperature: 0 }), { firstChunk: true });
    assert.match(received, /data: /);
    const rec = await waitForRecord((r) => stack.records.indexOf(r) >= recBefore && r.stream && r.cancelled);
    // Decoding 3000 tokens takes tens of seconds on the tiny model; a prompt stop leaves most undone.
    assert.ok(rec.completionTokens < 1500, `engine kept going: ${rec.completionTokens} tokens`);
    assert.equal(rec.finishReason, 'cancelled');
    await assertServedPromptly();
    assert.equal(cacheSets.slice(setsBefore).filter((s) => s.key.sampling.maxTokens === 3000).length, 0, 'cancelled generation reached the cache');
  });

  test('client disconnect on a non-stream request cancels it too', async () => {
    const recBefore = stack.records.length;
    await startAndDrop(stack.port, chat('another long one', { max_tokens: 3000, temperature: 0 }), { when: activeFor(300) });
    const rec = await waitForRecord((r) => stack.records.indexOf(r) >= recBefore && !r.stream && r.cancelled);
    assert.ok(rec.completionTokens < 1500, `engine kept going: ${rec.completionTokens} tokens`);
    assert.equal(rec.status, 499);
    await assertServedPromptly();
    assert.equal(cacheSets.filter((s) => s.key.sampling.maxTokens === 3000).length, 0);
  });

  test('client disconnect during prefill of a long prompt cancels before decoding', async () => {
    const recBefore = stack.records.length;
    const long = 'lorem ipsum dolor sit amet '.repeat(600); // ~3.6k tokens: a prefill of a few chunks
    // Drop as soon as the generation holds the engine slot (prefill of ~3.6k tokens takes a while).
    await startAndDrop(stack.port, { messages: [{ role: 'user', content: long }], max_tokens: 500, stream: true }, { when: activeFor(0) });
    const rec = await waitForRecord((r) => stack.records.indexOf(r) >= recBefore && r.cancelled);
    assert.ok(rec.completionTokens < 50, `decoded ${rec.completionTokens} tokens after the client left`);
    await assertServedPromptly();
  });
});

describe('E. streaming protocol', () => {
  let pingServer: MlxBarServer;
  before(async () => {
    const text = stack.text;
    pingServer = createServer({ engine: stack.engine, text, modelInfo: stack.modelInfo }, { port: 0, keepAliveIntervalMs: 60 });
    await pingServer.listen();
  });
  after(async () => {
    await pingServer?.close(200);
  });

  test('keep-alive comments during a long prefill are ignored by the SDK; the stream completes', async () => {
    const port = pingServer.address()!.port;
    const long = 'keep alive during prefill please '.repeat(550);
    const res = await postJson(port, '/v1/chat/completions', { messages: [{ role: 'user', content: long }], max_tokens: 3, stream: true });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/event-stream/);
    const { events, comments } = parseSse(res.body);
    assert.ok(comments >= 1, 'no : ping comment during a long prefill');
    assert.equal(events.at(-1), '[DONE]');
    const client = new OpenAI({ baseURL: `${pingServer.address()!.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: stack.modelInfo.id,
      messages: [{ role: 'user', content: long + ' again' }],
      max_tokens: 3,
      stream: true,
    });
    let n = 0;
    for await (const c of stream) if (c.choices[0]?.delta.content) n++;
    assert.ok(n >= 1);
  });

  test('tokens are sent as produced (the first content arrives while the generation still runs)', async () => {
    // Ordering, not timing: when the first content chunk reaches the client, the server still
    // holds the generation's work slot (it is released only after the engine's done event).
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: stack.modelInfo.id, messages: [{ role: 'user', content: 'go' }], max_tokens: 300, temperature: 0, stream: true });
    let activeAtFirst: number | null = null;
    let chunks = 0;
    for await (const c of stream) {
      if (!c.choices[0]?.delta.content) continue;
      chunks++;
      if (activeAtFirst === null) activeAtFirst = stack.server.load.active;
    }
    assert.ok(chunks > 1, `${chunks} content chunks`);
    assert.equal(activeAtFirst, 1, 'the generation was still running when its first token arrived');
  });

  test('graceful close: in-flight stream gets an error event then [DONE]; close resolves', async () => {
    const text = stack.text;
    const s = createServer({ engine: stack.engine, text, modelInfo: stack.modelInfo }, { port: 0 });
    const { port } = await s.listen();
    const pending = postJson(port, '/v1/chat/completions', chat('long', { max_tokens: 3000, stream: true, temperature: 0 }));
    await new Promise((r) => setTimeout(r, 400));
    await s.close(100);
    const res = await pending;
    const { events } = parseSse(res.body);
    assert.equal(events.at(-1), '[DONE]');
    const err = events.at(-2) as { error?: { code: string } };
    assert.equal(err.error?.code, 'engine_unavailable');
  });
});

describe('F. queueing', () => {
  test('queue overflow → 503 queue_full with Retry-After; no resets; admitted requests complete', async () => {
    const text = stack.text;
    const cfg: Partial<ServerConfig> = { port: 0, maxConcurrent: 1, maxQueue: 2, retryAfterSeconds: 3 };
    const s = createServer({ engine: stack.engine, text, modelInfo: stack.modelInfo }, cfg);
    const { port } = await s.listen();
    try {
      const long = postJson(port, '/v1/chat/completions', chat('occupy the engine', { max_tokens: 120, temperature: 0 }));
      await new Promise((r) => setTimeout(r, 150));
      const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => postJson(port, '/v1/chat/completions', chat(`q${i}`, { max_tokens: 1 }))));
      const statuses = burst.map((r) => r.status);
      const busy = burst.filter((r) => r.status === 503);
      assert.ok(busy.length >= 5, `statuses ${statuses}`);
      for (const r of busy) {
        assert.equal(JSON.parse(r.body).error.code, 'queue_full');
        assert.equal(r.headers['retry-after'], '3');
        assert.equal(r.headers['retry-after-ms'], '3000');
      }
      assert.ok(burst.filter((r) => r.status === 200).length >= 1);
      assert.ok(statuses.every((st) => st === 200 || st === 503), `statuses ${statuses}`);
      assert.equal((await long).status, 200);
      assert.deepEqual(s.load, { active: 0, queued: 0 });
    } finally {
      await s.close(200);
    }
  });

  test('admission hook refusal → its 503 + Retry-After before queueing', async () => {
    const text = stack.text;
    const { ApiError } = await import('../../main/common/errors.ts');
    const s = createServer(
      {
        engine: stack.engine,
        text,
        modelInfo: stack.modelInfo,
        hooks: { admission: () => new ApiError('server_overloaded', 'Shedding load under memory pressure', { retryAfter: 5 }) },
      },
      { port: 0 },
    );
    const { port } = await s.listen();
    try {
      const res = await postJson(port, '/v1/chat/completions', chat('x'));
      assert.equal(res.status, 503);
      assert.equal(JSON.parse(res.body).error.code, 'server_overloaded');
      assert.equal(res.headers['retry-after'], '5');
      // streamed requests get the same plain HTTP error (nothing was sent yet)
      const st = await postJson(port, '/v1/chat/completions', chat('x', { stream: true }));
      assert.equal(st.status, 503);
    } finally {
      await s.close(200);
    }
  });
});

// Last: kills the engine process. A real fault (SIGKILL), not an injected one.
describe('E6. engine dies mid-stream', () => {
  test('client gets an error event then [DONE]; then 503 + Retry-After until the restart; then 200', async () => {
    const pid = (stack.engine as unknown as { pid?: number }).pid;
    assert.ok(pid, 'engine pid');
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: stack.modelInfo.id, messages: [{ role: 'user', content: 'die' }], max_tokens: 3000, temperature: 0, stream: true });
    let killed = false;
    await assert.rejects(
      (async () => {
        for await (const c of stream) {
          if (!killed && c.choices[0]?.delta.content) {
            killed = true;
            process.kill(pid!, 'SIGKILL');
          }
        }
      })(),
      (err: unknown) => err instanceof OpenAI.APIError && !LEAK_RE.test(String(err.message)),
    );
    const seen = new Set<number>();
    const t0 = Date.now();
    for (;;) {
      const res = await postJson(stack.port, '/v1/chat/completions', chat('alive?', { max_tokens: 1 }));
      seen.add(res.status);
      if (res.status === 200) break;
      assert.equal(res.status, 503, res.body);
      assert.ok(res.headers['retry-after']);
      assert.doesNotMatch(res.body, LEAK_RE);
      assert.ok(Date.now() - t0 < 90_000, 'engine did not come back');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(seen.has(200));
  });
});
