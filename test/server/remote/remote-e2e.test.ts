// Remote engines end to end: a second real `mlx-bar serve` on another loopback port is the upstream
// of a front `mlx-bar serve` whose settings name it (and a misbehaving upstream of the tests' own).
// Clients talk to the front only, with the front's key; the upstream's key never leaves the front.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { Ajv } from 'ajv';
import { parseServeArgs } from '../../../main/cli/serve.ts';
import { startServe, type RunningServe, type ServeOptions } from '../../../main/core/serve.ts';
import { buildTinyModel } from '../../helpers/tiny-model.ts';
import { stopServeHard } from '../../helpers/stop-serve.ts';
import { rawRequest } from '../helpers.ts';
import { trayInputFrom, trayStatus, statusLine } from '../../../main/shell/tray-model.ts';
import type { AppState } from '../../../preload/api.ts';
import type { MetricsSnapshot } from '../../../main/common/metrics-types.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';

const UP_KEY = 'upstream-key-9f8e7d6c5b4a';
const FAKE_KEY = 'fake-upstream-key-1a2b3c4d';
const FRONT_KEY = 'front-key-0123456789';

describe('remote engines through the front server', { timeout: 600_000 }, () => {
  let root = '';
  let upstream: RunningServe | null = null;
  let front: RunningServe | null = null;
  let fake: FakeUpstream;
  let frontPort = 0;
  let upstreamModel = '';
  let localId = '';
  const logs: string[] = [];
  const seen: string[] = []; // every response body and header block the tests received, for the leak check

  const direct = () => new OpenAI({ baseURL: `${upstream!.url}/v1`, apiKey: UP_KEY, maxRetries: 0 });
  const viaFront = () => new OpenAI({ baseURL: `${front!.url}/v1`, apiKey: FRONT_KEY, maxRetries: 0 });
  const raw = async (p: string, body?: unknown, method = body === undefined ? 'GET' : 'POST') => {
    const r = await rawRequest(frontPort, {
      method,
      path: p,
      headers: { authorization: `Bearer ${FRONT_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    seen.push(JSON.stringify(r.headers), r.body);
    return r;
  };

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-remote-e2e-'));
    const model = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    const upDir = path.join(root, 'up');
    mkdirSync(upDir, { recursive: true });
    const upOpts = (await parseServeArgs(['--model', model, '--data-dir', upDir, '--port', '0', '--api-key', UP_KEY], {})) as ServeOptions;
    upstream = await startServe({ ...upOpts, idleUnloadMs: 0 }, () => {});
    upstreamModel = (await direct().models.list()).data[0].id;
    fake = await startFakeUpstream();

    const frontDir = path.join(root, 'front');
    mkdirSync(frontDir, { recursive: true });
    // The local fallback is the front's own started model, named by its folder (a library id).
    writeFileSync(
      path.join(frontDir, 'config.json'),
      JSON.stringify({
        responseCache: { enabled: true },
        remotes: [
          { id: 'big', baseURL: `${upstream.url}/v1`, apiKey: UP_KEY, model: upstreamModel, maxConcurrent: 2 },
          { id: 'steady', baseURL: fake.baseURL, apiKey: FAKE_KEY, model: 'fake-served' },
          { id: 'flaky', baseURL: fake.baseURL, apiKey: FAKE_KEY, headers: { 'x-team-token': 'team-token-5566778899' }, fallback: path.basename(model) },
        ],
      }),
    );
    const frontOpts = (await parseServeArgs(['--model', model, '--data-dir', frontDir, '--port', '0', '--api-key', FRONT_KEY], {})) as ServeOptions;
    front = await startServe({ ...frontOpts, idleUnloadMs: 0 }, (line) => logs.push(line));
    frontPort = Number(new URL(front.url).port);
    const list = JSON.parse((await raw('/v1/models')).body);
    localId = list.data.find((m: { remote?: boolean }) => !m.remote).id;
  }, { timeout: 300_000 });

  after(async () => {
    await stopServeHard(front);
    await stopServeHard(upstream);
    await fake?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 120_000 });

  test('/v1/models lists the remotes with a remote badge and health, never their URL or key', async () => {
    const r = await raw('/v1/models');
    assert.equal(r.status, 200);
    const data = JSON.parse(r.body).data as Array<Record<string, unknown>>;
    const big = data.find((m) => m.id === 'big')!;
    assert.equal(big.remote, true);
    assert.equal(big.owned_by, 'remote');
    assert.equal(big.health, 'up');
    assert.ok(data.some((m) => m.id === 'flaky'));
    assert.ok(!r.body.includes(String(new URL(upstream!.url).port)) && !r.body.includes(UP_KEY));
  });

  test('non-stream chat through the front equals a direct call to the upstream (greedy)', async () => {
    const msgs = [{ role: 'user' as const, content: 'Say something about rivers.' }];
    const a = await direct().chat.completions.create({ model: upstreamModel, messages: msgs, max_tokens: 12, temperature: 0 });
    const b = await viaFront().chat.completions.create({ model: 'big', messages: msgs, max_tokens: 12, temperature: 0 });
    seen.push(JSON.stringify(b));
    assert.equal(b.model, 'big');
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(b.choices[0].finish_reason, a.choices[0].finish_reason);
    assert.equal(b.usage?.completion_tokens, a.usage?.completion_tokens);
    assert.equal(b.usage?.prompt_tokens, a.usage?.prompt_tokens);
  });

  test('streaming through the front: the same text chunk by chunk as the direct stream, usage at the end', async () => {
    const msgs = [{ role: 'user' as const, content: 'Count to five.' }];
    const collect = async (client: OpenAI, model: string) => {
      const parts: string[] = [];
      let usage: unknown = null;
      const stream = await client.chat.completions.create({ model, messages: msgs, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
      for await (const ch of stream) {
        seen.push(JSON.stringify(ch));
        const t = ch.choices[0]?.delta?.content;
        if (t) parts.push(t);
        if (ch.usage) usage = ch.usage;
      }
      return { text: parts.join(''), parts: parts.length, usage };
    };
    const a = await collect(direct(), upstreamModel);
    const b = await collect(viaFront(), 'big');
    assert.equal(b.text, a.text);
    assert.ok(b.parts > 1, 'streamed in several chunks');
    assert.deepEqual((b.usage as { completion_tokens: number }).completion_tokens, (a.usage as { completion_tokens: number }).completion_tokens);
  });

  test('a forced tool call and a json_schema answer through the upstream are schema-valid', async () => {
    const params = { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false };
    const r = await viaFront().chat.completions.create({
      model: 'big',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: [{ type: 'function', function: { name: 'forecast', parameters: params } }],
      tool_choice: { type: 'function', function: { name: 'forecast' } },
      max_tokens: 60,
      temperature: 0,
    });
    seen.push(JSON.stringify(r));
    const call = r.choices[0].message.tool_calls?.[0];
    assert.ok(call && call.type === 'function', JSON.stringify(r.choices[0]));
    assert.equal(call.function.name, 'forecast');
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    const ajv = new Ajv({ strict: false });
    assert.ok(ajv.validate(params, JSON.parse(call.function.arguments)), ajv.errorsText());

    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    const j = await viaFront().chat.completions.create({
      model: 'big',
      messages: [{ role: 'user', content: 'json please' }],
      response_format: { type: 'json_schema', json_schema: { name: 'r', schema, strict: true } },
      max_tokens: 40,
      temperature: 0,
    });
    assert.ok(ajv.validate(schema, JSON.parse(j.choices[0].message.content!)));
  });

  test('the Anthropic front door forwards to a remote model too', async () => {
    const client = new Anthropic({ baseURL: front!.url, apiKey: FRONT_KEY, maxRetries: 0 });
    const msg = await client.messages.create({ model: 'big', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] });
    seen.push(JSON.stringify(msg));
    assert.equal(msg.model, 'big');
    assert.equal(msg.content[0].type, 'text');
    assert.ok(msg.usage.output_tokens > 0);
  });

  test('the Ollama front door lists the remotes (/api/tags, /api/show) and chats with them, never showing their URL or key', async () => {
    const ollama = new Ollama({ host: front!.url, headers: { Authorization: `Bearer ${FRONT_KEY}` } });
    const { models } = await ollama.list();
    seen.push(JSON.stringify(models));
    const big = models.find((m) => m.name === 'big');
    assert.ok(big, 'the remote is listed');
    assert.equal(big.details.format, 'remote');
    assert.ok(models.some((m) => m.name === 'flaky') && models.some((m) => m.name === localId), 'remotes after the local model');
    const show = await ollama.show({ model: 'big' });
    seen.push(JSON.stringify(show));
    assert.equal(show.details.format, 'remote');
    const msgs = [{ role: 'user' as const, content: 'Say something about rivers.' }];
    const viaOllama = await ollama.chat({ model: 'big', messages: msgs, options: { num_predict: 12, temperature: 0 } });
    seen.push(JSON.stringify(viaOllama));
    const a = await direct().chat.completions.create({ model: upstreamModel, messages: msgs, max_tokens: 12, temperature: 0 });
    assert.equal(viaOllama.model, 'big');
    assert.equal(viaOllama.message.content, a.choices[0].message.content);
    const tags = await raw('/api/tags');
    assert.ok(!tags.body.includes(String(new URL(upstream!.url).port)) && !tags.body.includes(UP_KEY) && !tags.body.includes(fake.url));
  });

  test('a client that disconnects mid-stream aborts the upstream request', async () => {
    fake.setModes({ kind: 'ok', text: 'tick ', chunks: 400 });
    const closedBefore = fake.clientClosed;
    const ctl = new AbortController();
    const stream = await viaFront().chat.completions.create({ model: 'flaky', messages: [{ role: 'user', content: 'go' }], stream: true }, { signal: ctl.signal });
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 5) ctl.abort();
    } catch {
      // the SDK may end the iteration or throw an abort error: either way the client left
    }
    assert.ok(n >= 5 && n < 400, `stopped after ${n} chunks`);
    for (let i = 0; i < 200 && fake.clientClosed === closedBefore; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(fake.clientClosed, closedBefore + 1);
  });

  test('response cache: a second identical deterministic request (temperature 0 or a seed, stream or not) never reaches the upstream', async () => {
    fake.setModes({ kind: 'ok', text: 'cached words here ', chunks: 6 });
    const count = () => fake.requests.filter((r) => r.url.endsWith('/chat/completions')).length;
    const body = { model: 'steady', messages: [{ role: 'user', content: 'cache me' }], max_tokens: 8, temperature: 0 };
    const n0 = count();
    const a = await raw('/v1/chat/completions', body);
    assert.equal(a.status, 200, a.body);
    assert.equal(count(), n0 + 1);
    assert.equal(a.headers['x-mlxbar-cache'], undefined);
    const b = await raw('/v1/chat/completions', body);
    assert.equal(b.status, 200, b.body);
    assert.equal(count(), n0 + 1, 'the second identical request was answered without the upstream');
    assert.equal(b.headers['x-mlxbar-cache'], 'hit');
    const ja = JSON.parse(a.body);
    const jb = JSON.parse(b.body);
    assert.equal(jb.choices[0].message.content, ja.choices[0].message.content);
    assert.equal(jb.choices[0].message.content, 'cached words here cached words here ');
    assert.equal(jb.model, 'steady');
    assert.equal(jb.usage.completion_tokens, ja.usage.completion_tokens);
    // The same request streamed: the same entry, replayed as a stream.
    const parts: string[] = [];
    const stream = await viaFront().chat.completions.create({ ...body, messages: body.messages as never, stream: true });
    for await (const ch of stream) parts.push(ch.choices[0]?.delta?.content ?? '');
    assert.equal(parts.join(''), ja.choices[0].message.content);
    assert.equal(count(), n0 + 1);
    // Another prompt, or another remote id on the same upstream, is another key.
    await raw('/v1/chat/completions', { ...body, messages: [{ role: 'user', content: 'cache me too' }] });
    assert.equal(count(), n0 + 2);
    await raw('/v1/chat/completions', { ...body, model: 'flaky' });
    assert.equal(count(), n0 + 3);
    // Seeded sampling is deterministic too; unseeded sampling is never cached.
    const seeded = { ...body, temperature: 0.8, seed: 42 };
    await raw('/v1/chat/completions', seeded);
    await raw('/v1/chat/completions', seeded);
    assert.equal(count(), n0 + 4);
    const random = { ...body, temperature: 0.8 };
    await raw('/v1/chat/completions', random);
    await raw('/v1/chat/completions', random);
    assert.equal(count(), n0 + 6);
    // A tool call from the real upstream is replayed as a tool call (the upstream's split is cached).
    // No arguments: the forced call is short enough to finish within max_tokens on the random model.
    const params = { type: 'object', properties: {}, additionalProperties: false };
    const toolReq = {
      model: 'big',
      messages: [{ role: 'user' as const, content: 'search' }],
      tools: [{ type: 'function' as const, function: { name: 'search', parameters: params } }],
      tool_choice: 'required' as const,
      max_tokens: 200,
      temperature: 0,
    };
    const bigRequests = async () => JSON.parse((await raw('/v1/metrics')).body).upstreams.find((u: { upstream: string }) => u.upstream === 'big').requests as number;
    const t1 = await viaFront().chat.completions.create(toolReq);
    const before = await bigRequests();
    const t2 = await viaFront().chat.completions.create(toolReq);
    assert.equal(await bigRequests(), before, 'the cached tool call did not reach the real upstream');
    assert.equal(t1.choices[0].finish_reason, 'tool_calls', JSON.stringify(t1.choices[0]));
    assert.equal(t2.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(t2.choices[0].message.tool_calls?.map((c) => c.type === 'function' && c.function), t1.choices[0].message.tool_calls?.map((c) => c.type === 'function' && c.function));
  });

  test('response cache: failed and partial upstream answers are never stored', async () => {
    const count = () => fake.requests.filter((r) => r.url.endsWith('/chat/completions')).length;
    const body = { model: 'steady', messages: [{ role: 'user', content: 'partial then whole' }], max_tokens: 8, temperature: 0, stream: true };
    // The upstream drops the connection after two chunks: the client gets an error event, nothing is cached.
    fake.setModes({ kind: 'drop-mid', afterChunks: 2 }, { kind: 'status', status: 500 }, { kind: 'ok', text: 'whole answer ', chunks: 4 });
    const n0 = count();
    const a = await raw('/v1/chat/completions', body);
    assert.equal(a.status, 200);
    assert.match(a.body, /upstream_error/);
    const b = await raw('/v1/chat/completions', { ...body, stream: false });
    assert.equal(b.status, 502, b.body);
    const c = await raw('/v1/chat/completions', { ...body, stream: false });
    assert.equal(c.status, 200, c.body);
    assert.equal(c.headers['x-mlxbar-cache'], undefined, 'neither the cut stream nor the 500 was cached');
    assert.equal(count(), n0 + 3);
    const d = await raw('/v1/chat/completions', { ...body, stream: false });
    assert.equal(d.headers['x-mlxbar-cache'], 'hit');
    assert.equal(JSON.parse(d.body).choices[0].message.content, 'whole answer whole answer ');
    assert.equal(count(), n0 + 3);
    fake.setModes({ kind: 'ok' });
  });

  test('/v1/completions through a remote: the fake upstream (stream and not) and the real upstream equal a direct call', async () => {
    fake.setModes({ kind: 'ok', text: 'once upon ', chunks: 4 });
    const r = await viaFront().completions.create({ model: 'steady', prompt: 'Tell me', max_tokens: 9, temperature: 0.5 });
    seen.push(JSON.stringify(r));
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'steady');
    assert.equal(r.choices[0].text, 'once upon once upon ');
    assert.equal(r.usage?.completion_tokens, 4);
    const sent = fake.requests.at(-1)!;
    assert.ok(sent.url.endsWith('/v1/completions') && !sent.url.endsWith('/chat/completions'), sent.url);
    assert.equal(sent.body.model, 'fake-served');
    assert.equal(sent.body.prompt, 'Tell me');
    assert.equal(sent.body.max_tokens, 9);
    assert.equal(sent.headers.authorization, `Bearer ${FAKE_KEY}`);
    const parts: string[] = [];
    const stream = await viaFront().completions.create({ model: 'steady', prompt: 'Tell me', max_tokens: 9, temperature: 0.5, stream: true });
    for await (const ch of stream) parts.push(ch.choices[0]?.text ?? '');
    assert.equal(parts.join(''), 'once upon once upon ');
    assert.ok(parts.filter(Boolean).length > 1, 'streamed chunk by chunk');
    fake.setModes({ kind: 'ok' });

    const a = await direct().completions.create({ model: upstreamModel, prompt: 'The river', max_tokens: 10, temperature: 0 });
    const b = await viaFront().completions.create({ model: 'big', prompt: 'The river', max_tokens: 10, temperature: 0 });
    seen.push(JSON.stringify(b));
    assert.equal(b.choices[0].text, a.choices[0].text);
    assert.equal(b.usage?.completion_tokens, a.usage?.completion_tokens);
    assert.equal(b.model, 'big');
  });

  test('/v1/embeddings through a remote: the fake upstream and the real upstream (equal to a direct call), errors mapped', async () => {
    fake.setModes({ kind: 'ok' });
    const e = await viaFront().embeddings.create({ model: 'steady', input: ['ab', 'xyz'] });
    seen.push(JSON.stringify(e));
    assert.equal(e.model, 'steady');
    assert.equal(e.data.length, 2);
    assert.deepEqual(e.data[0].embedding.slice(0, 1).concat(e.data[0].embedding.slice(2)), [2, 0.5, -1.25]);
    assert.equal(e.data[1].embedding[0], 3);
    const sent = fake.requests.at(-1)!;
    assert.ok(sent.url.endsWith('/v1/embeddings'));
    assert.deepEqual(sent.body.input, ['ab', 'xyz']);
    assert.equal(sent.body.model, 'fake-served');
    // Floats as asked (no base64): the same numbers.
    const f = JSON.parse((await raw('/v1/embeddings', { model: 'steady', input: 'ab', encoding_format: 'float' })).body);
    assert.deepEqual(f.data[0].embedding, e.data[0].embedding);

    const input = ['first document', 'second one'];
    const a = await direct().embeddings.create({ model: upstreamModel, input });
    const b = await viaFront().embeddings.create({ model: 'big', input });
    assert.equal(b.model, 'big');
    assert.deepEqual(b.data.map((d) => d.embedding), a.data.map((d) => d.embedding));
    assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);

    fake.setModes({ kind: 'status', status: 503 });
    const bad = await raw('/v1/embeddings', { model: 'steady', input: 'x' });
    assert.equal(bad.status, 502, bad.body);
    assert.equal(JSON.parse(bad.body).error.code, 'upstream_error');
    fake.setModes({ kind: 'ok' });
    const trunc = await raw('/v1/embeddings', { model: 'steady', input: 'x', truncate: true });
    assert.equal(trunc.status, 400);
    assert.equal(JSON.parse(trunc.body).error.param, 'truncate');
  });

  test('upstream failures: mapped errors, the breaker opens (upstream_down in /health and metrics), the fallback answers and says so', async () => {
    fake.setModes({ kind: 'status', status: 500, body: { error: { message: `boom at ${fake.baseURL} key ${FAKE_KEY}` } } });
    // Failures before the first byte with a fallback configured: the local model answers each time.
    for (let i = 0; i < 3; i++) {
      const r = await raw('/v1/chat/completions', { model: 'flaky', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-mlxbar-fallback-from'], 'flaky');
      assert.equal(JSON.parse(r.body).model, localId, 'the body names the model that answered');
    }
    const health = JSON.parse((await raw('/health')).body);
    assert.equal(health.upstreams.flaky, 'open');
    assert.deepEqual(health.upstream_down, ['flaky']);
    // upstream_down is a degradation state of the server, and it degrades only that model.
    assert.equal(health.degradation.state, 'upstream_down');
    assert.deepEqual(health.degradation.upstreams_down, ['flaky']);
    const localChat = await raw('/v1/chat/completions', { model: localId, messages: [{ role: 'user', content: 'still here?' }], max_tokens: 2 });
    assert.equal(localChat.status, 200, 'local models keep serving');
    const steady = await raw('/v1/chat/completions', { model: 'steady', messages: [{ role: 'user', content: 'you too?' }], max_tokens: 2 });
    assert.equal(steady.status, 502, 'another remote on the same (failing) box is judged by its own breaker');
    assert.equal(health.upstreams.big, 'closed');
    const m = JSON.parse((await raw('/v1/metrics')).body);
    const flaky = m.upstreams.find((u: { upstream: string }) => u.upstream === 'flaky');
    assert.equal(flaky.state, 'open');
    assert.equal(flaky.fallbacks, 3);
    assert.ok(flaky.errors.upstream_error >= 1);
    const big = m.upstreams.find((u: { upstream: string }) => u.upstream === 'big');
    assert.ok(big.requests >= 5 && big.latency_ms.p50 > 0 && big.ttft_ms.p50 > 0, JSON.stringify(big));
    assert.equal(m.degradation.state, 'upstream_down');
    assert.deepEqual(m.degradation.upstreams_down, ['flaky']);
    // What the tray shows for this snapshot (the pure model main/shell/index.ts renders).
    const app = { server: 'running', endpoint: front!.url, model: localId, error: null, settingsIssues: [], startAtLogin: false, models: [], switchingTo: null, modelError: null } as unknown as AppState;
    const tray = trayInputFrom(app, m as MetricsSnapshot);
    assert.equal(trayStatus(tray), 'degraded');
    assert.equal(statusLine(tray), 'Running — Remote model down');
    const prom = (await raw('/metrics')).body;
    assert.match(prom, /mlxbar_degradation_state\{state="upstream_down"\} 1/);
    assert.match(prom, /mlxbar_upstream_up\{upstream="flaky"\} 0/);
    assert.match(prom, /mlxbar_upstream_up\{upstream="big"\} 1/);
    assert.match(prom, /mlxbar_upstream_latency_ms\{upstream="big",quantile="0.5"\} [0-9.]+/);
  });

  test('a remote without fallback: 502/504 in our error shape, nothing of the upstream leaks', async () => {
    // 'big' pointed at nothing would need a restart; use a request-level 4xx from the real upstream instead.
    const r = await raw('/v1/chat/completions', { model: 'big', messages: [{ role: 'user', content: 'x'.repeat(10) }], max_tokens: 3, logprobs: true });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body).error.code, 'unsupported_parameter');
    const a = await raw('/v1/messages', { model: 'big', max_tokens: 5, messages: [{ role: 'user', content: 'x' }], temperature: 7 });
    assert.equal(a.status, 400);
    assert.equal(JSON.parse(a.body).type, 'error');
  });

  test('keys never leak: responses, headers, logs and the engine process environment', async () => {
    const secrets = [UP_KEY, FAKE_KEY, 'team-token-5566778899', fake.baseURL, `${upstream!.url}/v1`];
    for (const text of [...seen, ...logs]) for (const s of secrets) assert.ok(!text.includes(s), `leaked ${s.slice(0, 12)}…`);
    const pid = (front!.engine as { pid?: number }).pid;
    if (pid && existsSync(`/proc/${pid}/environ`)) {
      const env = readFileSync(`/proc/${pid}/environ`, 'latin1');
      for (const s of [UP_KEY, FAKE_KEY, FRONT_KEY]) assert.ok(!env.includes(s), 'secret in the engine environment');
    }
    const settings = await raw('/v1/settings');
    if (settings.status === 200) for (const s of [UP_KEY, FAKE_KEY, 'team-token-5566778899']) assert.ok(!settings.body.includes(s));
  });
});
