// Bench section `cache-http`: response-cache hit latency over real HTTP under concurrent load.
// The real stack (`startServe`: engine process, hardening, response cache on, temp data dir) on a
// random-weight checkpoint; one deterministic request (temperature 0) is answered once by the
// model (a miss that fills the cache), then autocannon (a separate process, N connections) replays
// it: every answer is a cache hit. Reported: hit p50/p99 (ms, client-side, sub-ms resolution),
// requests/s, p99 ÷ the 5 ms goal. For contrast: non-cached 1-token requests (temperature > 0,
// each prompt different, sequential) on the same server, and hit latency on 1 connection.
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineExecArgv } from '../main/engine/process/spawn.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { ensureStackModel, postJson, r3, STACK_MODELS, startStack, summarize } from './stack.ts';

const GOAL_P99_MS = 5;

interface LoadResult {
  latencies: number[];
  statuses: Record<string, number>;
  requests_total: number;
  requests_per_s_avg: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  autocannon_latency_ms: { p50: number; p99: number; max: number };
}

function runLoad(cfg: { url: string; connections: number; durationS: number; body: string; overallRate?: number }): Promise<LoadResult> {
  const entry = fileURLToPath(new URL('./http-load.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = fork(entry, [JSON.stringify(cfg)], { execArgv: engineExecArgv(entry), stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (c) => (out += c));
    child.stderr?.on('data', (c) => (err += c));
    const guard = setTimeout(() => child.kill('SIGKILL'), (cfg.durationS + 60) * 1000);
    child.on('exit', (code) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`load generator failed (${code}): ${err.slice(-300)}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch {
        reject(new Error('load generator printed no JSON'));
      }
    });
  });
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const which = opts.quick ? 'quick' : 'default';
  const modelDir = await ensureStackModel(which, opts.log);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'mlxbar-bench-cache-http-'));
  let stack: Awaited<ReturnType<typeof startStack>> | null = null;
  try {
    stack = await startStack(modelDir, dataDir, (s) => ({ ...s, responseCache: { ...s.responseCache, enabled: true } }), opts.log);
    const { port } = stack;
    const messages = [{ role: 'user', content: 'Write a haiku about caches.' }];
    const body = { model: 'default', messages, max_tokens: 32, temperature: 0 };
    // `model` must name what is loaded: take the id /v1/models reports.
    const models = await fetch(`${stack.url}/v1/models`).then((r) => r.json() as Promise<{ data: { id: string }[] }>);
    body.model = models.data[0].id;
    const fill = await postJson(port, '/v1/chat/completions', body);
    if (fill.status !== 200) throw new Error(`warm-up request failed with status ${fill.status}`);
    const hit = await postJson(port, '/v1/chat/completions', body);
    if (hit.status !== 200 || hit.json?.choices?.[0]?.message?.content !== fill.json?.choices?.[0]?.message?.content) {
      throw new Error('second identical request did not return the cached answer');
    }
    const hitsBefore = stack.hardening?.metrics.snapshot().cache.cache_hits;
    opts.log(`miss (fill) ${fill.ms.toFixed(1)} ms, first hit ${hit.ms.toFixed(1)} ms`);

    const connections = opts.quick ? 4 : 10;
    const durationS = opts.quick ? 2 : 8;
    const load = await runLoad({ url: `${stack.url}/v1/chat/completions`, connections, durationS, body: JSON.stringify(body) });
    const hits = summarize(load.latencies);
    opts.log(`autocannon: ${load.requests_total} requests, p50 ${hits.p50_ms} ms, p99 ${hits.p99_ms} ms, non-2xx ${load.non2xx}`);
    const hitsAfter = stack.hardening?.metrics.snapshot().cache.cache_hits;
    // One connection: the per-hit service time without queueing behind other connections (with N
    // connections on one event loop, latency ≈ N × service time by Little's law).
    const single = await runLoad({ url: `${stack.url}/v1/chat/completions`, connections: 1, durationS: opts.quick ? 1 : 3, body: JSON.stringify(body) });
    const singleHits = summarize(single.latencies);
    opts.log(`1 connection: ${single.requests_total} requests, p50 ${singleHits.p50_ms} ms, p99 ${singleHits.p99_ms} ms`);

    // Paced: the same 10 connections at half the single-connection throughput. A closed loop at
    // saturation measures queueing (latency ≈ connections / throughput); this measures the latency
    // a hit sees when the server is busy but not saturated.
    const rate = Math.max(50, Math.round((single.requests_per_s_avg || 200) * 0.5));
    const paced = await runLoad({ url: `${stack.url}/v1/chat/completions`, connections, durationS, body: JSON.stringify(body), overallRate: rate });
    const pacedHits = summarize(paced.latencies);
    opts.log(`paced ${rate} req/s over ${connections} connections: p50 ${pacedHits.p50_ms} ms, p99 ${pacedHits.p99_ms} ms`);

    // Contrast: non-cached 1-token requests (temperature > 0 without a seed is never cached; the
    // prompt differs each time so the engine's prefix cache cannot skip the whole prefill either).
    const n = opts.quick ? 5 : 15;
    const uncached: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = await postJson(port, '/v1/chat/completions', {
        model: body.model,
        messages: [{ role: 'user', content: `Write a haiku about caches, variant ${i} ${Math.random().toString(36).slice(2, 8)}.` }],
        max_tokens: 1,
        temperature: 0.7,
      });
      if (r.status !== 200) throw new Error(`uncached request failed with status ${r.status}`);
      uncached.push(r.ms);
    }
    const miss = summarize(uncached);
    return {
      result: {
        model: STACK_MODELS[which].label,
        connections,
        duration_s: durationS,
        requests_total: load.requests_total,
        requests_per_s: r3(load.requests_per_s_avg),
        non2xx: load.non2xx,
        errors: load.errors,
        timeouts: load.timeouts,
        statuses: load.statuses,
        hit_latency: hits,
        hit_latency_paced: { ...pacedHits, rate_per_s: rate, connections, requests_total: paced.requests_total, non2xx: paced.non2xx },
        p99_goal_met_paced: pacedHits.p99_ms <= GOAL_P99_MS,
        hit_latency_1_connection: { ...singleHits, requests_per_s: r3(single.requests_per_s_avg), non2xx: single.non2xx },
        autocannon_histogram_ms: load.autocannon_latency_ms,
        server_counted_hits: typeof hitsAfter === 'number' && typeof hitsBefore === 'number' ? hitsAfter - hitsBefore : null,
        fill_miss_ms: r3(fill.ms),
        uncached_one_token: miss,
        goal_p99_ms: GOAL_P99_MS,
        p99_goal_met: hits.p99_ms <= GOAL_P99_MS,
        loadavg_1m: r3(os.loadavg()[0]),
        note: 'client-side latency per 200 response (autocannon in a separate process, keep-alive connections); the server, hardening and response cache run in this process, the engine in its child; 2-core shared box',
      },
      ratios: {
        hit_p99_ms: hits.p99_ms,
        hit_p99_over_goal: r3(hits.p99_ms / GOAL_P99_MS),
        hit_p99_1_connection_ms: singleHits.p99_ms,
        hit_p99_paced_ms: pacedHits.p99_ms,
        uncached_over_hit_p50: r3(miss.p50_ms / hits.p50_ms),
      },
    };
  } finally {
    await stack?.stop().catch((err) => opts.log(`stop failed: ${err instanceof Error ? err.message : String(err)}`));
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const cacheHttpSection: BenchSection = {
  name: 'cache-http',
  description: 'response-cache hit latency p50/p99 over real HTTP under concurrent load (autocannon; goal p99 ≤ 5 ms) vs uncached 1-token requests',
  run,
};
