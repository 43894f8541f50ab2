// The real headless stack for the dashboard tests: supervised engine process on a tiny random
// model, the real text pipeline, metrics collector and degradation machine, and the fastify server
// serving the built dashboard. Composed here (like `mlx-bar serve` does) so the test holds the
// degradation machine and can make the cache fail through its API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createEngineClient, loadTextPipeline } from '../../main/engine/index.ts';
import { createDegradation, type Degradation } from '../../main/hardening/degradation.ts';
import { createMetrics } from '../../main/hardening/metrics.ts';
import { registerMetricsRoutes } from '../../main/hardening/metrics-routes.ts';
import { createServer, type MlxBarServer } from '../../main/server/index.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';

export interface RealStack {
  url: string;
  modelId: string;
  degradation: Degradation;
  server: MlxBarServer;
  stop(): Promise<void>;
}

export async function startRealStack(opts: { dashboardDir: string; apiKey?: string | null; demo?: boolean }): Promise<RealStack> {
  const modelDir = await buildTinyModel({ family: 'qwen3', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-dash-'));
  const engine = createEngineClient({ log: () => {} });
  let metrics: ReturnType<typeof createMetrics> | null = null;
  let server: MlxBarServer | null = null;
  try {
    const text = await loadTextPipeline(modelDir);
    const modelInfo = await engine.start(modelDir);
    const degradation = createDegradation();
    degradation.attachEngine(engine);
    const m = createMetrics({
      engineStats: () => engine.stats(),
      degradation: () => degradation.status(),
      modelInfo: () => ({ id: engine.model?.id ?? modelInfo.id, state: engine.state, demo: opts.demo ?? false }),
      // no response cache in this stack: reported as off, as `mlx-bar serve` does by default
      responseCacheEnabled: () => false,
    });
    metrics = m;
    server = createServer(
      {
        engine,
        text,
        modelInfo,
        modelMeta: { aliases: [path.basename(modelDir)] },
        hooks: {
          onRequestRecord: (r) => m.recordRequest(r),
          onLoad: (l) => m.setQueue(l.active, l.queued),
          admission: () => degradation.admission(),
          metricsRoutes: (app) => registerMetricsRoutes(app, m),
        },
      },
      { host: '127.0.0.1', port: 0, apiKey: opts.apiKey ?? null, dashboardDir: opts.dashboardDir },
    );
    const addr = await server.listen();
    const s = server;
    return {
      url: addr.url,
      // The engine's model id (no /v1/models call here: it would show up as traffic in the dashboard).
      modelId: modelInfo.id,
      degradation,
      server: s,
      async stop() {
        await s.close(0).catch(() => {});
        await engine.stop().catch(() => {});
        m.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server?.close(0).catch(() => {});
    await engine.stop().catch(() => {});
    metrics?.close();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}
