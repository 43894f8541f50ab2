// The sliding windows of the metrics collector: generation samples bounded by time and count (for
// the latency/TTFT percentiles and tokens per second) and per-second request buckets (requests/s).
import { summarize } from '../common/percentiles.ts';

export interface WindowSample {
  t: number;
  latency: number;
  ttft: number | null;
  completionTokens: number;
  /** seconds spent generating (latency − ttft when known); 0 for response-cache hits */
  genSeconds: number;
}

export interface WindowStats {
  count: number;
  lat: ReturnType<typeof summarize>;
  ttft: ReturnType<typeof summarize>;
  /** completion tokens / generation seconds over the samples that generated */
  tps: number;
}

/**
 * Samples of the last `windowMs` (at most `maxSamples`). The array is read from `head` on: pruning
 * advances `head` (O(1) amortized) and compacts only once the dead prefix is large; `stats()` is
 * cached until the window changes.
 */
export class SampleWindow {
  private samples: WindowSample[] = [];
  private head = 0;
  private version = 0;
  private cached: { version: number; stats: WindowStats } | null = null;

  constructor(
    private readonly windowMs: number,
    private readonly maxSamples: number,
  ) {}

  push(s: WindowSample): void {
    this.samples.push(s);
    this.version++;
  }

  prune(t: number): void {
    const cutoff = t - this.windowMs;
    const before = this.head;
    while (this.head < this.samples.length && this.samples[this.head].t < cutoff) this.head++;
    if (this.samples.length - this.head > this.maxSamples) this.head = this.samples.length - this.maxSamples;
    if (this.head !== before) this.version++;
    if (this.head > 1024 && this.head * 2 > this.samples.length) {
      this.samples = this.samples.slice(this.head);
      this.head = 0;
    }
  }

  stats(): WindowStats {
    if (this.cached && this.cached.version === this.version) return this.cached.stats;
    const win = this.head === 0 ? this.samples : this.samples.slice(this.head);
    let genTokens = 0;
    let genSeconds = 0;
    for (const w of win) {
      if (w.genSeconds > 0 && w.completionTokens > 0) {
        genTokens += w.completionTokens;
        genSeconds += w.genSeconds;
      }
    }
    const stats: WindowStats = {
      count: win.length,
      lat: summarize(win.map((w) => w.latency)),
      ttft: summarize(win.filter((w) => w.ttft !== null).map((w) => w.ttft as number)),
      tps: genSeconds > 0 ? Math.round((genTokens / genSeconds) * 100) / 100 : 0,
    };
    this.cached = { version: this.version, stats };
    return stats;
  }
}

const RPS_WINDOW_S = 60;
const RPS_MIN_ELAPSED_S = 10;

/**
 * Requests per second = requests in the last 60 s divided by the time observed in that window, never
 * less than 10 s (1 request in 1 ms reads 0.1, not 1000). Per-second buckets: bounded memory.
 */
export class RateWindow {
  private readonly buckets = new Map<number, number>();

  add(t: number): void {
    const sec = Math.floor(t / 1000);
    this.buckets.set(sec, (this.buckets.get(sec) ?? 0) + 1);
  }

  prune(t: number): void {
    const secCutoff = Math.floor(t / 1000) - RPS_WINDOW_S;
    if (this.buckets.size > RPS_WINDOW_S + 1) for (const k of this.buckets.keys()) if (k <= secCutoff) this.buckets.delete(k);
  }

  /** `uptimeSeconds`: how long the collector has observed (the denominator while under a minute). */
  rate(t: number, uptimeSeconds: number): number {
    let recent = 0;
    const secNow = Math.floor(t / 1000);
    for (const [k, v] of this.buckets) if (k > secNow - RPS_WINDOW_S) recent += v;
    return recent / Math.max(RPS_MIN_ELAPSED_S, Math.min(RPS_WINDOW_S, uptimeSeconds));
  }
}
