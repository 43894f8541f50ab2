// What every route file gets: the resolved config, the hooks, the model seam (a library, or the
// one started model), the life cycle, and a way to declare its paths for 405/OPTIONS.
import type { EngineClient, ModelInfo } from '../engine/types.ts';
import type { ServerConfig } from './config.ts';
import type { ServedModelMeta, ServerHooks } from './hooks.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { ServerModelAdmin, ServerModels } from './models.ts';
import type { WorkSlots } from './slots.ts';

export interface ServerContext {
  config: ServerConfig;
  hooks: ServerHooks;
  meta: ServedModelMeta;
  engine: EngineClient;
  /** The model the server was started with (its id and aliases name the demo model). */
  startedModel: ModelInfo;
  /** Always set: single-folder mode is a library of one model (models.ts singleModel, `single: true`). */
  models: ServerModels & { single?: true };
  modelAdmin?: ServerModelAdmin;
  /** Remote models (main/server/remote): forwarded by the life cycle; listed and health-reported by the routes. */
  remotes?: import('./remote/remotes.ts').Remotes;
  slots: WorkSlots;
  lifecycle: Lifecycle;
  shutdownSignal: AbortSignal;
  /** Date.now() at creation (uptime, /v1/models `created`). */
  startedAt: number;
  /** Declares an API path and its methods: unknown methods get 405 + Allow, OPTIONS lists them. */
  declareRoute(path: string, methods: string[]): void;
}

/** A route family: registers its routes on the server's fastify instance. */
export type RoutePlugin = (app: import('fastify').FastifyInstance, ctx: ServerContext) => void;
