// Metrics collector: JSON snapshot, Prometheus text (parsed with a real Prometheus text parser),
// percentiles against reference values, bounded labels, stable throughput, live feed, HTTP routes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Fastify from 'fastify';
import { createMetrics, CORRUPTION_REASONS, PROMETHEUS_CONTENT_TYPE } from '../../main/hardening/metrics.ts';
import { registerMetricsRoutes } from '../../main/hardening/metrics-routes.ts';
import { percentileSorted, summarize } from '../../main/common/percentiles.ts';
import { createMemorySampler } from '../../main/hardening/memory.ts';
import type { RequestRecord } from '../../main/common/metrics-types.ts';

interface PromSample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}
interface PromFamily {
  name: string;
  help: string;
  type: string;
  metrics: PromSample[];
}
const req = createRequire(import.meta.url);
const parseMod = req('parse-prometheus-text-format');
const parseProm: (t: string) => PromFamily[] = parseMod.default ?? parseMod;

function rec(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: 'req-1',
    route: '/v1/chat/completions',
    stream: false,
    status: 200,
    promptTokens: 20,
    completionTokens: 10,
    cachedTokens: 0,
    latencySeconds: 0.5,
    ttftSeconds: 0.1,
    finishReason: 'stop',
    responseCacheHit: false,
    cancelled: false,
    errorCode: null,
    ...over,
  };
}

/** A fake clock for window/throughput tests (the collector takes `now`). */
function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** A sampler that does not touch the engine (these tests are about the collector). */
const quietMemory = () => createMemorySampler({ systemSoftPercent: 0, systemHardPercent: 0 });

test('percentiles: linear interpolation equals reference values (numpy type 7)', () => {
  const oneToHundred = Array.from({ length: 100 }, (_, i) => i + 1);
  // Reference values: numpy.percentile(range(1,101), [50,95,99]) and ([10,20,30,40], …).
  assert.deepEqual(summarize(oneToHundred), { p50: 50.5, p95: 95.05, p99: 99.01 });
  const s = summarize([40, 10, 30, 20]);
  assert.equal(s.p50, 25);
  assert.ok(Math.abs(s.p95 - 38.5) < 1e-9);
  assert.ok(Math.abs(s.p99 - 39.7) < 1e-9);
  assert.deepEqual(summarize([]), { p50: 0, p95: 0, p99: 0 });
  assert.deepEqual(summarize([7]), { p50: 7, p95: 7, p99: 7 });
  assert.equal(percentileSorted([1, 2], 0.5), 1.5);
  // Ordering on arbitrary samples.
  for (let k = 0; k < 200; k++) {
    const xs = Array.from({ length: 1 + Math.floor(Math.random() * 50) }, () => Math.random() * 10);
    const p = summarize(xs);
    assert.ok(p.p50 <= p.p95 && p.p95 <= p.p99, JSON.stringify(p));
    assert.ok(p.p99 <= Math.max(...xs) && p.p50 >= Math.min(...xs));
  }
});

test('snapshot: latency percentiles over recorded requests, streamed included, errors excluded', () => {
  const c = clock();
  const m = createMetrics({ now: c.now, memory: quietMemory() });
  try {
    const empty = m.snapshot();
    assert.deepEqual({ ...empty.latency, routes: undefined }, { p50: 0, p95: 0, p99: 0, count: 0, window_seconds: 60, routes: undefined });
    assert.deepEqual(empty.ttft, { p50: 0, p95: 0, p99: 0 });
    for (let i = 1; i <= 100; i++) {
      c.advance(10);
      m.recordRequest(rec({ id: `r${i}`, latencySeconds: i, ttftSeconds: i / 100, stream: i % 2 === 0 }));
    }
    // an error and a cancellation: counted as traffic, not as latency samples
    m.recordRequest(rec({ status: 400, latencySeconds: 0.001, errorCode: 'invalid_request' }));
    m.recordRequest(rec({ status: 200, cancelled: true, latencySeconds: 1000, stream: true }));
    const s = m.snapshot();
    assert.deepEqual({ ...s.latency, routes: undefined, window_seconds: undefined }, { p50: 50.5, p95: 95.05, p99: 99.01, count: 100, routes: undefined, window_seconds: undefined });
    assert.ok(s.ttft.p50 <= s.ttft.p95 && s.ttft.p95 <= s.ttft.p99);
    assert.equal(s.ttft.p50, 0.505);
    assert.equal(s.throughput.total_requests, 102);
    assert.equal(s.requests.errors, 1);
    assert.equal(s.requests.cancelled, 1);
    assert.equal(s.requests.by_status['200'], 101);
    assert.equal(s.requests.by_status['400'], 1);
    assert.equal(s.recent_requests.length, 50, 'recent requests ring is bounded');
    assert.equal(s.recent_requests[0].stream, true, 'newest first: the cancelled stream');
  } finally {
    m.close();
  }
});

test('streamed requests count like any other (the seed recorded none)', async () => {
  const m = createMetrics({ memory: quietMemory() });
  try {
    m.recordRequest(rec({ stream: true, latencySeconds: 2, ttftSeconds: 0.25, completionTokens: 35 }));
    const s = m.snapshot();
    assert.equal(s.latency.count, 1);
    assert.equal(s.latency.p50, 2);
    assert.equal(s.ttft.p50, 0.25);
    assert.equal(s.tokens_per_second, 20); // 35 tokens over 1.75 s of generation
    const fam = parseProm(await m.prometheus());
    const reqs = fam.find((f) => f.name === 'mlxbar_requests_total')!;
    assert.equal(reqs.metrics.find((x) => x.labels?.stream === 'true')?.value, '1');
    assert.equal(fam.find((f) => f.name === 'mlxbar_request_duration_seconds')?.type, 'HISTOGRAM');
    // parse-prometheus-text-format 1.1.1 drops the labels of labelled histograms, so the series
    // line is checked directly.
    assert.match(await m.prometheus(), /^mlxbar_request_duration_seconds_count\{route="\/v1\/chat\/completions",stream="true"\} 1$/m);
  } finally {
    m.close();
  }
});

test('sliding window is bounded by time and by count', () => {
  const c = clock();
  const m = createMetrics({ now: c.now, memory: quietMemory(), windowSeconds: 300, windowMaxSamples: 100 });
  try {
    for (let i = 0; i < 150; i++) m.recordRequest(rec({ latencySeconds: 1 }));
    assert.equal(m.snapshot().latency.count, 100);
    c.advance(301_000);
    const s = m.snapshot();
    assert.equal(s.latency.count, 0);
    assert.equal(s.latency.p99, 0);
    assert.equal(s.throughput.total_requests, 150, 'totals are not windowed');
  } finally {
    m.close();
  }
});

test('throughput is stable on tiny samples: 1 request in 1 ms is not 1000 req/s', () => {
  const c = clock();
  const m = createMetrics({ now: c.now, memory: quietMemory() });
  try {
    c.advance(1);
    m.recordRequest(rec({ latencySeconds: 0.001 }));
    const s = m.snapshot();
    assert.equal(s.throughput.total_requests, 1);
    assert.ok(s.throughput.requests_per_second > 0 && s.throughput.requests_per_second <= 0.1, String(s.throughput.requests_per_second));
    // Steady 2 req/s for 2 minutes reads ~2 req/s.
    for (let i = 0; i < 240; i++) {
      c.advance(500);
      m.recordRequest(rec());
    }
    const s2 = m.snapshot();
    assert.ok(Math.abs(s2.throughput.requests_per_second - 2) < 0.1, String(s2.throughput.requests_per_second));
    // Idle for 2 minutes: back to 0.
    c.advance(120_000);
    assert.equal(m.snapshot().throughput.requests_per_second, 0);
  } finally {
    m.close();
  }
});

test('cache, prompt cache, corruptions, restarts, queue and degradation reach JSON and Prometheus', async () => {
  let deg = { state: 'normal' as const, cache_enabled: true, reason: null as string | null, since: new Date().toISOString() };
  const m = createMetrics({
    memory: quietMemory(),
    degradation: () => deg as never,
    modelInfo: () => ({ id: 'tiny-qwen3', state: 'ready' }),
    cacheStats: () => ({ responseCache: { entries: 3, bytes: 1234 } }),
  });
  try {
    m.recordResponseCache('hit');
    m.recordResponseCache('hit');
    m.recordResponseCache('miss');
    m.recordRequest(rec({ promptTokens: 100, cachedTokens: 75 }));
    m.recordRequest(rec({ promptTokens: 10, cachedTokens: 0, responseCacheHit: true })); // computes nothing
    m.recordCacheCorruption('checksum');
    m.recordCacheCorruption('made-up reason with /home/someone/path');
    m.recordEngineRestart();
    m.setQueue(1, 4);
    deg = { state: 'cache_disabled' as never, cache_enabled: false, reason: 'disk error at /home/alice/.mlxbar/cache/x.bin', since: deg.since };
    const s = m.snapshot();
    assert.deepEqual(s.cache, { cache_hits: 2, cache_misses: 1, hit_rate: 0.6667 });
    assert.deepEqual(s.prompt_cache, { reused_tokens: 75, computed_tokens: 25, hit_rate: 0.75 });
    assert.deepEqual(s.cache_corruptions, { checksum: 1, other: 1 });
    assert.equal(s.engine_restarts, 1);
    assert.equal(s.requests.active, 1);
    assert.equal(s.requests.queued, 4);
    assert.equal(s.degradation.state, 'cache_disabled');
    assert.ok(!/\/home\//.test(JSON.stringify(s)), 'no path leaks into the snapshot');
    assert.deepEqual(s.model, { id: 'tiny-qwen3', state: 'ready' });

    const fam = parseProm(await m.prometheus());
    const val = (name: string, labels: Record<string, string> = {}) =>
      fam.find((f) => f.name === name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))?.value;
    assert.equal(val('mlxbar_cache_hit_total'), '2');
    assert.equal(val('mlxbar_cache_miss_total'), '1');
    assert.equal(val('mlxbar_cache_hit_rate'), '0.6667');
    assert.equal(val('mlxbar_prompt_cache_reused_tokens_total'), '75');
    assert.equal(val('mlxbar_cache_corruptions_total', { reason: 'checksum' }), '1');
    assert.equal(val('mlxbar_cache_corruptions_total', { reason: 'other' }), '1');
    assert.equal(val('mlxbar_engine_restarts_total'), '1');
    assert.equal(val('mlxbar_requests_queued'), '4');
    assert.equal(val('mlxbar_degradation_state', { state: 'cache_disabled' }), '1');
    assert.equal(val('mlxbar_degradation_state', { state: 'normal' }), '0');
    assert.equal(val('mlxbar_cache_enabled'), '0');
    assert.equal(val('mlxbar_cache_entries', { cache: 'response' }), '3');
    const reasons = fam.find((f) => f.name === 'mlxbar_cache_corruptions_total')!.metrics.map((x) => x.labels!.reason);
    assert.ok(reasons.every((r) => (CORRUPTION_REASONS as readonly string[]).includes(r)));
  } finally {
    m.close();
  }
});

test('Prometheus text: parses, prefixed names, counters end in _total, HELP/TYPE, trailing newline, monotonic', async () => {
  const m = createMetrics({ memory: quietMemory(), modelInfo: () => ({ id: 'm', state: 'ready' }) });
  try {
    assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    m.recordRequest(rec());
    m.recordResponseCache('miss');
    const text1 = await m.prometheus();
    assert.ok(text1.endsWith('\n'));
    const f1 = parseProm(text1);
    assert.ok(f1.length >= 20, `families: ${f1.length}`);
    for (const f of f1) {
      assert.match(f.name, /^mlxbar_[a-z0-9_]+$/);
      assert.ok(f.help && f.help.length > 5, `${f.name} has HELP`);
      assert.match(text1, new RegExp(`^# TYPE ${f.name} ${f.type.toLowerCase()}$`, 'm'));
      if (f.type === 'COUNTER') assert.match(f.name, /_total$/);
      else assert.doesNotMatch(f.name, /_total$/, `${f.name} is a ${f.type} and must not end in _total`);
    }
    const counters = (text: string) => {
      const out = new Map<string, number>();
      for (const f of parseProm(text)) {
        if (f.type === 'COUNTER') for (const x of f.metrics) out.set(`${f.name}${JSON.stringify(x.labels ?? {})}`, Number(x.value));
      }
      // histogram _count/_sum/_bucket series are cumulative too (read from the lines: see above)
      for (const line of text.split('\n')) {
        const mm = /^(mlxbar_\w+_(?:count|sum|bucket))(\{[^}]*\})? (\S+)$/.exec(line);
        if (mm) out.set(mm[1] + (mm[2] ?? ''), Number(mm[3]));
      }
      return out;
    };
    const before = counters(text1);
    assert.ok([...before.keys()].some((k) => k.startsWith('mlxbar_request_duration_seconds_count')));
    for (let i = 0; i < 5; i++) {
      m.recordRequest(rec({ stream: i % 2 === 0, status: i === 4 ? 503 : 200, errorCode: i === 4 ? 'queue_full' : null }));
      m.recordResponseCache(i % 2 ? 'hit' : 'miss');
      m.recordCacheCorruption('truncated');
    }
    const after = counters(await m.prometheus());
    for (const [k, v] of before) assert.ok((after.get(k) ?? -1) >= v, `${k} went from ${v} to ${after.get(k)}`);
    assert.ok([...after.values()].reduce((a, b) => a + b, 0) > [...before.values()].reduce((a, b) => a + b, 0));
  } finally {
    m.close();
  }
});

test('label cardinality is bounded: 1,000 random model names and routes add no series', async () => {
  const m = createMetrics({ memory: quietMemory(), modelInfo: () => ({ id: 'Qwen3-tiny', state: 'ready' }) });
  try {
    m.recordRequest(rec({ model: 'Qwen3-tiny' }));
    m.recordRequest(rec({ model: 'something-else', route: '/v1/unknown' }));
    const countSeries = (t: string) => t.split('\n').filter((l) => l && !l.startsWith('#')).length;
    const base = countSeries(await m.prometheus());
    for (let i = 0; i < 1000; i++) {
      const junk = Math.random().toString(36).slice(2) + '\n"} evil{' + i;
      m.recordRequest(rec({ model: junk, route: `/v1/${junk}`, status: 200 + (i % 3), errorCode: null }));
      m.recordCacheCorruption(junk);
    }
    const text = await m.prometheus();
    assert.equal(countSeries(text), base);
    const fam = parseProm(text);
    const models = new Set(fam.flatMap((f) => f.metrics.map((x) => x.labels?.model).filter(Boolean)));
    assert.deepEqual([...models].sort(), ['Qwen3-tiny', 'other']);
    const routes = new Set(fam.flatMap((f) => f.metrics.map((x) => x.labels?.route).filter(Boolean)));
    assert.deepEqual([...routes].sort(), ['/v1/chat/completions', 'other']);
    assert.ok(Object.keys(m.snapshot().cache_corruptions).length <= CORRUPTION_REASONS.length);
  } finally {
    m.close();
  }
});

test('memory is really sampled: server and engine (a real child process) RSS, peak > 0', async () => {
  const child = spawn(process.execPath, ['-e', 'const a = Buffer.alloc(32*1024*1024, 1); process.stdout.write("ready\\n"); setInterval(() => a[0]++, 1000)'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    // wait until the child has touched its 32 MiB (a loaded box may take a while)
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('child did not start')), 20_000);
      child.stdout!.once('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
    const engineRss = () => {
      const st = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+)/.exec(st)![1]) * 1024;
    };
    const sampler = createMemorySampler({
      engineStats: async () => ({
        rssBytes: engineRss(),
        heapUsedBytes: 0,
        mlxActiveBytes: 0,
        mlxPeakBytes: 0,
        prefixCache: { entries: 0, bytes: 0, budgetBytes: 0, reusedTokens: 0, computedTokens: 0, hits: 0, misses: 0 },
        blas: 'unknown',
      }),
      intervalMs: 100,
    }).start();
    const m = createMetrics({ memory: sampler });
    try {
      await new Promise((r) => setTimeout(r, 450));
      const s = m.snapshot();
      assert.ok(s.memory.peak_mb > 0 && s.memory.current_mb > 0);
      assert.ok(s.memory.server_rss_mb > 10, `server rss ${s.memory.server_rss_mb}`);
      assert.ok(s.memory.engine_rss_mb > 30, `engine rss ${s.memory.engine_rss_mb} (child holds 32 MiB)`);
      assert.ok(s.memory.peak_mb >= s.memory.current_mb);
      assert.ok(Math.abs(s.memory.current_mb - s.memory.server_rss_mb - s.memory.engine_rss_mb) < 0.3);
      assert.ok(sampler.stats().samples >= 3, `samples ${sampler.stats().samples}`);
      const fam = parseProm(await m.prometheus());
      const rss = fam.find((f) => f.name === 'mlxbar_process_resident_memory_bytes')!;
      assert.ok(Number(rss.metrics.find((x) => x.labels?.process === 'engine')!.value) > 30 * 1024 * 1024);
    } finally {
      m.close();
      sampler.stop();
    }
  } finally {
    child.kill('SIGKILL');
  }
});

test('live feed pushes one snapshot per second and stops when unsubscribed (fake clock)', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const m = createMetrics({ memory: quietMemory() });
  try {
    const seen: string[] = [];
    const unsub = m.subscribe((s) => seen.push(s.timestamp));
    t.mock.timers.tick(3500);
    assert.equal(seen.length, 3, 'one snapshot per second: 3 in 3.5 s');
    unsub();
    assert.equal(m.subscriberCount, 0);
    t.mock.timers.tick(5000);
    assert.equal(seen.length, 3, 'nothing after unsubscribing');
  } finally {
    m.close();
  }
});

function get(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.on('timeout', () => r.destroy(new Error('timeout')));
  });
}

test('HTTP routes: /v1/metrics JSON, ?format=prometheus, /metrics, bad format 400, SSE stream with cleanup', async () => {
  const m = createMetrics({ memory: quietMemory() });
  const app = Fastify();
  registerMetricsRoutes(app, m);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  try {
    m.recordRequest(rec({ stream: true }));
    const j = await get(port, '/v1/metrics');
    assert.equal(j.status, 200);
    assert.match(String(j.headers['content-type']), /application\/json/);
    const body = JSON.parse(j.body);
    for (const k of ['cache', 'prompt_cache', 'latency', 'ttft', 'tokens_per_second', 'memory', 'throughput', 'degradation', 'cache_corruptions', 'engine_restarts', 'timestamp', 'uptime_seconds', 'recent_requests']) {
      assert.ok(k in body, `missing ${k}`);
    }
    assert.equal(body.latency.count, 1);
    assert.equal(body.throughput.total_requests, 1, 'scraping metrics is not traffic');

    const p = await get(port, '/v1/metrics?format=prometheus');
    assert.equal(p.status, 200);
    assert.equal(p.headers['content-type'], PROMETHEUS_CONTENT_TYPE);
    assert.ok(parseProm(p.body).some((f) => f.name === 'mlxbar_requests_total'));
    const p2 = await get(port, '/metrics');
    assert.equal(p2.headers['content-type'], PROMETHEUS_CONTENT_TYPE);
    assert.ok(p2.body.startsWith('# HELP mlxbar_'));

    const bad = await get(port, '/v1/metrics?format=xml');
    assert.equal(bad.status, 400);
    const err = JSON.parse(bad.body);
    assert.equal(err.error.param, 'format');
    assert.equal(err.error.type, 'invalid_request_error');
    assert.equal(err.error.code, 'invalid_value');

    // SSE: read two data events, then disconnect; the subscription must go away.
    const events = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const r = http.get({ host: '127.0.0.1', port, path: '/v1/metrics/stream' }, (res) => {
        assert.match(String(res.headers['content-type']), /text\/event-stream/);
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          buf += d;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (ev.startsWith('data: ')) got.push(ev.slice(6));
            if (got.length >= 2) {
              r.destroy();
              resolve(got);
            }
          }
        });
      });
      r.on('error', (e) => (got.length >= 2 ? undefined : reject(e)));
      setTimeout(() => reject(new Error(`only ${got.length} events in 6 s`)), 6000).unref();
    });
    for (const e of events) assert.equal(typeof JSON.parse(e).uptime_seconds, 'number');
    const deadline = Date.now() + 3000;
    while (m.subscriberCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(m.subscriberCount, 0, 'SSE subscription cleaned up on disconnect');
  } finally {
    await app.close();
    m.close();
  }
});

test('live feed cadence with a fake clock: exactly one snapshot per 1000 ms tick', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const m = createMetrics({ memory: quietMemory() });
  try {
    const seen: number[] = [];
    const unsub = m.subscribe((s) => seen.push(s.throughput.total_requests));
    t.mock.timers.tick(999);
    assert.equal(seen.length, 0);
    t.mock.timers.tick(1);
    assert.equal(seen.length, 1);
    m.recordRequest(rec());
    t.mock.timers.tick(4000);
    assert.deepEqual(seen, [0, 1, 1, 1, 1], 'each push carries the current numbers');
    unsub();
    t.mock.timers.tick(5000);
    assert.equal(seen.length, 5, 'no pushes after unsubscribe');
  } finally {
    m.close();
  }
});

test('requests are labelled by the API they spoke (openai, responses, anthropic, ollama)', async () => {
  const m = createMetrics({ memory: quietMemory() });
  try {
    m.recordRequest(rec({ route: '/v1/chat/completions' }));
    m.recordRequest(rec({ route: '/v1/responses' }));
    m.recordRequest(rec({ route: '/v1/responses/:id' }));
    m.recordRequest(rec({ route: '/v1/messages', stream: true }));
    m.recordRequest(rec({ route: '/api/chat' }));
    m.recordRequest(rec({ route: '/api/embed', ttftSeconds: null, completionTokens: 0 }));
    m.recordRequest(rec({ route: '/health' }));
    const s = m.snapshot();
    assert.deepEqual({ ...s.requests.by_api }, { openai: 1, responses: 2, anthropic: 1, ollama: 2, other: 1 });
    assert.deepEqual(
      s.recent_requests.map((r) => r.api),
      ['openai', 'responses', 'responses', 'anthropic', 'ollama', 'ollama', null].reverse(), // newest first
    );
    // Only generations are latency samples: not Ollama embeddings, a stored-response read or /health.
    assert.equal(s.latency.count, 4, 'chat, responses, messages, api/chat');
    const reqs = parseProm(await m.prometheus()).find((f) => f.name === 'mlxbar_requests_total')!;
    const byApi = (api: string) => reqs.metrics.filter((x) => x.labels?.api === api).reduce((a, x) => a + Number(x.value), 0);
    assert.deepEqual([byApi('openai'), byApi('responses'), byApi('anthropic'), byApi('ollama'), byApi('other')], [1, 2, 1, 2, 1]);
    assert.ok(reqs.metrics.some((x) => x.labels?.route === '/api/chat' && x.labels?.api === 'ollama'));
  } finally {
    m.close();
  }
});
