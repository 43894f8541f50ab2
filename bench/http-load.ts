// Child process of the `cache-http` bench: drives one request with autocannon and prints ONE JSON
// object on stdout. A separate process so the load generator does not share the server's event
// loop (that would charge the client's CPU to the server's latency). Latencies are collected from
// autocannon's per-response event (sub-millisecond), because its own histogram stores whole ms.
// argv[2]: JSON { url, connections, durationS, body, overallRate? } (overallRate: requests/s across
// all connections — an open, paced load instead of a closed loop at saturation)
import { createRequire } from 'node:module';

// No bundled typings for autocannon; the API surface used here is tiny.
const autocannon = createRequire(import.meta.url)('autocannon');

const cfg = JSON.parse(process.argv[2]) as { url: string; connections: number; durationS: number; body: string; overallRate?: number };
const latencies: number[] = [];
const statuses: Record<string, number> = {};
const instance = autocannon(
  {
    url: cfg.url,
    connections: cfg.connections,
    duration: cfg.durationS,
    ...(cfg.overallRate ? { overallRate: cfg.overallRate } : {}),
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: cfg.body,
  },
  (err: Error | null, result: any) => {
    if (err) {
      process.stderr.write(`autocannon failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(
      JSON.stringify({
        latencies,
        statuses,
        requests_total: result.requests.total,
        requests_per_s_avg: result.requests.average,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        autocannon_latency_ms: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
      }) + '\n',
    );
  },
);
instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
  statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
  if (statusCode === 200) latencies.push(responseTime);
});
