// One source of truth for every number MLX Bar reports: GET /v1/metrics (JSON), the Prometheus text
// (GET /metrics, ?format=prometheus), the ~1 Hz live feed for the dashboard, and the tray.
//
// What the seed got wrong and how this avoids it:
//  - streamed requests recorded no latency: recordRequest() takes every finished request (stream or
//    not, response-cache hit or not) with its end-to-end latency; the server calls it exactly once per
//    API request (not for /v1/metrics or /health);
//  - memory was never sampled: a MemorySampler samples server + engine RSS every second;
//  - rps exploded for small samples: requests/s = requests in the last 60 s divided by the time
//    observed in that window, never less than 10 s (1 request in 1 ms reads 0.1, not 1000);
//  - Prometheus had no prefix, no labels, no trailing newline, and was served as a JSON string:
//    prom-client on its own Registry (not the global one), names `mlxbar_*`, counters `_total`,
//    bounded label values only (fixed route/status/reason sets; the model label is the loaded
//    model's id or `other`, so random client model names cannot create series).
// Latency and TTFT percentiles cover a sliding window bounded by time (default the last 60 s, so the
// dashboard's charts follow the traffic) and by count (default 10,000 samples) and use linear
// interpolation (see percentiles.ts). Only successful (status < 400), non-cancelled requests of the
// generation routes (GENERATION_ROUTES) enter the latency/TTFT/tokens-per-second windows: a 400 in
// 1 ms or a model listing is not a latency sample. Every request counts in totals, by_status and Prometheus counters.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ERROR_CODES } from '../common/errors.ts';
import { createMemorySampler, type MemorySampler } from './memory.ts';
import { registerUpstreamGauges } from './upstream-metrics.ts';
import { summarize } from '../common/percentiles.ts';
import { API_DIALECTS, apiOfRoute, type ApiDialect } from '../common/api-dialect.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { DegradationState, DegradationStatus, MetricsSnapshot, RecentRequest, RequestRecord, UpstreamMetrics } from '../common/metrics-types.ts';
import type { EngineStats } from '../engine/types.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Routes that may appear as a label value; anything else is `other`. */
export const METRIC_ROUTES = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/models',
  '/v1/responses',
  '/v1/messages',
  '/v1/messages/count_tokens',
  '/api/chat',
  '/api/generate',
  '/api/embed',
  '/api/embeddings',
  'other',
] as const;
/**
 * Routes that generate text: the only ones in the latency/TTFT/tokens-per-second window. A /v1/models
 * listing in 2 ms or an embeddings batch is not a generation and would drag the percentiles down.
 */
export const GENERATION_ROUTES = ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/v1/messages', '/api/chat', '/api/generate'] as const;
const GENERATION_ROUTE_SET = new Set<string>(GENERATION_ROUTES);
/** Default latency window: the last minute, so the dashboard's charts move with the traffic. */
export const DEFAULT_WINDOW_SECONDS = 60;
/** Cache-corruption reasons that may appear as a label value / JSON key; anything else is `other`. */
// Same names as main/caches/entry-file.ts CorruptReason (plus io_error and the catch-all other).
export const CORRUPTION_REASONS = [
  'empty',
  'truncated',
  'bad_magic',
  'bad_kind',
  'bad_header',
  'absurd_length',
  'length_mismatch',
  'bad_trailer',
  'checksum',
  'invalid_utf8',
  'invalid_json',
  'invalid_meta',
  'not_a_file',
  'io_error',
  'other',
] as const;
export type CorruptionReason = (typeof CORRUPTION_REASONS)[number];
export const DEGRADATION_STATES: DegradationState[] = ['normal', 'upstream_down', 'cache_disabled', 'shedding', 'engine_restarting', 'engine_failed'];

export interface CacheGaugeStats {
  responseCache?: { entries: number; bytes: number };
  prefixCache?: { entries: number; bytes: number };
}

export interface MetricsOptions {
  /** ms since epoch; injectable for tests. */
  now?: () => number;
  engineStats?: () => Promise<EngineStats>;
  degradation?: () => DegradationStatus;
  cacheStats?: () => CacheGaugeStats;
  modelInfo?: () => { id: string | null; state: string; demo?: boolean };
  /** Whether the response cache is switched on (settings); the snapshot says `enabled: false` otherwise. */
  responseCacheEnabled?: () => boolean;
  /** Use this sampler (the lead wires its onSoft/onHard); otherwise one is created and owned. */
  memory?: MemorySampler;
  /** Sliding window for latency/TTFT/tokens-per-second (default DEFAULT_WINDOW_SECONDS). */
  windowSeconds?: number;
  windowMaxSamples?: number;
  recentLimit?: number;
  feedIntervalMs?: number;
  /** Remote upstreams' statistics (main/server/remote), when any are configured. */
  upstreams?: () => UpstreamMetrics[];
}

export type Metrics = ReturnType<typeof createMetrics>;

interface WindowSample {
  t: number;
  latency: number;
  ttft: number | null;
  completionTokens: number;
  /** seconds spent generating (latency − ttft when known); 0 for response-cache hits */
  genSeconds: number;
}

const RPS_WINDOW_S = 60;
const RPS_MIN_ELAPSED_S = 10;
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
const r3 = (x: number) => Math.round(x * 1e3) / 1e3;
const nonNeg = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0);

function routeLabel(route: string): string {
  const r = (route || '').split('?')[0];
  return (METRIC_ROUTES as readonly string[]).includes(r) ? r : 'other';
}
/** The API label: the record's own, else derived from its route; `other` for non-API routes. */
function apiLabel(r: RequestRecord): ApiDialect | 'other' {
  const a = r.api ?? apiOfRoute(r.route);
  return a && (API_DIALECTS as readonly string[]).includes(a) ? a : 'other';
}
function statusClass(status: number): string {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}
export function corruptionReason(reason: string): CorruptionReason {
  return (CORRUPTION_REASONS as readonly string[]).includes(reason) ? (reason as CorruptionReason) : 'other';
}
function errorCodeLabel(code: string | null): string {
  return code && Object.prototype.hasOwnProperty.call(ERROR_CODES, code) ? code : 'other';
}
/** Model ids as label values: printable, short. */
function cleanModelId(id: string): string {
  return id.replace(/[^A-Za-z0-9._:@/-]/g, '_').slice(0, 64) || 'unknown';
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export function createMetrics(opts: MetricsOptions = {}) {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  const startedIso = new Date(startedAt).toISOString();
  const windowSeconds = opts.windowSeconds ?? DEFAULT_WINDOW_SECONDS;
  const windowMs = windowSeconds * 1000;
  const windowMax = opts.windowMaxSamples ?? 10_000;
  const recentLimit = opts.recentLimit ?? 50;
  const ownMemory = !opts.memory;
  const memory = opts.memory ?? createMemorySampler({ engineStats: opts.engineStats }).start();

  // ------------------------------------------------------------------ plain state (JSON)
  let window: WindowSample[] = [];
  let totalRequests = 0;
  let cancelled = 0;
  let errors = 0;
  const byStatus: Record<string, number> = Object.create(null);
  const byApi: Record<string, number> = Object.create(null);
  let promptTotal = 0;
  let completionTotal = 0;
  let draftTotal = 0;
  let acceptedTotal = 0;
  let cacheHits = 0;
  let cacheMisses = 0;
  let reused = 0;
  let computed = 0;
  const corruptions: Record<string, number> = Object.create(null);
  let engineRestarts = 0;
  let active = 0;
  let queued = 0;
  const recent: RecentRequest[] = [];
  // requests per second: per-second buckets over the last RPS_WINDOW_S seconds (bounded memory)
  const rpsBuckets = new Map<number, number>();

  const loadedModelId = (): string | null => {
    try {
      const id = opts.modelInfo?.()?.id;
      return id ? cleanModelId(id) : null;
    } catch {
      return null;
    }
  };
  const modelLabel = (requested: string | undefined): string => {
    const loaded = loadedModelId();
    if (!loaded) return 'none';
    if (requested === undefined || requested === '') return loaded;
    return cleanModelId(requested) === loaded ? loaded : 'other';
  };

  // ------------------------------------------------------------------ Prometheus (own registry)
  const registry = new Registry();
  const reg = [registry];
  if (opts.upstreams) registerUpstreamGauges(registry, opts.upstreams);
  const requestsTotal = new Counter({
    name: 'mlxbar_requests_total',
    help: 'API requests finished, by API (openai, responses, anthropic, ollama), route, status class, streaming and model (loaded model id or "other").',
    labelNames: ['api', 'route', 'status_class', 'stream', 'model'] as const,
    registers: reg,
  });
  const cancelledTotal = new Counter({ name: 'mlxbar_requests_cancelled_total', help: 'Requests cancelled by client disconnect or timeout.', registers: reg });
  const errorsTotal = new Counter({
    name: 'mlxbar_request_errors_total',
    help: 'Requests that ended with an error, by stable error code.',
    labelNames: ['code'] as const,
    registers: reg,
  });
  const duration = new Histogram({
    name: 'mlxbar_request_duration_seconds',
    help: 'End-to-end latency of successful requests (streams: until the last byte).',
    labelNames: ['route', 'stream'] as const,
    buckets: LATENCY_BUCKETS,
    registers: reg,
  });
  const ttftHist = new Histogram({
    name: 'mlxbar_time_to_first_token_seconds',
    help: 'Time to first token of successful generating requests.',
    labelNames: ['route', 'stream'] as const,
    buckets: TTFT_BUCKETS,
    registers: reg,
  });
  const promptTokens = new Counter({ name: 'mlxbar_prompt_tokens_total', help: 'Prompt tokens of finished requests.', labelNames: ['model'] as const, registers: reg });
  const completionTokens = new Counter({ name: 'mlxbar_completion_tokens_total', help: 'Generated tokens of finished requests.', labelNames: ['model'] as const, registers: reg });
  const draftTokensTotal = new Counter({
    name: 'mlxbar_lookup_draft_tokens_total',
    help: 'Lookup decoding: draft tokens verified by the model (n-gram drafts from the prompt, the output and recent outputs).',
    registers: reg,
  });
  const acceptedTokensTotal = new Counter({
    name: 'mlxbar_lookup_accepted_tokens_total',
    help: 'Lookup decoding: draft tokens accepted (generated without a decode step of their own).',
    registers: reg,
  });
  const cacheHit = new Counter({ name: 'mlxbar_cache_hit_total', help: 'Response-cache hits.', registers: reg });
  const cacheMiss = new Counter({ name: 'mlxbar_cache_miss_total', help: 'Response-cache misses (lookups of cacheable requests that found nothing usable).', registers: reg });
  const promptReused = new Counter({ name: 'mlxbar_prompt_cache_reused_tokens_total', help: 'Prompt tokens whose KV came from the prefix cache.', registers: reg });
  const promptComputed = new Counter({ name: 'mlxbar_prompt_cache_computed_tokens_total', help: 'Prompt tokens prefilled (not reused).', registers: reg });
  const corruptTotal = new Counter({
    name: 'mlxbar_cache_corruptions_total',
    help: 'Corrupt cache entries quarantined, by reason.',
    labelNames: ['reason'] as const,
    registers: reg,
  });
  const restartsTotal = new Counter({ name: 'mlxbar_engine_restarts_total', help: 'Engine process restarts.', registers: reg });

  // Gauges computed at scrape time from the same state as the JSON snapshot.
  let scrape: MetricsSnapshot | null = null;
  const g = (name: string, help: string, pick: (s: MetricsSnapshot) => number, labelNames: string[] = []) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: reg,
      collect() {
        if (scrape) this.set(pick(scrape));
      },
    });
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
  new Gauge({
    name: 'mlxbar_process_resident_memory_bytes',
    help: 'Resident memory by process.',
    labelNames: ['process'],
    registers: reg,
    collect() {
      if (!scrape) return;
      this.set({ process: 'server' }, scrape.memory.server_rss_mb * 1024 * 1024);
      this.set({ process: 'engine' }, scrape.memory.engine_rss_mb * 1024 * 1024);
    },
  });
  g('mlxbar_mlx_active_memory_bytes', 'MLX active memory (0 where the build has no counter: see mlxbar_mlx_memory_counters).', (s) => (s.memory.mlx_active_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_peak_memory_bytes', 'MLX peak memory (0 where the build has no counter: see mlxbar_mlx_memory_counters).', (s) => (s.memory.mlx_peak_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_cache_memory_bytes', 'MLX buffer cache (0 where the build has no counter).', (s) => (s.memory.mlx_cache_mb ?? 0) * 1024 * 1024);
  g('mlxbar_mlx_memory_counters', '1 when the MLX build reports its memory (Metal), 0 when not available on this build.', (s) => (s.memory.mlx_active_mb == null ? 0 : 1));
  new Gauge({
    name: 'mlxbar_memory_pressure',
    help: 'Memory pressure level (one-hot: normal, soft, hard).',
    labelNames: ['level'],
    registers: reg,
    collect() {
      const level = scrape?.memory.pressure ?? 'normal';
      for (const l of ['normal', 'soft', 'hard']) this.set({ level: l }, l === level ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mlxbar_degradation_state',
    help: 'Degradation state machine (one-hot).',
    labelNames: ['state'],
    registers: reg,
    collect() {
      const st = scrape?.degradation.state ?? 'normal';
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
      const c = safeCacheStats();
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
      const c = safeCacheStats();
      if (c.responseCache) this.set({ cache: 'response' }, nonNeg(c.responseCache.bytes));
      if (c.prefixCache) this.set({ cache: 'prefix' }, nonNeg(c.prefixCache.bytes));
    },
  });
  // Pre-create the fixed-label series so counters exist at 0 from the first scrape.
  for (const r of CORRUPTION_REASONS) corruptTotal.inc({ reason: r }, 0);

  function safeCacheStats(): CacheGaugeStats {
    try {
      return opts.cacheStats?.() ?? {};
    } catch {
      return {};
    }
  }

  // ------------------------------------------------------------------ recording
  // The window is an array read from `head` on: pruning advances `head` (O(1) amortized) and the
  // array is compacted only once the dead prefix is large.
  let head = 0;
  let windowVersion = 0; // bumped whenever the window changes; snapshot() caches its percentiles on it
  function prune(t: number): void {
    const cutoff = t - windowMs;
    const before = head;
    while (head < window.length && window[head].t < cutoff) head++;
    if (window.length - head > windowMax) head = window.length - windowMax;
    if (head !== before) windowVersion++;
    if (head > 1024 && head * 2 > window.length) {
      window = window.slice(head);
      head = 0;
    }
    const secCutoff = Math.floor(t / 1000) - RPS_WINDOW_S;
    if (rpsBuckets.size > RPS_WINDOW_S + 1) for (const k of rpsBuckets.keys()) if (k <= secCutoff) rpsBuckets.delete(k);
  }
  const live = () => (head === 0 ? window : window.slice(head));

  function recordRequest(r: RequestRecord): void {
    const t = now();
    const route = routeLabel(r.route);
    const stream = r.stream ? 'true' : 'false';
    const model = modelLabel(r.model);
    const status = Number.isInteger(r.status) ? r.status : 0;
    const latency = nonNeg(r.latencySeconds);
    const ttft = r.ttftSeconds === null || r.ttftSeconds === undefined ? null : nonNeg(r.ttftSeconds);
    const pt = Math.floor(nonNeg(r.promptTokens));
    const ct = Math.floor(nonNeg(r.completionTokens));
    const cached = Math.min(pt, Math.floor(nonNeg(r.cachedTokens)));

    totalRequests++;
    const sec = Math.floor(t / 1000);
    rpsBuckets.set(sec, (rpsBuckets.get(sec) ?? 0) + 1);
    const sk = status >= 100 && status <= 599 ? String(status) : 'other';
    byStatus[sk] = (byStatus[sk] ?? 0) + 1;
    const api = apiLabel(r);
    byApi[api] = (byApi[api] ?? 0) + 1;
    requestsTotal.inc({ api, route, status_class: statusClass(status), stream, model });
    promptTotal += pt;
    completionTotal += ct;
    promptTokens.inc({ model }, pt);
    completionTokens.inc({ model }, ct);
    // Drafts count whatever the outcome (a cancelled stream's verified drafts were computed too).
    const drafted = Math.floor(nonNeg(r.draftTokens));
    const accepted = Math.min(drafted, Math.floor(nonNeg(r.acceptedDrafts)));
    draftTotal += drafted;
    acceptedTotal += accepted;
    draftTokensTotal.inc(drafted);
    acceptedTokensTotal.inc(accepted);

    if (r.cancelled) {
      cancelled++;
      cancelledTotal.inc();
    } else if (status >= 400 || r.errorCode) {
      errors++;
      errorsTotal.inc({ code: errorCodeLabel(r.errorCode) });
    } else {
      // A response-cache hit recomputes nothing: it is a latency sample, not a prefill.
      if (!r.responseCacheHit && pt > 0) {
        reused += cached;
        computed += pt - cached;
        promptReused.inc(cached);
        promptComputed.inc(pt - cached);
      }
      const genSeconds = r.responseCacheHit ? 0 : Math.max(0, latency - (ttft ?? 0));
      // The latency/TTFT/tokens-per-second windows describe generations: a model listing or an
      // embeddings batch would skew them. They are counted and land in their route's histogram.
      if (GENERATION_ROUTE_SET.has(route)) {
        window.push({ t, latency, ttft, completionTokens: r.responseCacheHit ? 0 : ct, genSeconds });
        windowVersion++;
      }
      duration.observe({ route, stream }, latency);
      if (ttft !== null) ttftHist.observe({ route, stream }, ttft);
    }
    prune(t);

    recent.push({
      id: String(r.id ?? '').slice(0, 64),
      at: new Date(t).toISOString(),
      route,
      api: api === 'other' ? null : api,
      status,
      stream: !!r.stream,
      prompt_tokens: pt,
      completion_tokens: ct,
      cached_tokens: cached,
      latency_s: r4(latency),
      ttft_s: ttft === null ? null : r4(ttft),
      finish_reason: r.finishReason ? String(r.finishReason).slice(0, 32) : null,
      response_cache_hit: !!r.responseCacheHit,
    });
    if (recent.length > recentLimit) recent.splice(0, recent.length - recentLimit);
  }

  function cacheEnabled(): { enabled?: boolean } {
    try {
      return opts.responseCacheEnabled ? { enabled: !!opts.responseCacheEnabled() } : {};
    } catch {
      return {};
    }
  }

  function recordResponseCache(result: 'hit' | 'miss'): void {
    if (result === 'hit') {
      cacheHits++;
      cacheHit.inc();
    } else {
      cacheMisses++;
      cacheMiss.inc();
    }
  }

  /** Prefix-cache tokens for engine work that is NOT an API request (e.g. warm-up). recordRequest
   *  already counts cachedTokens/promptTokens of every request: do not report those twice. */
  function recordPromptCache(reusedTokens: number, computedTokens: number): void {
    const a = Math.floor(nonNeg(reusedTokens));
    const b = Math.floor(nonNeg(computedTokens));
    reused += a;
    computed += b;
    promptReused.inc(a);
    promptComputed.inc(b);
  }

  function recordCacheCorruption(reason: string): void {
    const r = corruptionReason(reason);
    corruptions[r] = (corruptions[r] ?? 0) + 1;
    corruptTotal.inc({ reason: r });
  }

  function recordEngineRestart(): void {
    engineRestarts++;
    restartsTotal.inc();
  }

  function setQueue(activeNow: number, queuedNow: number): void {
    active = Math.floor(nonNeg(activeNow));
    queued = Math.floor(nonNeg(queuedNow));
  }

  // ------------------------------------------------------------------ snapshot
  function degradationNow(): DegradationStatus {
    try {
      const d = opts.degradation?.();
      if (d) return { ...d, reason: d.reason === null ? null : sanitizeMessage(d.reason) };
    } catch {
      // fall through
    }
    return { state: 'normal', cache_enabled: true, reason: null, since: startedIso };
  }

  let windowStats: { version: number; count: number; lat: ReturnType<typeof summarize>; ttft: ReturnType<typeof summarize>; tps: number } | null = null;
  function snapshot(): MetricsSnapshot {
    const t = now();
    prune(t);
    const uptime = Math.max(0, (t - startedAt) / 1000);
    if (!windowStats || windowStats.version !== windowVersion) {
      const win = live();
      let genTokens = 0;
      let genSeconds = 0;
      for (const w of win) {
        if (w.genSeconds > 0 && w.completionTokens > 0) {
          genTokens += w.completionTokens;
          genSeconds += w.genSeconds;
        }
      }
      windowStats = {
        version: windowVersion,
        count: win.length,
        lat: summarize(win.map((w) => w.latency)),
        ttft: summarize(win.filter((w) => w.ttft !== null).map((w) => w.ttft as number)),
        tps: genSeconds > 0 ? Math.round((genTokens / genSeconds) * 100) / 100 : 0,
      };
    }
    const { lat, ttft } = windowStats;
    let recentCount = 0;
    const secNow = Math.floor(t / 1000);
    for (const [k, v] of rpsBuckets) if (k > secNow - RPS_WINDOW_S) recentCount += v;
    const observed = Math.min(RPS_WINDOW_S, uptime);
    const rps = recentCount / Math.max(RPS_MIN_ELAPSED_S, observed);
    const mem = memory.stats();
    let model: MetricsSnapshot['model'] = { id: null, state: 'unknown' };
    try {
      const m = opts.modelInfo?.();
      if (m) model = { id: m.id, state: m.state, ...(m.demo ? { demo: true } : {}) };
    } catch {
      // keep defaults
    }
    const lookups = cacheHits + cacheMisses;
    const promptAll = reused + computed;
    return {
      // A rate over no lookups is unknown (null), not 0%.
      cache: { cache_hits: cacheHits, cache_misses: cacheMisses, hit_rate: lookups ? r4(cacheHits / lookups) : null, ...cacheEnabled() },
      prompt_cache: { reused_tokens: reused, computed_tokens: computed, hit_rate: promptAll ? r4(reused / promptAll) : null },
      latency: { p50: r4(lat.p50), p95: r4(lat.p95), p99: r4(lat.p99), count: windowStats.count, window_seconds: windowSeconds, routes: [...GENERATION_ROUTES] },
      ttft: { p50: r4(ttft.p50), p95: r4(ttft.p95), p99: r4(ttft.p99) },
      tokens_per_second: windowStats.tps,
      memory: {
        current_mb: mem.current_mb,
        peak_mb: mem.peak_mb,
        growth_percent: mem.growth_percent,
        server_rss_mb: mem.server_rss_mb,
        engine_rss_mb: mem.engine_rss_mb,
        engine_peak_mb: mem.engine_peak_mb,
        mlx_active_mb: mem.mlx_active_mb,
        mlx_peak_mb: mem.mlx_peak_mb,
        mlx_cache_mb: mem.mlx_cache_mb,
        pressure: mem.pressure,
      },
      throughput: { total_requests: totalRequests, requests_per_second: r4(rps) },
      requests: { active, queued, cancelled, errors, by_status: { ...byStatus }, by_api: { ...byApi } },
      tokens: { prompt_total: promptTotal, completion_total: completionTotal },
      lookup: { draft_tokens: draftTotal, accepted_tokens: acceptedTotal, acceptance_rate: draftTotal ? r4(acceptedTotal / draftTotal) : null },
      degradation: degradationNow(),
      cache_corruptions: { ...corruptions },
      engine_restarts: engineRestarts,
      model,
      recent_requests: recent.slice().reverse(), // newest first
      timestamp: new Date(t).toISOString(),
      uptime_seconds: r3(uptime),
      ...(opts.upstreams ? { upstreams: opts.upstreams() } : {}),
    };
  }

  async function prometheus(): Promise<string> {
    // The gauges' collect() read `scrape`; it is left set (not reset) so overlapping scrapes never
    // see a missing snapshot.
    scrape = snapshot();
    const text = await registry.metrics();
    return text.endsWith('\n') ? text : text + '\n';
  }

  // ------------------------------------------------------------------ live feed (~1 Hz)
  const subscribers = new Set<(s: MetricsSnapshot) => void>();
  let feedTimer: NodeJS.Timeout | null = null;
  function tick(): void {
    if (subscribers.size === 0) return;
    const s = snapshot();
    for (const cb of [...subscribers]) {
      try {
        cb(s);
      } catch {
        // one broken subscriber must not stop the feed for the others
      }
    }
  }
  /** Calls cb with a fresh snapshot about once a second; returns the unsubscribe function. */
  function subscribe(cb: (s: MetricsSnapshot) => void): () => void {
    subscribers.add(cb);
    if (!feedTimer) {
      feedTimer = setInterval(tick, opts.feedIntervalMs ?? 1000);
      feedTimer.unref();
    }
    return () => {
      subscribers.delete(cb);
      if (subscribers.size === 0 && feedTimer) {
        clearInterval(feedTimer);
        feedTimer = null;
      }
    };
  }

  function close(): void {
    subscribers.clear();
    if (feedTimer) clearInterval(feedTimer);
    feedTimer = null;
    if (ownMemory) memory.stop();
  }

  return {
    recordRequest,
    recordResponseCache,
    recordPromptCache,
    recordCacheCorruption,
    recordEngineRestart,
    setQueue,
    snapshot,
    prometheus,
    contentType: PROMETHEUS_CONTENT_TYPE,
    subscribe,
    /** Number of live-feed subscribers (tests, diagnostics). */
    get subscriberCount() {
      return subscribers.size;
    },
    registry,
    memory,
    close,
  };
}
