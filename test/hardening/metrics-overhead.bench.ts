// Metrics overhead per request (for `npm run bench`; the bench runner can import
// benchMetricsOverhead() or run this file with tsx). Prints one JSON object.
import { createMetrics } from '../../main/hardening/metrics.ts';
import { createMemorySampler } from '../../main/hardening/memory.ts';
import type { RequestRecord } from '../../main/common/metrics-types.ts';

export async function benchMetricsOverhead(n = 50_000): Promise<Record<string, number>> {
  const m = createMetrics({ memory: createMemorySampler({}), modelInfo: () => ({ id: 'bench-model', state: 'ready' }) });
  try {
    const rec = (i: number): RequestRecord => ({
      id: `r${i}`,
      route: '/v1/chat/completions',
      stream: i % 2 === 0,
      status: 200,
      promptTokens: 100,
      completionTokens: 50,
      cachedTokens: 40,
      latencySeconds: Math.random() * 3,
      ttftSeconds: Math.random() * 0.5,
      finishReason: 'stop',
      responseCacheHit: false,
      cancelled: false,
      errorCode: null,
    });
    for (let i = 0; i < 12_000; i++) m.recordRequest(rec(i)); // fill the 10k window
    let t = performance.now();
    for (let i = 0; i < n; i++) m.recordRequest(rec(i));
    const recordUs = ((performance.now() - t) * 1000) / n;
    // uncached snapshot (a new request invalidates the percentile cache each time)
    t = performance.now();
    for (let i = 0; i < 50; i++) {
      m.recordRequest(rec(i));
      m.snapshot();
    }
    const snapshotMs = (performance.now() - t) / 50;
    t = performance.now();
    for (let i = 0; i < 50; i++) m.snapshot();
    const snapshotCachedMs = (performance.now() - t) / 50;
    t = performance.now();
    for (let i = 0; i < 20; i++) await m.prometheus();
    const prometheusMs = (performance.now() - t) / 20;
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    return {
      metrics_record_request_us: r3(recordUs),
      metrics_snapshot_ms_full_window: r3(snapshotMs),
      metrics_snapshot_ms_cached: r3(snapshotCachedMs),
      metrics_prometheus_scrape_ms: r3(prometheusMs),
      metrics_window_samples: m.snapshot().latency.count,
    };
  } finally {
    m.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchMetricsOverhead().then((r) => console.log(JSON.stringify(r)));
}
