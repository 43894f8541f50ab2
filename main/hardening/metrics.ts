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
import { Registry } from 'prom-client';
import { createMemorySampler, type MemorySampler } from './memory.ts';
import { registerUpstreamGauges } from './upstream-metrics.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { DegradationStatus, MetricsSnapshot, RecentRequest, RequestRecord, UpstreamMetrics } from '../common/metrics-types.ts';
import type { EngineStats } from '../engine/types.ts';
import {
  apiLabel,
  cleanModelId,
  corruptionReason,
  DEFAULT_WINDOW_SECONDS,
  errorCodeLabel,
  GENERATION_ROUTES,
  nonNeg,
  r3,
  r4,
  routeLabel,
  statusClass,
} from './metrics-labels.ts';
import { createCounters, registerGauges, type CacheGaugeStats, type PromCounters } from './metrics-prometheus.ts';
import { RateWindow, SampleWindow } from './metrics-window.ts';

export {
  METRIC_ROUTES,
  GENERATION_ROUTES,
  DEFAULT_WINDOW_SECONDS,
  CORRUPTION_REASONS,
  DEGRADATION_STATES,
  corruptionReason,
  type CorruptionReason,
} from './metrics-labels.ts';
export type { CacheGaugeStats } from './metrics-prometheus.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const GENERATION_ROUTE_SET = new Set<string>(GENERATION_ROUTES);

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

/** The plain (JSON) state: what the snapshot reports besides the windows. */
interface Counts {
  totalRequests: number;
  cancelled: number;
  errors: number;
  byStatus: Record<string, number>;
  byApi: Record<string, number>;
  promptTotal: number;
  completionTotal: number;
  draftTotal: number;
  acceptedTotal: number;
  cacheHits: number;
  cacheMisses: number;
  reused: number;
  computed: number;
  corruptions: Record<string, number>;
  engineRestarts: number;
  active: number;
  queued: number;
  recent: RecentRequest[];
}

const newCounts = (): Counts => ({
  totalRequests: 0, cancelled: 0, errors: 0, byStatus: Object.create(null), byApi: Object.create(null), promptTotal: 0, completionTotal: 0, draftTotal: 0, acceptedTotal: 0,
  cacheHits: 0, cacheMisses: 0, reused: 0, computed: 0, corruptions: Object.create(null), engineRestarts: 0, active: 0, queued: 0, recent: [],
});

/** What recording and the snapshot share: the state, the Prometheus counters and the windows. */
interface Collector {
  now: () => number;
  startedAt: number;
  opts: MetricsOptions;
  counts: Counts;
  prom: PromCounters;
  win: SampleWindow;
  rps: RateWindow;
  memory: MemorySampler;
}

/** The model label: the loaded model's id for requests to it (or to no model in particular), `other` for any other name. */
function modelLabel(c: Collector, requested: string | undefined): string {
  let loaded: string | null = null;
  try {
    const id = c.opts.modelInfo?.()?.id;
    loaded = id ? cleanModelId(id) : null;
  } catch {
    loaded = null;
  }
  if (!loaded) return 'none';
  if (requested === undefined || requested === '') return loaded;
  return cleanModelId(requested) === loaded ? loaded : 'other';
}

function prune(c: Collector, t: number): void {
  c.win.prune(t);
  c.rps.prune(t);
}

/** One finished API request: counters, the windows (successful generations only) and the recent list. */
function recordRequest(c: Collector, r: RequestRecord): void {
  const { counts, prom } = c;
  const t = c.now();
  const route = routeLabel(r.route);
  const stream = r.stream ? 'true' : 'false';
  const model = modelLabel(c, r.model);
  const status = Number.isInteger(r.status) ? r.status : 0;
  const latency = nonNeg(r.latencySeconds);
  const ttft = r.ttftSeconds === null || r.ttftSeconds === undefined ? null : nonNeg(r.ttftSeconds);
  const pt = Math.floor(nonNeg(r.promptTokens));
  const ct = Math.floor(nonNeg(r.completionTokens));
  const cached = Math.min(pt, Math.floor(nonNeg(r.cachedTokens)));

  counts.totalRequests++;
  c.rps.add(t);
  const sk = status >= 100 && status <= 599 ? String(status) : 'other';
  counts.byStatus[sk] = (counts.byStatus[sk] ?? 0) + 1;
  const api = apiLabel(r);
  counts.byApi[api] = (counts.byApi[api] ?? 0) + 1;
  prom.requestsTotal.inc({ api, route, status_class: statusClass(status), stream, model });
  counts.promptTotal += pt;
  counts.completionTotal += ct;
  prom.promptTokens.inc({ model }, pt);
  prom.completionTokens.inc({ model }, ct);
  // Drafts count whatever the outcome (a cancelled stream's verified drafts were computed too).
  const drafted = Math.floor(nonNeg(r.draftTokens));
  const accepted = Math.min(drafted, Math.floor(nonNeg(r.acceptedDrafts)));
  counts.draftTotal += drafted;
  counts.acceptedTotal += accepted;
  prom.draftTokensTotal.inc(drafted);
  prom.acceptedTokensTotal.inc(accepted);

  if (r.cancelled) {
    counts.cancelled++;
    prom.cancelledTotal.inc();
  } else if (status >= 400 || r.errorCode) {
    counts.errors++;
    prom.errorsTotal.inc({ code: errorCodeLabel(r.errorCode) });
  } else {
    // A response-cache hit recomputes nothing: it is a latency sample, not a prefill.
    if (!r.responseCacheHit && pt > 0) addPromptCache(c, cached, pt - cached);
    const genSeconds = r.responseCacheHit ? 0 : Math.max(0, latency - (ttft ?? 0));
    // The latency/TTFT/tokens-per-second windows describe generations: a model listing or an
    // embeddings batch would skew them. They are counted and land in their route's histogram.
    if (GENERATION_ROUTE_SET.has(route)) c.win.push({ t, latency, ttft, completionTokens: r.responseCacheHit ? 0 : ct, genSeconds });
    prom.duration.observe({ route, stream }, latency);
    if (ttft !== null) prom.ttftHist.observe({ route, stream }, ttft);
  }
  prune(c, t);

  counts.recent.push({
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
  const limit = c.opts.recentLimit ?? 50;
  if (counts.recent.length > limit) counts.recent.splice(0, counts.recent.length - limit);
}

function addPromptCache(c: Collector, reusedTokens: number, computedTokens: number): void {
  c.counts.reused += reusedTokens;
  c.counts.computed += computedTokens;
  c.prom.promptReused.inc(reusedTokens);
  c.prom.promptComputed.inc(computedTokens);
}

/** The recording API besides recordRequest. */
function recorders(c: Collector) {
  const { counts, prom } = c;
  return {
    recordRequest: (r: RequestRecord): void => recordRequest(c, r),
    recordResponseCache(result: 'hit' | 'miss'): void {
      if (result === 'hit') {
        counts.cacheHits++;
        prom.cacheHit.inc();
      } else {
        counts.cacheMisses++;
        prom.cacheMiss.inc();
      }
    },
    /** Prefix-cache tokens for engine work that is NOT an API request (e.g. warm-up). recordRequest
     *  already counts cachedTokens/promptTokens of every request: do not report those twice. */
    recordPromptCache(reusedTokens: number, computedTokens: number): void {
      addPromptCache(c, Math.floor(nonNeg(reusedTokens)), Math.floor(nonNeg(computedTokens)));
    },
    recordCacheCorruption(reason: string): void {
      const r = corruptionReason(reason);
      counts.corruptions[r] = (counts.corruptions[r] ?? 0) + 1;
      prom.corruptTotal.inc({ reason: r });
    },
    recordEngineRestart(): void {
      counts.engineRestarts++;
      prom.restartsTotal.inc();
    },
    setQueue(activeNow: number, queuedNow: number): void {
      counts.active = Math.floor(nonNeg(activeNow));
      counts.queued = Math.floor(nonNeg(queuedNow));
    },
  };
}

function degradationNow(c: Collector): DegradationStatus {
  try {
    const d = c.opts.degradation?.();
    if (d) return { ...d, reason: d.reason === null ? null : sanitizeMessage(d.reason) };
  } catch {
    // fall through
  }
  return { state: 'normal', cache_enabled: true, reason: null, since: new Date(c.startedAt).toISOString() };
}

/** The optional reads of the snapshot, each guarded: a throwing hook leaves its default. */
function guardedReads(c: Collector): { model: MetricsSnapshot['model']; cacheEnabled: { enabled?: boolean } } {
  let model: MetricsSnapshot['model'] = { id: null, state: 'unknown' };
  try {
    const m = c.opts.modelInfo?.();
    if (m) model = { id: m.id, state: m.state, ...(m.demo ? { demo: true } : {}) };
  } catch {
    // keep defaults
  }
  let cacheEnabled: { enabled?: boolean } = {};
  try {
    cacheEnabled = c.opts.responseCacheEnabled ? { enabled: !!c.opts.responseCacheEnabled() } : {};
  } catch {
    cacheEnabled = {};
  }
  return { model, cacheEnabled };
}

function snapshot(c: Collector): MetricsSnapshot {
  const { counts } = c;
  const t = c.now();
  prune(c, t);
  const uptime = Math.max(0, (t - c.startedAt) / 1000);
  const ws = c.win.stats();
  const { lat, ttft } = ws;
  const mem = c.memory.stats();
  const { model, cacheEnabled } = guardedReads(c);
  const lookups = counts.cacheHits + counts.cacheMisses;
  const promptAll = counts.reused + counts.computed;
  return {
    // A rate over no lookups is unknown (null), not 0%.
    cache: { cache_hits: counts.cacheHits, cache_misses: counts.cacheMisses, hit_rate: lookups ? r4(counts.cacheHits / lookups) : null, ...cacheEnabled },
    prompt_cache: { reused_tokens: counts.reused, computed_tokens: counts.computed, hit_rate: promptAll ? r4(counts.reused / promptAll) : null },
    latency: { p50: r4(lat.p50), p95: r4(lat.p95), p99: r4(lat.p99), count: ws.count, window_seconds: c.opts.windowSeconds ?? DEFAULT_WINDOW_SECONDS, routes: [...GENERATION_ROUTES] },
    ttft: { p50: r4(ttft.p50), p95: r4(ttft.p95), p99: r4(ttft.p99) },
    tokens_per_second: ws.tps,
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
      kv_pool_mb: mem.kv_pool_mb,
      reserved_kv_mb: mem.reserved_kv_mb,
      reserving_generations: mem.reserving_generations,
      pressure: mem.pressure,
    },
    throughput: { total_requests: counts.totalRequests, requests_per_second: r4(c.rps.rate(t, uptime)) },
    requests: { active: counts.active, queued: counts.queued, cancelled: counts.cancelled, errors: counts.errors, by_status: { ...counts.byStatus }, by_api: { ...counts.byApi } },
    tokens: { prompt_total: counts.promptTotal, completion_total: counts.completionTotal },
    lookup: { draft_tokens: counts.draftTotal, accepted_tokens: counts.acceptedTotal, acceptance_rate: counts.draftTotal ? r4(counts.acceptedTotal / counts.draftTotal) : null },
    degradation: degradationNow(c),
    cache_corruptions: { ...counts.corruptions },
    engine_restarts: counts.engineRestarts,
    model,
    recent_requests: counts.recent.slice().reverse(), // newest first
    timestamp: new Date(t).toISOString(),
    uptime_seconds: r3(uptime),
    ...(c.opts.upstreams ? { upstreams: c.opts.upstreams() } : {}),
  };
}

/** The ~1 Hz live feed: one fresh snapshot per tick to every subscriber; the timer runs only while someone listens. */
function createFeed(take: () => MetricsSnapshot, intervalMs: number) {
  const subscribers = new Set<(s: MetricsSnapshot) => void>();
  let timer: NodeJS.Timeout | null = null;
  const tick = () => {
    if (subscribers.size === 0) return;
    const s = take();
    for (const cb of [...subscribers]) {
      try {
        cb(s);
      } catch {
        // one broken subscriber must not stop the feed for the others
      }
    }
  };
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  return {
    subscribers,
    /** Calls cb with a fresh snapshot about once a second; returns the unsubscribe function. */
    subscribe(cb: (s: MetricsSnapshot) => void): () => void {
      subscribers.add(cb);
      if (!timer) {
        timer = setInterval(tick, intervalMs);
        timer.unref();
      }
      return () => {
        subscribers.delete(cb);
        if (subscribers.size === 0) stop();
      };
    },
    close(): void {
      subscribers.clear();
      stop();
    },
  };
}

export function createMetrics(opts: MetricsOptions = {}) {
  const now = opts.now ?? Date.now;
  const ownMemory = !opts.memory;
  const memory = opts.memory ?? createMemorySampler({ engineStats: opts.engineStats }).start();
  const registry = new Registry();
  if (opts.upstreams) registerUpstreamGauges(registry, opts.upstreams);
  const c: Collector = {
    now,
    startedAt: now(),
    opts,
    counts: newCounts(),
    prom: createCounters(registry),
    win: new SampleWindow((opts.windowSeconds ?? DEFAULT_WINDOW_SECONDS) * 1000, opts.windowMaxSamples ?? 10_000),
    rps: new RateWindow(),
    memory,
  };
  // The gauges' collect() read `scrape`; it is left set (not reset) so overlapping scrapes never
  // see a missing snapshot.
  let scrape: MetricsSnapshot | null = null;
  registerGauges(registry, () => scrape, () => {
    try {
      return opts.cacheStats?.() ?? {};
    } catch {
      return {};
    }
  });
  const take = () => snapshot(c);
  const feed = createFeed(take, opts.feedIntervalMs ?? 1000);
  return {
    ...recorders(c),
    snapshot: take,
    async prometheus(): Promise<string> {
      scrape = take();
      const text = await registry.metrics();
      return text.endsWith('\n') ? text : text + '\n';
    },
    contentType: PROMETHEUS_CONTENT_TYPE,
    subscribe: feed.subscribe,
    /** Number of live-feed subscribers (tests, diagnostics). */
    get subscriberCount() {
      return feed.subscribers.size;
    },
    registry,
    memory,
    close(): void {
      feed.close();
      if (ownMemory) memory.stop();
    },
  };
}
