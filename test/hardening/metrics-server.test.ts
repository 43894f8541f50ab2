// Metrics end to end: the real server + real engine (tiny model) with the metrics collector mounted
// through the server's `metricsRoutes` seam, exactly as serve wires it. Streamed and non-streamed
// chat requests must show up in /v1/metrics and Prometheus; /health and metrics scrapes must not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startStack, postJson, rawRequest, chat, parseSse, type TestStack } from '../server/helpers.ts';
import { createMetrics, type Metrics } from '../../main/hardening/metrics.ts';
import { registerMetricsRoutes } from '../../main/hardening/metrics-routes.ts';
import type { MetricsSnapshot } from '../../main/common/metrics-types.ts';

const parseMod = createRequire(import.meta.url)('parse-prometheus-text-format');
const parseProm: (t: string) => { name: string; type: string; metrics: { value?: string; labels?: Record<string, string> }[] }[] = parseMod.default ?? parseMod;

let stack: TestStack;
let metrics: Metrics;

before(async () => {
  // Created first: the server mounts the routes at listen time. engineStats/modelInfo read the
  // stack lazily (a sample taken before the engine exists just reports the engine as unavailable).
  metrics = createMetrics({
    engineStats: () => stack.engine.stats(),
    modelInfo: () => ({ id: stack?.engine.model?.id ?? null, state: stack?.engine.state ?? 'stopped' }),
  });
  stack = await startStack({
    hooks: {
      onRequestRecord: (r) => metrics.recordRequest(r),
      onLoad: (l) => metrics.setQueue(l.active, l.queued),
      metricsRoutes: (app) => registerMetricsRoutes(app, metrics),
    },
  });
});

after(async () => {
  metrics?.close();
  await stack?.close();
});

const getJson = async (path: string) => {
  const r = await rawRequest(stack.port, { path });
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as MetricsSnapshot;
};

test('streamed and plain requests are measured; /health and metrics scrapes are not traffic', { timeout: 120_000 }, async () => {
  const before = await getJson('/v1/metrics');
  assert.equal(before.throughput.total_requests, 0);

  const plain = await postJson(stack.port, '/v1/chat/completions', chat('Hello there', { max_tokens: 4, temperature: 0 }));
  assert.equal(plain.status, 200, plain.body);
  const streamed = await postJson(stack.port, '/v1/chat/completions', chat('Hello again', { max_tokens: 4, temperature: 0, stream: true }));
  assert.equal(streamed.status, 200);
  assert.ok(parseSse(streamed.body).events.includes('[DONE]'));
  const bad = await postJson(stack.port, '/v1/chat/completions', { messages: 'nope' });
  assert.equal(bad.status, 400);
  for (let i = 0; i < 3; i++) {
    assert.equal((await rawRequest(stack.port, { path: '/health' })).status, 200);
    await getJson('/v1/metrics');
    assert.equal((await rawRequest(stack.port, { path: '/metrics' })).status, 200);
  }

  // the record is emitted when the response closes: allow a moment
  let s = await getJson('/v1/metrics');
  for (let i = 0; i < 50 && s.throughput.total_requests < 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    s = await getJson('/v1/metrics');
  }
  assert.equal(s.throughput.total_requests, 3, 'two chats + one 400; no /health or metrics scrapes');
  assert.equal(s.latency.count, 2, 'both successful requests, streamed included, are latency samples');
  assert.ok(s.latency.p50 > 0 && s.latency.p50 <= s.latency.p95 && s.latency.p95 <= s.latency.p99);
  assert.ok(s.ttft.p50 > 0, 'TTFT measured');
  assert.equal(s.requests.by_status['200'], 2);
  assert.equal(s.requests.by_status['400'], 1);
  assert.ok(s.tokens.prompt_total > 0 && s.tokens.completion_total > 0);
  assert.ok(s.recent_requests.some((r) => r.stream && r.status === 200));
  assert.equal(s.model.state, 'ready');

  const prom = await rawRequest(stack.port, { path: '/v1/metrics?format=prometheus' });
  assert.equal(prom.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  const fam = parseProm(prom.body);
  const reqs = fam.find((f) => f.name === 'mlxbar_requests_total')!;
  const streamedSeries = reqs.metrics.find((x) => x.labels?.stream === 'true' && x.labels?.status_class === '2xx');
  assert.equal(streamedSeries?.value, '1');
  assert.equal(streamedSeries?.labels?.model, stack.modelInfo.id.replace(/[^A-Za-z0-9._:@/-]/g, '_').slice(0, 64));
  assert.ok(!reqs.metrics.some((x) => x.labels?.route === '/health'));
});

test('lookup decoding: drafted and accepted tokens reach /v1/metrics and Prometheus, equal to the responses\' usage', { timeout: 120_000 }, async () => {
  const promCounter = async (name: string) => {
    const prom = await rawRequest(stack.port, { path: '/metrics' });
    const f = parseProm(prom.body).find((x) => x.name === name);
    assert.ok(f, `${name} is exported`);
    return Number(f.metrics[0]?.value ?? NaN);
  };
  const before = await getJson('/v1/metrics');
  assert.ok(before.lookup, 'the snapshot has a lookup section');
  const promBefore = { drafted: await promCounter('mlxbar_lookup_draft_tokens_total'), accepted: await promCounter('mlxbar_lookup_accepted_tokens_total') };
  assert.equal(promBefore.drafted, before.lookup.draft_tokens);
  // The same greedy request twice: the second is drafted from the cross-request n-gram cache.
  let drafted = 0;
  let accepted = 0;
  for (let i = 0; i < 2; i++) {
    const r = await postJson(stack.port, '/v1/chat/completions', chat('Repeat after me: the quick brown fox', { max_tokens: 24, temperature: 0 }));
    assert.equal(r.status, 200, r.body);
    const d = JSON.parse(r.body).usage.completion_tokens_details;
    accepted += d.accepted_prediction_tokens;
    drafted += d.accepted_prediction_tokens + d.rejected_prediction_tokens;
  }
  assert.ok(accepted > 0, 'the repeated request accepted drafts');
  let s = await getJson('/v1/metrics');
  for (let i = 0; i < 50 && s.lookup!.draft_tokens - before.lookup.draft_tokens < drafted; i++) {
    await new Promise((r) => setTimeout(r, 100));
    s = await getJson('/v1/metrics');
  }
  assert.equal(s.lookup!.draft_tokens - before.lookup.draft_tokens, drafted);
  assert.equal(s.lookup!.accepted_tokens - before.lookup.accepted_tokens, accepted);
  assert.equal(s.lookup!.acceptance_rate, Math.round((s.lookup!.accepted_tokens / s.lookup!.draft_tokens) * 1e4) / 1e4);
  assert.equal(await promCounter('mlxbar_lookup_draft_tokens_total'), s.lookup!.draft_tokens);
  assert.equal(await promCounter('mlxbar_lookup_accepted_tokens_total'), s.lookup!.accepted_tokens);
  const rate = await promCounter('mlxbar_lookup_acceptance_rate');
  assert.ok(Math.abs(rate - s.lookup!.acceptance_rate!) < 1e-3, `gauge ${rate} vs JSON ${s.lookup!.acceptance_rate}`);
});

test('memory of the server and the real engine process is sampled', { timeout: 60_000 }, async () => {
  let s = await getJson('/v1/metrics');
  for (let i = 0; i < 40 && s.memory.engine_rss_mb === 0; i++) {
    await new Promise((r) => setTimeout(r, 250));
    s = await getJson('/v1/metrics');
  }
  assert.ok(s.memory.server_rss_mb > 10, JSON.stringify(s.memory));
  assert.ok(s.memory.engine_rss_mb > 10, JSON.stringify(s.memory));
  assert.ok(s.memory.peak_mb >= s.memory.current_mb && s.memory.peak_mb > 0);
  // This CPU build of MLX has no memory counters (the probe finds them reading 0): reported as not
  // available (null, and mlxbar_mlx_memory_counters 0), never as a fake 0 MB.
  assert.equal(s.memory.mlx_active_mb, null, JSON.stringify(s.memory));
  assert.equal(s.memory.mlx_peak_mb, null);
  const prom = await rawRequest(stack.port, { path: '/v1/metrics?format=prometheus' });
  assert.match(prom.body, /^mlxbar_mlx_memory_counters 0$/m);
});

test('the live feed over the real server sends snapshots and ends with the client', { timeout: 30_000 }, async () => {
  const http = await import('node:http');
  const got = await new Promise<number>((resolve, reject) => {
    let n = 0;
    const req = http.get({ host: '127.0.0.1', port: stack.port, path: '/v1/metrics/stream', headers: { host: `127.0.0.1:${stack.port}` } }, (res) => {
      assert.equal(res.statusCode, 200);
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        n += (d.match(/^data: /gm) ?? []).length;
        if (n >= 2) {
          req.destroy();
          resolve(n);
        }
      });
    });
    req.on('error', (e) => (n >= 2 ? undefined : reject(e)));
    setTimeout(() => reject(new Error(`only ${n} events`)), 10_000).unref();
  });
  assert.ok(got >= 2);
  const deadline = Date.now() + 3000;
  while (metrics.subscriberCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(metrics.subscriberCount, 0);
});
