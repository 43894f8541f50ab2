// The remote-upstream client, breaker and registry against a real misbehaving HTTP server on loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { CircuitBreaker } from '../../../main/server/remote/breaker.ts';
import { UpstreamClient, UpstreamError, readJson, sseChunks } from '../../../main/server/remote/upstream.ts';
import { upstreamApiError } from '../../../main/server/remote/errors.ts';
import { Remotes } from '../../../main/server/remote/remotes.ts';
import { ApiError } from '../../../main/common/errors.ts';
import { startFakeUpstream } from './fake-upstream.ts';

const up = await startFakeUpstream();
after(() => up.close());

const SECRET = 'sk-upstream-secret-123456';

async function freePortThatRefuses(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('breaker: opens after N consecutive failures, one half-open probe, closes on its success, reopens on its failure', () => {
  let t = 0;
  const changes: string[] = [];
  const b = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1000, now: () => t, onChange: (s, p) => changes.push(`${p}>${s}`) });
  b.tryAcquire()!.failure();
  b.tryAcquire()!.success(); // success resets the count
  for (let i = 0; i < 2; i++) b.tryAcquire()!.failure();
  assert.equal(b.state, 'closed');
  b.tryAcquire()!.failure();
  assert.equal(b.state, 'open');
  assert.equal(b.tryAcquire(), null);
  assert.equal(b.retryAfterSeconds(), 1);
  t = 999;
  assert.equal(b.tryAcquire(), null);
  t = 1000;
  assert.equal(b.state, 'half_open');
  const probe = b.tryAcquire();
  assert.ok(probe);
  assert.equal(b.tryAcquire(), null, 'only one probe while half-open');
  probe.failure();
  assert.equal(b.state, 'open');
  t = 2000;
  const probe2 = b.tryAcquire()!;
  probe2.success();
  assert.equal(b.state, 'closed');
  assert.deepEqual(changes, ['closed>open', 'open>half_open', 'half_open>open', 'open>half_open', 'half_open>closed']);
});

test('client: non-stream JSON, our model name replaced, key sent only as Authorization to the upstream', async () => {
  up.setModes({ kind: 'ok', text: 'abc ', chunks: 3 });
  const c = new UpstreamClient({ id: 'big', baseURL: up.baseURL, apiKey: SECRET, model: 'Qwen/Qwen3-235B', headers: { 'x-team': 'blue' } });
  try {
    const res = await c.post('chat/completions', { model: c.upstreamModel, messages: [{ role: 'user', content: 'hi' }] });
    const json = (await readJson(res.body, 1000)) as any;
    assert.equal(json.choices[0].message.content, 'abc abc abc ');
    const rec = up.requests.at(-1)!;
    assert.equal(rec.url, '/v1/chat/completions');
    assert.equal(rec.body.model, 'Qwen/Qwen3-235B');
    assert.equal(rec.headers.authorization, `Bearer ${SECRET}`);
    assert.equal(rec.headers['x-team'], 'blue');
  } finally {
    c.close();
  }
});

test('client: SSE chunks parsed in order until [DONE]', async () => {
  up.setModes({ kind: 'ok', text: 'one two three ', chunks: 3 });
  const c = new UpstreamClient({ id: 'big', baseURL: up.baseURL });
  try {
    const res = await c.post('chat/completions', { model: 'big', stream: true, messages: [] });
    const texts: string[] = [];
    let finish: string | null = null;
    for await (const ch of sseChunks(res.body) as AsyncGenerator<any>) {
      texts.push(ch.choices[0]?.delta?.content ?? '');
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(texts.join(''), 'one two three ');
    assert.equal(finish, 'stop');
  } finally {
    c.close();
  }
});

test('client: retries 503/502 before the first byte, then succeeds; a 500 is not retried', async () => {
  const c = new UpstreamClient({ id: 'big', baseURL: up.baseURL }, { retries: 2, retryMinMs: 1 });
  try {
    const before = up.requests.length;
    up.setModes({ kind: 'status', status: 503 }, { kind: 'status', status: 502 }, { kind: 'ok' });
    const res = await c.post('chat/completions', { messages: [] });
    await readJson(res.body, 1000);
    assert.equal(up.requests.length - before, 3);
    const before2 = up.requests.length;
    up.setModes({ kind: 'status', status: 500 });
    await assert.rejects(c.post('chat/completions', { messages: [] }), (e: unknown) => e instanceof UpstreamError && e.detail.status === 500);
    assert.equal(up.requests.length - before2, 1);
  } finally {
    c.close();
  }
});

test('client: a refused connection is a connect error after the retries', async () => {
  const port = await freePortThatRefuses();
  const c = new UpstreamClient({ id: 'gone', baseURL: `http://127.0.0.1:${port}/v1` }, { retries: 1, retryMinMs: 1 });
  try {
    await assert.rejects(c.post('chat/completions', {}), (e: unknown) => e instanceof UpstreamError && e.kind === 'connect');
  } finally {
    c.close();
  }
});

test('client: an upstream that never answers hits the headers clock; one that stalls mid-stream hits the idle clock', async () => {
  const c = new UpstreamClient({ id: 'slow', baseURL: up.baseURL }, { timeouts: { headersMs: 150, idleMs: 150 }, retries: 0 });
  try {
    up.setModes({ kind: 'stall-headers' });
    await assert.rejects(c.post('chat/completions', {}), (e: unknown) => e instanceof UpstreamError && e.kind === 'timeout');
    up.setModes({ kind: 'stall-body', afterChunks: 2 });
    const res = await c.post('chat/completions', { stream: true });
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of sseChunks(res.body)) got++;
      })(),
      (e: unknown) => e instanceof UpstreamError && (e.kind === 'timeout' || e.kind === 'closed'),
    );
    assert.equal(got, 3, 'role chunk + 2 content chunks relayed before the stall');
  } finally {
    c.close();
  }
});

test('client: a connection dropped mid-stream is an error, never a clean end, and is not replayed', async () => {
  const c = new UpstreamClient({ id: 'flaky', baseURL: up.baseURL }, { retries: 2, retryMinMs: 1 });
  try {
    up.setModes({ kind: 'drop-mid', afterChunks: 2 });
    const before = up.requests.length;
    const res = await c.post('chat/completions', { stream: true });
    await assert.rejects(
      (async () => {
        for await (const _ of sseChunks(res.body)) {
          /* drain */
        }
      })(),
      (e: unknown) => e instanceof UpstreamError && e.kind === 'closed',
    );
    assert.equal(up.requests.length - before, 1);
  } finally {
    c.close();
  }
});

test('errors: upstream URL, host and key never reach the client; 4xx text kept (scrubbed), 401 is a settings problem', () => {
  const ep = { id: 'big', baseURL: 'http://10.1.2.3:8000/v1', apiKey: SECRET, headers: { 'x-api-token': 'hdr-secret-value' } };
  const leaky = `model not found at http://10.1.2.3:8000/v1/chat with key ${SECRET} and hdr-secret-value on 10.1.2.3:8000`;
  const e400 = upstreamApiError(new UpstreamError('status', 'x', { status: 400, body: { error: { message: leaky, param: 'messages' } } }), ep);
  assert.equal(e400.status, 400);
  assert.equal(e400.param, 'messages');
  for (const s of [SECRET, '10.1.2.3', 'hdr-secret-value', 'http://']) assert.ok(!e400.message.includes(s), `${s} leaked: ${e400.message}`);
  assert.match(e400.message, /model not found/);
  const e401 = upstreamApiError(new UpstreamError('status', 'x', { status: 401, body: { error: { message: `bad key ${SECRET}` } } }), ep);
  assert.equal(e401.code, 'upstream_error');
  assert.ok(!e401.message.includes(SECRET));
  const e429 = upstreamApiError(new UpstreamError('status', 'x', { status: 429, retryAfter: 7 }), ep);
  assert.equal(e429.status, 429);
  assert.equal(e429.retryAfter, 7);
  assert.equal(upstreamApiError(new UpstreamError('timeout', 'x'), ep).status, 504);
  assert.equal(upstreamApiError(new UpstreamError('connect', 'x'), ep).code, 'upstream_unavailable');
});

test('remotes: the breaker opens after consecutive faults (503 upstream_down + Retry-After), half-opens after the cooldown and closes on a good probe', async () => {
  let t = 0;
  const states: string[] = [];
  const remotes = new Remotes([{ id: 'big', baseURL: up.baseURL, apiKey: SECRET }], {
    now: () => t,
    retries: 0,
    breaker: { failureThreshold: 2, cooldownMs: 10_000 },
    onBreakerChange: (id, s) => states.push(`${id}:${s}`),
  });
  try {
    const u = remotes.get('big')!;
    up.setModes({ kind: 'status', status: 500 });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(u.open('chat/completions', { messages: [] }), (e: unknown) => e instanceof ApiError && e.code === 'upstream_error');
    }
    assert.deepEqual(remotes.downIds(), ['big']);
    assert.equal(remotes.publicList()[0].health, 'down');
    const sent = up.requests.length;
    await assert.rejects(u.open('chat/completions', { messages: [] }), (e: unknown) => e instanceof ApiError && e.code === 'upstream_down' && e.status === 503 && (e.retryAfter ?? 0) >= 1);
    assert.equal(up.requests.length, sent, 'an open breaker sends nothing upstream');
    t = 10_000;
    up.setModes({ kind: 'ok' });
    const call = await u.open('chat/completions', { messages: [] });
    await readJson(call.response.body, 1000);
    call.finish({ ok: true, completionTokens: 4, firstTokenAt: t });
    assert.equal(remotes.publicList()[0].health, 'up');
    assert.deepEqual(states, ['big:open', 'big:half_open', 'big:closed']);
    const st = u.stats();
    assert.equal(st.errors.upstream_error, 2);
    assert.equal(st.errors.upstream_down, 1);
    assert.equal(st.requests, 4);
    // 4xx is the client's fault: never opens the breaker.
    up.setModes({ kind: 'status', status: 400, body: { error: { message: 'bad' } } });
    for (let i = 0; i < 3; i++) await assert.rejects(u.open('chat/completions', {}), (e: unknown) => e instanceof ApiError && e.status === 400);
    assert.equal(u.breaker.state, 'closed');
    assert.ok(JSON.stringify(remotes.publicList()).indexOf(SECRET) < 0 && JSON.stringify(remotes.publicList()).indexOf('127.0.0.1') < 0);
  } finally {
    remotes.close();
  }
});
