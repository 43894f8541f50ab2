// A bounded time series of the values the charts plot, built from successive snapshots. Pure, so
// it is unit-tested in Node.
import type { MetricsSnapshot } from '../../../main/common/metrics-types.ts';

export interface Sample {
  /** ms since epoch (from the snapshot, so the x axis is the server's clock). */
  t: number;
  /** Requests in the latency window: 0 means the latency/TTFT values are placeholders. */
  n: number;
  p50: number;
  p95: number;
  p99: number;
  ttft50: number;
  ttft95: number;
  ttft99: number;
  tps: number;
  rps: number;
  engineMb: number;
  serverMb: number;
}

export const HISTORY_LENGTH = 120;

export function toSample(s: MetricsSnapshot): Sample {
  const ms = 1000;
  return {
    t: Date.parse(s.timestamp) || Date.now(),
    n: s.latency.count,
    p50: s.latency.p50 * ms,
    p95: s.latency.p95 * ms,
    p99: s.latency.p99 * ms,
    ttft50: s.ttft.p50 * ms,
    ttft95: s.ttft.p95 * ms,
    ttft99: s.ttft.p99 * ms,
    tps: s.tokens_per_second,
    rps: s.throughput.requests_per_second,
    engineMb: s.memory.engine_rss_mb,
    serverMb: s.memory.server_rss_mb,
  };
}

/** Appends a snapshot's sample; a repeated or older timestamp replaces nothing and is dropped. */
export function appendSample(history: readonly Sample[], s: MetricsSnapshot, max = HISTORY_LENGTH): Sample[] {
  const sample = toSample(s);
  const last = history[history.length - 1];
  if (last && sample.t <= last.t) return history as Sample[];
  const next = history.length >= max ? history.slice(history.length - max + 1) : history.slice();
  next.push(sample);
  return next;
}
