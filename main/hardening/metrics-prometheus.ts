// The Prometheus side of the metrics collector (prom-client on its own Registry, names `mlxbar_*`):
// the counters recordRequest() increments, and the gauges computed at scrape time from the same
// snapshot the JSON endpoint serves.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MetricsSnapshot } from '../common/metrics-types.ts';
import { CORRUPTION_REASONS, DEGRADATION_STATES, nonNeg } from './metrics-labels.ts';

export interface CacheGaugeStats {
  responseCache?: { entries: number; bytes: number };
  prefixCache?: { entries: number; bytes: number };
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type PromCounters = ReturnType<typeof createCounters>;

/** The counters and histograms, registered on `registry`; the fixed-label series exist at 0 from the first scrape. */
export function createCounters(registry: Registry) {
  const reg = [registry];
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers: reg });
  /** Latency of successful requests by route and streaming. */
  const latency = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames: ['route', 'stream'] as const, buckets, registers: reg });

  const requestsTotal = counter(
    'mlxbar_requests_total',
    'API requests finished, by API (openai, responses, anthropic, ollama), route, status class, streaming and model (loaded model id or "other").',
    ['api', 'route', 'status_class', 'stream', 'model'] as const,
  );
  const cancelledTotal = counter('mlxbar_requests_cancelled_total', 'Requests cancelled by client disconnect or timeout.');
  const errorsTotal = counter('mlxbar_request_errors_total', 'Requests that ended with an error, by stable error code.', ['code'] as const);
  const duration = latency('mlxbar_request_duration_seconds', 'End-to-end latency of successful requests (streams: until the last byte).', LATENCY_BUCKETS);
  const ttftHist = latency('mlxbar_time_to_first_token_seconds', 'Time to first token of successful generating requests.', TTFT_BUCKETS);
  const promptTokens = counter('mlxbar_prompt_tokens_total', 'Prompt tokens of finished requests.', ['model'] as const);
  const completionTokens = counter('mlxbar_completion_tokens_total', 'Generated tokens of finished requests.', ['model'] as const);
  const draftTokensTotal = counter('mlxbar_lookup_draft_tokens_total', 'Lookup decoding: draft tokens verified by the model (n-gram drafts from the prompt, the output and recent outputs).');
  const acceptedTokensTotal = counter('mlxbar_lookup_accepted_tokens_total', 'Lookup decoding: draft tokens accepted (generated without a decode step of their own).');
  const cacheHit = counter('mlxbar_cache_hit_total', 'Response-cache hits.');
  const cacheMiss = counter('mlxbar_cache_miss_total', 'Response-cache misses (lookups of cacheable requests that found nothing usable).');
  const promptReused = counter('mlxbar_prompt_cache_reused_tokens_total', 'Prompt tokens whose KV came from the prefix cache.');
  const promptComputed = counter('mlxbar_prompt_cache_computed_tokens_total', 'Prompt tokens prefilled (not reused).');
  const corruptTotal = counter('mlxbar_cache_corruptions_total', 'Corrupt cache entries quarantined, by reason.', ['reason'] as const);
  const restartsTotal = counter('mlxbar_engine_restarts_total', 'Engine process restarts.');

  for (const r of CORRUPTION_REASONS) corruptTotal.inc({ reason: r }, 0);
  return { requestsTotal, cancelledTotal, errorsTotal, duration, ttftHist, promptTokens, completionTokens, draftTokensTotal, acceptedTokensTotal, cacheHit, cacheMiss, promptReused, promptComputed, corruptTotal, restartsTotal };
}

type Scrape = () => MetricsSnapshot | null;

/** A one-number gauge read from the scrape's snapshot. */
function snapshotGauge(registry: Registry, scrape: Scrape) {
  return (name: string, help: string, pick: (s: MetricsSnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = scrape();
        if (s) this.set(pick(s));
      },
    });
}

/** One-number gauges: rates, percentiles, load, memory. */
function registerSnapshotGauges(registry: Registry, scrape: Scrape): void {
  const g = snapshotGauge(registry, scrape);
  g('mlxbar_lookup_acceptance_rate', 'Lookup decoding: accepted / drafted tokens since start (NaN before the first draft).', (s) => s.lookup?.acceptance_rate ?? NaN);
  g('mlxbar_cache_hit_rate', 'Response-cache hit rate (0..1; NaN before the first lookup).', (s) => s.cache.hit_rate ?? NaN);
  g('mlxbar_prompt_cache_hit_rate', 'Share of prompt tokens reused from the prefix cache (0..1; NaN before the first prompt).', (s) => s.prompt_cache.hit_rate ?? NaN);
  g('mlxbar_request_latency_p50_seconds', 'p50 end-to-end latency over the sliding window.', (s) => s.latency.p50);
  g('mlxbar_request_latency_p95_seconds', 'p95 end-to-end latency over the sliding window.', (s) => s.latency.p95);
  g('mlxbar_request_latency_p99_seconds', 'p99 end-to-end latency over the sliding window.', (s) => s.latency.p99);
  g('mlxbar_tokens_per_second', 'Generation speed over the sliding window (completion tokens / generation time).', (s) => s.tokens_per_second);
  g('mlxbar_requests_per_second', 'Requests per second over the last 60 s (at least 10 s of denominator).', (s) => s.throughput.requests_per_second);
  g('mlxbar_requests_active', 'Requests being generated now.', (s) => s.requests.active);
  g('mlxbar_requests_queued', 'Requests waiting for a slot.', (s) => s.requests.queued);
  g('mlxbar_memory_current_bytes', 'Server + engine resident memory.', (s) => s.memory.current_mb * 1024 * 1024);
  g('mlxbar_memory_peak_bytes', 'Peak server + engine resident memory.', (s) => s.memory.peak_mb * 1024 * 1024);
  g('mlxbar_memory_growth_percent', 'Footprint growth since the first sample after model load.', (s) => s.memory.growth_percent);
  g('mlxbar_memory_reserved_kv_bytes', 'KV memory the running generations may still grow into (prompt + max_tokens each); admission counts it as taken.', (s) => (s.memory.reserved_kv_mb ?? 0) * 1024 * 1024);
}

/** Gauges with a label (per process, one-hot levels and states, per cache), and the MLX/uptime ones in their order. */
function registerLabelledGauges(registry: Registry, scrape: Scrape, cacheStats: () => CacheGaugeStats): void {
  const reg = [registry];
  const g = snapshotGauge(registry, scrape);
  new Gauge({
    name: 'mlxbar_process_resident_memory_bytes',
    help: 'Resident memory by process.',
    labelNames: ['process'],
    registers: reg,
    collect() {
      const s = scrape();
      if (!s) return;
      this.set({ process: 'server' }, s.memory.server_rss_mb * 1024 * 1024);
      this.set({ process: 'engine' }, s.memory.engine_rss_mb * 1024 * 1024);
    },
  });
  g('mlxbar_mlx_active_memory_bytes', 'MLX active memory (0 where the build has no counter: see mlxbar_mlx_memory_counters).', (s) => (s.memory.mlx_active_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_peak_memory_bytes', 'MLX peak memory (0 where the build has no counter: see mlxbar_mlx_memory_counters).', (s) => (s.memory.mlx_peak_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_cache_memory_bytes', 'MLX buffer cache (0 where the build has no counter).', (s) => (s.memory.mlx_cache_mb ?? 0) * 1024 * 1024);
  g('mlxbar_kv_pool_bytes', "KV buffers the engine keeps for the next sequences (part of the engine's RSS; 0 where MLX's own buffer cache does this).", (s) => (s.memory.kv_pool_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_memory_counters', '1 when the MLX build reports its memory (Metal), 0 when not available on this build.', (s) => (s.memory.mlx_active_mb == null ? 0 : 1));
  new Gauge({
    name: 'mlxbar_memory_pressure',
    help: 'Memory pressure level (one-hot: normal, soft, hard).',
    labelNames: ['level'],
    registers: reg,
    collect() {
      const level = scrape()?.memory.pressure ?? 'normal';
      for (const l of ['normal', 'soft', 'hard']) this.set({ level: l }, l === level ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mlxbar_degradation_state',
    help: 'Degradation state machine (one-hot).',
    labelNames: ['state'],
    registers: reg,
    collect() {
      const st = scrape()?.degradation.state ?? 'normal';
      for (const s of DEGRADATION_STATES) this.set({ state: s }, s === st ? 1 : 0);
    },
  });
  g('mlxbar_cache_enabled', '1 when the response/prefix caches are in use, 0 when bypassed.', (s) => (s.degradation.cache_enabled ? 1 : 0));
  g('mlxbar_uptime_seconds', 'Seconds since the metrics collector started.', (s) => s.uptime_seconds);
  new Gauge({
    name: 'mlxbar_cache_entries',
    help: 'Entries held by each cache.',
    labelNames: ['cache'],
    registers: reg,
    collect() {
      const c = cacheStats();
      if (c.responseCache) this.set({ cache: 'response' }, nonNeg(c.responseCache.entries));
      if (c.prefixCache) this.set({ cache: 'prefix' }, nonNeg(c.prefixCache.entries));
    },
  });
  new Gauge({
    name: 'mlxbar_cache_bytes',
    help: 'Bytes held by each cache.',
    labelNames: ['cache'],
    registers: reg,
    collect() {
      const c = cacheStats();
      if (c.responseCache) this.set({ cache: 'response' }, nonNeg(c.responseCache.bytes));
      if (c.prefixCache) this.set({ cache: 'prefix' }, nonNeg(c.prefixCache.bytes));
    },
  });
}

/** The gauges; `scrape()` is the snapshot of the scrape in progress (null before the first). */
export function registerGauges(registry: Registry, scrape: Scrape, cacheStats: () => CacheGaugeStats): void {
  registerSnapshotGauges(registry, scrape);
  registerLabelledGauges(registry, scrape, cacheStats);
}
