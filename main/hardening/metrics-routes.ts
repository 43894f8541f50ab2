// HTTP routes over the metrics collector, mounted with one call:
//   registerMetricsRoutes(fastify, metrics)
//   GET /v1/metrics                    JSON MetricsSnapshot (default, or ?format=json)
//   GET /v1/metrics?format=prometheus  Prometheus text 0.0.4 (also ?format=text)
//   GET /metrics                       Prometheus text
//   GET /v1/metrics/stream             SSE: one `data: <MetricsSnapshot JSON>` about once a second
// Invalid ?format → 400 invalid_value with param "format". These routes must not call
// metrics.recordRequest (metrics scrapes are not traffic); auth/Host/Origin checks are the server's
// hooks and apply to these routes like to any other.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../common/errors.ts';
import type { Metrics } from './metrics.ts';

type MetricsLike = Pick<Metrics, 'snapshot' | 'prometheus' | 'contentType' | 'subscribe'>;

export const METRICS_ROUTE_PATHS = ['/v1/metrics', '/metrics', '/v1/metrics/stream'] as const;

function sendError(reply: FastifyReply, err: ApiError) {
  return reply.code(err.status).header('content-type', 'application/json; charset=utf-8').send(err.toJSON());
}

async function sendPrometheus(reply: FastifyReply, metrics: MetricsLike) {
  const text = await metrics.prometheus();
  return reply.code(200).header('content-type', metrics.contentType).header('cache-control', 'no-store').send(text);
}

export function registerMetricsRoutes(fastify: FastifyInstance, metrics: MetricsLike, opts: { keepAliveMs?: number } = {}): void {
  fastify.get('/v1/metrics', async (req: FastifyRequest, reply: FastifyReply) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const format = q.format;
    if (format === undefined || format === 'json') {
      return reply.code(200).header('cache-control', 'no-store').send(metrics.snapshot());
    }
    if (format === 'prometheus' || format === 'text') return sendPrometheus(reply, metrics);
    return sendError(reply, new ApiError('invalid_value', "Invalid 'format': expected 'json' or 'prometheus'.", { param: 'format' }));
  });

  fastify.get('/metrics', async (_req: FastifyRequest, reply: FastifyReply) => sendPrometheus(reply, metrics));

  // No automatic HEAD route: a HEAD must not open a never-ending stream.
  fastify.get('/v1/metrics/stream', { exposeHeadRoute: false }, (req: FastifyRequest, reply: FastifyReply) => {
    // Headers set by the server's hooks (CORS, x-request-id) are carried over: hijack bypasses onSend.
    const headers: Record<string, string | number | string[]> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = v as string | number | string[];
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    const write = (chunk: string) => {
      if (closed || res.writableEnded || res.destroyed) return;
      res.write(chunk); // a slow reader only ever has ~1 snapshot/s queued; no unbounded growth in practice
    };
    write('retry: 2000\n\n');
    write(`data: ${JSON.stringify(metrics.snapshot())}\n\n`);
    const unsubscribe = metrics.subscribe((s) => write(`data: ${JSON.stringify(s)}\n\n`));
    const ka = setInterval(() => write(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
    ka.unref();
    const cleanup = () => {
      if (closed) return;
      closed = true;
      clearInterval(ka);
      unsubscribe();
    };
    res.on('close', cleanup);
    res.on('error', cleanup);
    req.raw.on('close', () => {
      if (req.raw.destroyed) cleanup();
    });
  });
}
