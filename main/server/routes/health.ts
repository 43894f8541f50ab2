// GET /health (public, no key): 200 when the engine is ready (or a library model was unloaded after
// idle time: the next request reloads it), else 503 + Retry-After; hooks.getHealth() fields merged.
import type { RoutePlugin } from '../context.ts';
import { packageVersion } from '../../common/version.ts';

/** `service` in /health: how `mlx-bar check` recognises an MLX Bar server on a busy port. */
export const HEALTH_SERVICE = 'mlx-bar';

export const healthRoutes: RoutePlugin = (app, ctx) => {
  ctx.declareRoute('/health', ['GET', 'HEAD']);
  app.get('/health', async (_request, reply) => {
    const state = ctx.engine.state;
    let extra: Record<string, unknown> = {};
    try {
      extra = ctx.hooks.getHealth?.() ?? {};
    } catch {
      extra = {};
    }
    const ms = ctx.models.status();
    const idleUnloaded = ms.state === 'empty' && state === 'stopped';
    const ok = state === 'ready' || idleUnloaded;
    if (!ok) reply.code(503).header('retry-after', String(ctx.config.retryAfterSeconds));
    return {
      status: ok ? 'ok' : state,
      service: HEALTH_SERVICE,
      version: packageVersion(),
      model: ms.loadingId ?? ms.modelId ?? ms.defaultId,
      // Single-folder mode keeps its older shape (no model_state).
      ...(ctx.models.single ? {} : { model_state: ms.state === 'empty' ? 'unloaded' : ms.state }),
      ...(ctx.meta.demo ? { demo: true } : {}),
      uptime_seconds: Math.round((Date.now() - ctx.startedAt) / 1000),
      engine: { state },
      requests: ctx.slots.load,
      // Remote upstreams: id → circuit state; any open one reads as the degradation `upstream_down`.
      ...(ctx.remotes?.size ? { upstreams: Object.fromEntries(ctx.remotes.all().map((u) => [u.id, u.breaker.state])), ...(ctx.remotes.downIds().length ? { upstream_down: ctx.remotes.downIds() } : {}) } : {}),
      ...extra,
    };
  });
};
