// The metrics contract shared by the HTTP server (producer), /v1/metrics, the live feed and the
// dashboard (consumers). One source of truth lives in main/hardening/metrics.ts.
import type { ApiDialect } from './api-dialect.ts';

export type DegradationState = 'normal' | 'upstream_down' | 'cache_disabled' | 'shedding' | 'engine_restarting' | 'engine_failed';

export interface DegradationStatus {
  state: DegradationState;
  cache_enabled: boolean;
  /** Human-readable, sanitized. null in `normal`. */
  reason: string | null;
  /** ISO timestamp of the last state change. */
  since: string;
  /**
   * Remote models whose upstream's circuit breaker is open (absent when none). Reported whatever the
   * combined state, like cache_enabled: a restarting engine does not hide a down upstream.
   */
  upstreams_down?: string[];
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/** The memory block of the snapshot (main/hardening/memory.ts `MemoryStats` is this plus the system figure). */
export interface MemoryMetrics {
  current_mb: number;
  peak_mb: number;
  growth_percent: number;
  server_rss_mb: number;
  engine_rss_mb: number;
  engine_peak_mb: number;
  /** Additive: MLX pool counters (Metal builds); null = not available on this build (the CPU build has none). */
  mlx_active_mb?: number | null;
  mlx_peak_mb?: number | null;
  mlx_cache_mb?: number | null;
  /** Additive: KV buffers the engine keeps for the next sequences (no page faults for their KV); null = no pool (Metal: MLX's cache above). Part of engine_rss_mb. */
  kv_pool_mb?: number | null;
  /**
   * Additive: KV memory the running generations may still grow into (each one's prompt + max_tokens,
   * bounded by the context, minus what the latest sample already saw); admission counts it as taken.
   */
  reserved_kv_mb?: number;
  /** Additive: generations holding such a reservation. */
  reserving_generations?: number;
  pressure?: 'normal' | 'soft' | 'hard';
}

/** One remote upstream (settings `remotes`): its circuit state and what went through it. */
export interface UpstreamMetrics {
  upstream: string;
  state: 'closed' | 'open' | 'half_open';
  requests: number;
  errors: Record<string, number>;
  active: number;
  queued: number;
  latency_ms: { p50: number; p95: number; p99: number };
  ttft_ms: { p50: number; p95: number; p99: number };
  tokens_per_second: { p50: number; p95: number; p99: number };
  /** Requests answered by the local fallback model while the upstream was down. */
  fallbacks: number;
}

/** JSON served at GET /v1/metrics (and pushed on the live feed). Times in seconds. */
export interface MetricsSnapshot {
  /** hit_rate null: nothing was looked up yet. enabled: the response cache is switched on (absent when unknown). */
  cache: { cache_hits: number; cache_misses: number; hit_rate: number | null; enabled?: boolean };
  /** hit_rate null: no prompt tokens yet. */
  prompt_cache: { reused_tokens: number; computed_tokens: number; hit_rate: number | null };
  /** Over the generation routes only (`routes`), the last `window_seconds`. */
  latency: Percentiles & { count: number; window_seconds?: number; routes?: string[] };
  ttft: Percentiles;
  tokens_per_second: number;
  memory: MemoryMetrics;
  throughput: { total_requests: number; requests_per_second: number };
  requests: { active: number; queued: number; cancelled: number; errors: number; by_status: Record<string, number>; by_api?: Record<string, number> };
  tokens: { prompt_total: number; completion_total: number };
  /**
   * Additive: lookup (speculative) decoding over every finished generation. draft_tokens were
   * verified by the model, accepted_tokens of them were kept (each one a token that cost no decode
   * step of its own). acceptance_rate = accepted / drafted (null before the first draft).
   */
  lookup?: { draft_tokens: number; accepted_tokens: number; acceptance_rate: number | null };
  degradation: DegradationStatus;
  cache_corruptions: Record<string, number>;
  engine_restarts: number;
  /** demo: the built-in random-weight DEMO model is loaded. */
  model: { id: string | null; state: string; demo?: boolean };
  /** Newest first. */
  recent_requests: RecentRequest[];
  timestamp: string;
  uptime_seconds: number;
  /** Remote upstreams, when any are configured. */
  upstreams?: UpstreamMetrics[];
}

export interface RecentRequest {
  id: string;
  at: string;
  route: string;
  /** Which API the request spoke (openai | responses | anthropic | ollama); null for other routes. */
  api: ApiDialect | null;
  status: number;
  stream: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  latency_s: number;
  ttft_s: number | null;
  finish_reason: string | null;
  response_cache_hit: boolean;
}

/** What the request path reports; implemented by main/hardening/metrics.ts. */
export interface RequestRecord {
  id: string;
  route: string;
  stream: boolean;
  status: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** End to end, seconds (stream: until the last byte). */
  latencySeconds: number;
  ttftSeconds: number | null;
  finishReason: string | null;
  responseCacheHit: boolean;
  cancelled: boolean;
  errorCode: string | null;
  /** Additive: the `model` the client asked for; bucketed to the loaded model or `other` in labels. */
  model?: string;
  /** Additive: which API the request spoke; derived from `route` when absent. */
  api?: ApiDialect | null;
  /** Additive: lookup decoding's draft tokens verified and accepted for this request (absent when off). */
  draftTokens?: number;
  acceptedDrafts?: number;
}
