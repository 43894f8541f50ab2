// The HTTP server (fastify 5 on an explicitly configured node:http server): the composition of
//   gates.ts            shutdown → Host → Origin/CORS → API key → Content-Encoding → JSON body; errors, 404/405
//   lifecycle.ts        THE request life cycle (lease → prompt → response cache → admission → slot → engine → record → release)
//   routes/*.ts         one file per route family (openai-chat, embeddings, models, health, dashboard),
//   anthropic/route.ts  and one per other API; each validates its body, translates it to the internal
//                       request and calls the life cycle with its ResponseFormat.
// Every response carries x-request-id; every error is an ApiError body in the route's API shape.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { ApiError } from '../common/errors.ts';
import type { EngineClient, ModelInfo } from '../engine/types.ts';
import { resolveServerConfig, type ServerConfig } from './config.ts';
import type { ServerContext } from './context.ts';
import { registerGates } from './gates.ts';
import { randomId, SHUTDOWN_REASON } from './generation.ts';
import type { ServedModelMeta, ServerHooks, ServerLoad, ServerTextPipeline } from './hooks.ts';
import { createLifecycle } from './lifecycle.ts';
import type { EarlyBounds } from './early-refusal.ts';
import { PromptPool } from './prompt-pool.ts';
import { singleModel, type ServerModelAdmin, type ServerModels } from './models.ts';
import { WorkSlots } from './slots.ts';
import { registerAnthropicRoutes } from './anthropic/route.ts';
import { registerResponsesRoutes } from './responses/route.ts';
import { ResponseStore } from './responses/store.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { embeddingsRoutes } from './routes/embeddings.ts';
import { ollamaRoutes } from './ollama/route.ts';
import { healthRoutes } from './routes/health.ts';
import { modelRoutes } from './routes/models.ts';
import { openAIChatRoutes } from './routes/openai-chat.ts';
import type { Remotes } from './remote/remotes.ts';

export type { ServerConfig } from './config.ts';
export { resolveServerConfig, DEFAULT_SERVER_CONFIG } from './config.ts';
export type { ServerModels, ServedModelLease, ServedModelsStatus, PublicModel, ServerModelAdmin, PublicPullJob } from './models.ts';
export type { ServerContext, RoutePlugin } from './context.ts';
export { sendApiError } from './gates.ts';

export interface ServerDeps {
  engine: EngineClient;
  text: ServerTextPipeline;
  /** The loaded model (engine.model is preferred when set). */
  modelInfo: ModelInfo;
  modelMeta?: ServedModelMeta;
  hooks?: ServerHooks;
  /**
   * Model library + manager (optional): /v1/models lists it, a request's `model` picks one of
   * its models (loaded/switched on demand), and `text`/`modelInfo` above become the fallback.
   */
  models?: ServerModels;
  /** Downloads + model switching over HTTP (/v1/models/pull, /pulls, /load); 404 without it. */
  modelAdmin?: ServerModelAdmin;
  /** Remote models (settings `remotes`): listed by /v1/models, forwarded by the life cycle, health in /health. */
  remotes?: Remotes;
}

export interface MlxBarServer {
  readonly app: FastifyInstance;
  readonly config: ServerConfig;
  listen(): Promise<{ host: string; port: number; url: string }>;
  /** Stops accepting, lets in-flight work finish for `graceMs`, then cancels it. */
  close(graceMs?: number): Promise<void>;
  address(): { host: string; port: number; url: string } | null;
  readonly load: ServerLoad;
  /** Applies a new maxConcurrent (settings, live): generation slots change at once, running requests keep theirs. */
  setMaxConcurrent(n: number): void;
  /** The prompt workers (load and counters: tests, bench). */
  readonly prompts: PromptPool;
}

function formatUrlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * Fastify on a node:http server configured for hostile clients: header size and timeouts enforced
 * every ≤ 1 s (slowloris), a Host header required, strict parsing; malformed requests get an
 * OpenAI-shaped error on the raw socket.
 */
function createFastify(config: ServerConfig) {
  return Fastify({
    logger: false,
    bodyLimit: config.bodyLimitBytes,
    // Our own 503 (OpenAI-shaped) during shutdown, see onRequest.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
    genReqId: () => randomId('req_'),
    serverFactory: (handler) => {
      const server = http.createServer(
        {
          maxHeaderSize: config.maxHeaderSize,
          headersTimeout: config.headersTimeoutMs,
          requestTimeout: config.requestTimeoutMs,
          keepAliveTimeout: config.keepAliveTimeoutMs,
          // How often node enforces headersTimeout/requestTimeout (default 30 s would let a
          // slowloris socket live far longer than the configured timeouts).
          connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(config.headersTimeoutMs / 2))),
          requireHostHeader: true,
          joinDuplicateHeaders: false,
          insecureHTTPParser: false,
        },
        handler,
      );
      return server;
    },
    clientErrorHandler(err: NodeJS.ErrnoException, socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      let e: ApiError;
      if (err.code === 'HPE_HEADER_OVERFLOW') e = new ApiError('headers_too_large', 'Request headers are too large');
      else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') e = new ApiError('request_timeout', 'Request timed out');
      else e = new ApiError('invalid_request', 'Malformed HTTP request');
      const body = JSON.stringify(e.toJSON());
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nx-request-id: ${randomId('req_')}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    },
  });
}

/**
 * The model a large request would get, for refusing it where its body is parsed (early-refusal.ts):
 * only while a model is served without a load or switch pending and the engine is ready (else the
 * life cycle answers 503 first), and only for names no remote model takes. Null: the route and the
 * life cycle decide, as always.
 */
function earlyBoundsOf(models: ServerModels, deps: ServerDeps): () => EarlyBounds | null {
  return () => {
    const now = models.servingNow?.() ?? null;
    if (!now || deps.engine.state !== 'ready' || typeof deps.engine.embed !== 'function') return null;
    const names = now.names.filter((n) => !deps.remotes?.get(n));
    return { contextLength: now.info.contextLength, hiddenSize: now.info.hiddenSize, names };
  };
}

/** Every route family (metrics and settings come later, through hooks.metricsRoutes). */
function registerRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { config, lifecycle } = ctx;
  openAIChatRoutes(app, ctx);
  ctx.declareRoute('/v1/messages', ['POST']);
  ctx.declareRoute('/v1/messages/count_tokens', ['POST']);
  registerAnthropicRoutes(app, { generate: lifecycle.generate, countChatTokens: lifecycle.countChatTokens, maxStopLength: config.maxStopLength });
  ctx.declareRoute('/v1/responses', ['POST']);
  registerResponsesRoutes(app, { generate: lifecycle.generate, maxStopLength: config.maxStopLength, store: new ResponseStore() });
  const embeddings = embeddingsRoutes(app, ctx);
  ollamaRoutes(app, ctx, embeddings);
  modelRoutes(app, ctx);
  healthRoutes(app, ctx);
  dashboardRoutes(app, ctx);
}

export function createServer(deps: ServerDeps, partialConfig: Partial<ServerConfig> = {}): MlxBarServer {
  const config = resolveServerConfig(partialConfig);
  const hooks: ServerHooks = deps.hooks ?? {};
  const shutdown = new AbortController();
  let closing = false;
  let bound: { host: string; port: number; url: string } | null = null;

  const slots = new WorkSlots(config.maxConcurrent, config.maxQueue, config.retryAfterSeconds, (load) => {
    try {
      hooks.onLoad?.(load);
    } catch {
      // metrics must not break scheduling
    }
  });
  const selfOrigins = () => {
    if (!bound) return [];
    const p = bound.port;
    return [`http://127.0.0.1:${p}`, `http://localhost:${p}`, `http://[::1]:${p}`, `http://${formatUrlHost(config.host)}:${p}`];
  };

  const app = createFastify(config);

  // Large bodies are parsed and large prompts rendered + tokenized in worker threads; as many may
  // wait as for a generation slot.
  // Single-folder mode is a library of one model: every route goes through the same lease.
  const models = deps.models ?? singleModel(deps);
  const earlyBounds = earlyBoundsOf(models, deps);
  const prompts = new PromptPool({
    workers: config.promptWorkers,
    maxQueue: config.maxQueue,
    inlineMaxChars: config.promptInlineMaxChars,
    retryAfterSeconds: config.retryAfterSeconds,
  });
  const routes = new Map<string, string[]>();
  registerGates(app, {
    config,
    hooks,
    routes,
    isClosing: () => closing,
    selfOrigins,
    parseLargeJson: (buf, maxDepth, path) => prompts.parseJson(buf, { maxDepth, path, early: { maxStopLength: config.maxStopLength, bounds: earlyBounds() } }),
  });

  const lifecycle = createLifecycle({
    engine: deps.engine,
    models,
    hooks,
    slots,
    defaultMaxTokens: config.defaultMaxTokens,
    keepAliveIntervalMs: config.keepAliveIntervalMs,
    retryAfterSeconds: config.retryAfterSeconds,
    shutdownSignal: shutdown.signal,
    remotes: deps.remotes,
    localFallback: deps.models !== undefined,
    prompts,
  });
  const ctx: ServerContext = {
    config,
    hooks,
    meta: deps.modelMeta ?? {},
    engine: deps.engine,
    startedModel: deps.modelInfo,
    models,
    modelAdmin: deps.modelAdmin,
    remotes: deps.remotes,
    slots,
    lifecycle,
    shutdownSignal: shutdown.signal,
    startedAt: Date.now(),
    declareRoute: (path, methods) => {
      routes.set(path, [...new Set([...(routes.get(path) ?? []), ...methods])]);
    },
  };

  registerRoutes(app, ctx);

  let metricsRegistered: Promise<void> | null = null;
  const registerMetrics = () => {
    if (!metricsRegistered) metricsRegistered = Promise.resolve(hooks.metricsRoutes?.(app)).then(() => undefined);
    return metricsRegistered;
  };

  return {
    app,
    config,
    prompts,
    get load() {
      return slots.load;
    },
    address: () => bound,
    setMaxConcurrent(n: number) {
      slots.setLimit(n);
      config.maxConcurrent = n;
    },
    async listen() {
      await registerMetrics();
      await app.listen({ host: config.host, port: config.port });
      const addr = app.server.address() as AddressInfo;
      const host = formatUrlHost(config.host);
      bound = { host: config.host, port: addr.port, url: `http://${host}:${addr.port}` };
      return bound;
    },
    async close(graceMs = 3000) {
      if (closing) return;
      closing = true;
      const timer = setTimeout(() => shutdown.abort(SHUTDOWN_REASON), graceMs);
      timer.unref();
      try {
        if (!bound) shutdown.abort(SHUTDOWN_REASON);
        await app.close();
      } finally {
        clearTimeout(timer);
        shutdown.abort(SHUTDOWN_REASON);
        await prompts.close();
      }
    },
  };
}
