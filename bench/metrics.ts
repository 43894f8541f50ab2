// Bench section `metrics`: what recording one request costs the metrics module (the per-request
// overhead on the hot path), plus snapshot and Prometheus scrape costs over a full 10k window.
// The measurement lives in test/hardening/metrics-overhead.bench.ts (owned with the metrics module).
import { benchMetricsOverhead } from '../test/hardening/metrics-overhead.bench.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

export const metricsSection: BenchSection = {
  name: 'metrics',
  description: 'metrics overhead per request (recordRequest µs), snapshot and Prometheus scrape ms over a full window',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const n = opts.quick ? 10_000 : 100_000;
    const r = await benchMetricsOverhead(n);
    return {
      result: { requests_recorded: n, ...r, note: 'in-process, synthetic RequestRecords; per-request overhead = metrics_record_request_us' },
      ratios: { record_request_us: r.metrics_record_request_us, prometheus_scrape_ms: r.metrics_prometheus_scrape_ms },
    };
  },
};
