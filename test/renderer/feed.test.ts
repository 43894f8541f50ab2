// The dashboard's data feed (renderer/src/api/feed.ts) against real loopback HTTP servers, in Node
// (same fetch/streams API as the browser): the SSE stream is preferred; when the stream route is
// missing it falls back to polling /v1/metrics; a 401 asks for the key; the key is sent as a
// Bearer header; stopping the feed closes the connection.
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { startFeed, type FeedStatus } from '../../renderer/src/api/feed.ts';
import type { MetricsSnapshot } from '../../main/common/metrics-types.ts';

function snapshot(n: number): MetricsSnapshot {
  return {
    cache: { cache_hits: 0, cache_misses: 0, hit_rate: 0 },
    prompt_cache: { reused_tokens: 0, computed_tokens: 0, hit_rate: 0 },
    latency: { p50: 0, p95: 0, p99: 0, count: n },
    ttft: { p50: 0, p95: 0, p99: 0 },
    tokens_per_second: 0,
    memory: { current_mb: 0, peak_mb: 0, growth_percent: 0, server_rss_mb: 0, engine_rss_mb: 0, engine_peak_mb: 0 },
    throughput: { total_requests: n, requests_per_second: 0 },
    requests: { active: 0, queued: 0, cancelled: 0, errors: 0, by_status: {} },
    tokens: { prompt_total: 0, completion_total: 0 },
    degradation: { state: 'normal', cache_enabled: true, reason: null, since: new Date(0).toISOString() },
    cache_corruptions: {},
    engine_restarts: 0,
    model: { id: 'm', state: 'ready' },
    recent_requests: [],
    timestamp: new Date(Date.now() + n).toISOString(),
    uptime_seconds: n,
  };
}

async function serve(handler: http.RequestListener): Promise<{ base: string; close(): Promise<void>; open: Set<http.ServerResponse> }> {
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    open,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function until<T>(pred: () => T | undefined | false, ms = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const v = pred();
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error('timed out'));
      setTimeout(tick, 25);
    };
    tick();
  });
}

describe('dashboard feed', () => {
  test('live SSE stream: frames split across writes arrive in order, stop closes the connection', { timeout: 30_000 }, async () => {
    let n = 0;
    const srv = await serve((req, res) => {
      if (req.url === '/v1/metrics') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot(0)));
      if (req.url === '/v1/metrics/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('retry: 2000\n\n: ping\n\n');
        const iv = setInterval(() => {
          const frame = `data: ${JSON.stringify(snapshot(++n))}\n\n`;
          res.write(frame.slice(0, 10));
          res.write(frame.slice(10));
        }, 50);
        res.on('close', () => clearInterval(iv));
        return;
      }
      res.writeHead(404).end();
    });
    const got: number[] = [];
    const statuses: FeedStatus[] = [];
    const stop = startFeed({ baseUrl: srv.base, onSnapshot: (s) => got.push(s.latency.count), onStatus: (s) => statuses.push(s) });
    try {
      await until(() => got.filter((c) => c > 0).length >= 5);
      const live = got.filter((c) => c > 0);
      assert.deepEqual(live, [...live].sort((a, b) => a - b), 'in order');
      assert.ok(statuses.some((s) => s.mode === 'sse' && s.connected));
      assert.equal(srv.open.size, 1, 'one open stream');
    } finally {
      stop();
    }
    await until(() => srv.open.size === 0 || undefined, 5_000).catch(() => {});
    assert.equal(srv.open.size, 0, 'stopping the feed closes the stream');
    await srv.close();
  });

  test('no stream route: falls back to polling /v1/metrics', { timeout: 30_000 }, async () => {
    let polls = 0;
    let streamTries = 0;
    const srv = await serve((req, res) => {
      if (req.url === '/v1/metrics') {
        polls++;
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot(polls)));
      }
      streamTries++;
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"Unknown route"}}');
    });
    const statuses: FeedStatus[] = [];
    const got: number[] = [];
    const stop = startFeed({ baseUrl: srv.base, pollMs: 100, onSnapshot: (s) => got.push(s.latency.count), onStatus: (s) => statuses.push(s) });
    try {
      await until(() => statuses.some((s) => s.mode === 'poll' && s.connected) || undefined);
      const before = polls;
      await until(() => polls >= before + 3 || undefined);
      assert.equal(streamTries, 3, 'three stream attempts, then polling');
      assert.ok(got.length >= 3);
    } finally {
      stop();
      await srv.close();
    }
  });

  test('401: asks for the key; with the key the Bearer header is sent', { timeout: 30_000 }, async () => {
    const seen: (string | undefined)[] = [];
    const srv = await serve((req, res) => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== 'Bearer s3cret-key') return void res.writeHead(401, { 'content-type': 'application/json' }).end('{}');
      if (req.url === '/v1/metrics') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot(1)));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify(snapshot(2))}\n\n`);
    });
    const statuses: FeedStatus[] = [];
    let stop = startFeed({ baseUrl: srv.base, onSnapshot: () => {}, onStatus: (s) => statuses.push(s) });
    try {
      await until(() => statuses.some((s) => s.needsKey) || undefined);
      stop();
      const got: number[] = [];
      stop = startFeed({ baseUrl: srv.base, apiKey: 's3cret-key', onSnapshot: (s) => got.push(s.latency.count), onStatus: () => {} });
      await until(() => got.includes(2) || undefined);
      assert.ok(seen.includes('Bearer s3cret-key'));
    } finally {
      stop();
      await srv.close();
    }
  });
});
