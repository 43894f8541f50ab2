// Prometheus gauges for remote upstreams (label `upstream`), read from the same statistics the JSON
// snapshot reports when a scrape collects them. Counts are cumulative since start (gauges, since
// they are read from the upstream's own counters rather than incremented here).
import { Gauge, type Registry } from 'prom-client';
import type { UpstreamMetrics } from '../common/metrics-types.ts';

const STATE_VALUE = { closed: 1, half_open: 0.5, open: 0 } as const;

export function registerUpstreamGauges(registry: Registry, read: () => UpstreamMetrics[]): void {
  const registers = [registry];
  new Gauge({
    name: 'mlxbar_upstream_up',
    help: 'Remote upstream circuit: 1 closed (up), 0.5 half-open (probing), 0 open (down).',
    labelNames: ['upstream'] as const,
    registers,
    collect() {
      this.reset();
      for (const u of read()) this.set({ upstream: u.upstream }, STATE_VALUE[u.state]);
    },
  });
  new Gauge({
    name: 'mlxbar_upstream_requests',
    help: 'Requests sent to a remote upstream since start (cumulative).',
    labelNames: ['upstream'] as const,
    registers,
    collect() {
      this.reset();
      for (const u of read()) this.set({ upstream: u.upstream }, u.requests);
    },
  });
  new Gauge({
    name: 'mlxbar_upstream_errors',
    help: 'Failed requests to a remote upstream since start, by error code (cumulative).',
    labelNames: ['upstream', 'code'] as const,
    registers,
    collect() {
      this.reset();
      for (const u of read()) for (const [code, n] of Object.entries(u.errors)) this.set({ upstream: u.upstream, code }, n);
    },
  });
  const quantiles = (name: string, help: string, pick: (u: UpstreamMetrics) => { p50: number; p95: number; p99: number }) =>
    new Gauge({
      name,
      help,
      labelNames: ['upstream', 'quantile'] as const,
      registers,
      collect() {
        this.reset();
        for (const u of read()) {
          const q = pick(u);
          this.set({ upstream: u.upstream, quantile: '0.5' }, q.p50);
          this.set({ upstream: u.upstream, quantile: '0.95' }, q.p95);
          this.set({ upstream: u.upstream, quantile: '0.99' }, q.p99);
        }
      },
    });
  quantiles('mlxbar_upstream_latency_ms', 'Remote request latency (ms), last requests.', (u) => u.latency_ms);
  quantiles('mlxbar_upstream_ttft_ms', 'Remote time to first token (ms), last requests.', (u) => u.ttft_ms);
  quantiles('mlxbar_upstream_tokens_per_second', 'Remote decode speed (tokens/s), last requests.', (u) => u.tokens_per_second);
}
