// The OpenAI-compatible HTTP server (fastify 5 on an explicitly configured node:http server).
//
// Order of the gates for every request, all before the body is read:
//   shutdown? → Host (DNS rebinding) → Origin (browser CSRF) + CORS/preflight → API key →
//   Content-Encoding; then the JSON body parser (content type, size, UTF-8, depth, proto keys),
//   then validation → model name → engine state → prompt tokens vs context → response cache →
//   admission (degradation) → queue slot → engine.
// Every response carries x-request-id; every error is an ApiError body.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError, toApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { EngineClient, GenerationConstraint, ModelInfo, SamplingParams } from '../engine/types.ts';
import { lazyToolCallConstraint, toolCallConstraint, ToolSchemaError } from '../engine/constrain/index.ts';
import { resolveServerConfig, isLoopbackHost, type ServerConfig } from './config.ts';
import type { ResponseCacheKey, ServedModelMeta, ServerHooks, ServerLoad, ServerTextPipeline } from './hooks.ts';
import { parseJsonBody } from './json-body.ts';
import { checkContentEncoding, checkHost, checkOrigin, makeApiKeyCheck } from './security.ts';
import { WorkSlots } from './slots.ts';
import { newTrack, toRecord, type RequestTrack } from './track.ts';
import { validateChatRequest, validateCompletionRequest, type ChatRequest, type CompletionRequest } from './validate.ts';
import { randomId, runGeneration, SHUTDOWN_REASON, type PreparedGeneration, type ResponseFormat } from './generation.ts';
import { openAIFormat } from './openai-writer.ts';
import { promptOpensThinking } from './output-split.ts';
import { DASHBOARD_SECURITY_HEADERS, readDashboardFile } from './static.ts';
import type { ServedModelLease, ServerModelAdmin, ServerModels } from './models.ts';
import { registerEmbeddingsRoute } from './embeddings.ts';
import { registerAnthropicRoutes } from './anthropic/route.ts';
import { registerResponsesRoutes } from './responses/route.ts';
import { ResponseStore } from './responses/store.ts';
import { errorBodyFor } from './error-shapes.ts';

export type { ServerConfig } from './config.ts';
export { resolveServerConfig, DEFAULT_SERVER_CONFIG } from './config.ts';
export type { ServerModels, ServedModelLease, ServedModelsStatus, PublicModel, ServerModelAdmin, PublicPullJob } from './models.ts';

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
}

export interface MlxBarServer {
  readonly app: FastifyInstance;
  readonly config: ServerConfig;
  listen(): Promise<{ host: string; port: number; url: string }>;
  /** Stops accepting, lets in-flight work finish for `graceMs`, then cancels it. */
  close(graceMs?: number): Promise<void>;
  address(): { host: string; port: number; url: string } | null;
  readonly load: ServerLoad;
}

/** API routes and their methods (for 405 + Allow). */
const ROUTES: Record<string, string[]> = {
  '/v1/chat/completions': ['POST'],
  '/v1/completions': ['POST'],
  '/v1/embeddings': ['POST'],
  '/v1/models': ['GET', 'HEAD'],
  '/v1/models/pull': ['POST'],
  '/v1/models/pulls': ['GET', 'HEAD'],
  '/v1/models/load': ['POST'],
  '/v1/messages': ['POST'],
  '/v1/responses': ['POST'],
  '/v1/messages/count_tokens': ['POST'],
  '/health': ['GET', 'HEAD'],
};

/** Not traffic: not reported as RequestRecords. */
function isUnrecorded(path: string): boolean {
  return (
    path === '/health' ||
    // The dashboard polls download progress about once a second: not traffic.
    path === '/v1/models/pulls' ||
    path === '/metrics' ||
    path.startsWith('/v1/metrics') ||
    path === '/' ||
    path === '/dashboard' ||
    path.startsWith('/dashboard/')
  );
}

/** Public without an API key: health and the static dashboard files (the data behind it is not). */
function isPublic(path: string): boolean {
  return path === '/health' || path === '/' || path === '/dashboard' || path.startsWith('/dashboard/');
}

declare module 'fastify' {
  interface FastifyRequest {
    track: RequestTrack | null;
  }
}

function rawPath(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function formatUrlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export function sendApiError(reply: FastifyReply, err: ApiError): FastifyReply {
  const track = reply.request.track;
  if (track) track.errorCode = err.code;
  if (err.retryAfter !== undefined) {
    reply.header('retry-after', String(err.retryAfter));
    reply.header('retry-after-ms', String(err.retryAfter * 1000));
  }
  // Each API's routes answer in that API's error shape (Anthropic's for /v1/messages…), gates included.
  return reply.code(err.status).type('application/json; charset=utf-8').send(errorBodyFor(rawPath(reply.request.raw), err, reply.request.id));
}

/** Maps fastify's own errors (parser, limits) onto the taxonomy. */
function fromFastifyError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const code = (err as { code?: string })?.code;
  const status = (err as { statusCode?: number })?.statusCode;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('body_too_large', 'Request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
    case 'FST_ERR_CTP_EMPTY_TYPE':
      return new ApiError('unsupported_media_type', 'Content-Type must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('invalid_json', 'Request body is empty; expected a JSON object');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('invalid_request', 'Content-Length does not match the body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('invalid_json', 'Request body is not valid JSON');
  }
  if ((err as { name?: string })?.name === 'AbortError' || code === 'ECONNRESET') {
    return new ApiError('invalid_request', 'Request aborted');
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 408) return new ApiError('request_timeout', 'Request timed out');
    return new ApiError('invalid_request', 'Invalid request', { status });
  }
  return toApiError(err);
}

export function createServer(deps: ServerDeps, partialConfig: Partial<ServerConfig> = {}): MlxBarServer {
  const config = resolveServerConfig(partialConfig);
  const hooks: ServerHooks = deps.hooks ?? {};
  const meta: ServedModelMeta = deps.modelMeta ?? {};
  const startedAt = Date.now();
  const modelCreated = meta.created ?? Math.floor(startedAt / 1000);
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
  const checkKey = makeApiKeyCheck(config.apiKey);
  const loopbackOnly = isLoopbackHost(config.host);
  const selfOrigins = () => {
    if (!bound) return [];
    const p = bound.port;
    return [`http://127.0.0.1:${p}`, `http://localhost:${p}`, `http://[::1]:${p}`, `http://${formatUrlHost(config.host)}:${p}`];
  };

  const app = Fastify({
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

  app.decorateRequest('track', null);

  // ---------------------------------------------------------------- gates
  app.addHook('onRequest', async (request, reply) => {
    const req = request.raw;
    const path = rawPath(req);
    reply.header('x-request-id', request.id);
    const route = request.routeOptions?.url ?? 'unknown';
    const track = newTrack(request.id, route, !isUnrecorded(path));
    request.track = track;
    if (track.record && hooks.onRequestRecord) {
      const res = reply.raw;
      res.once('close', () => {
        const endedAt = performance.now();
        const aborted = !res.writableFinished;
        // 499 (nginx's "client closed request") when the client left before any response.
        const status = res.headersSent ? res.statusCode : 499;
        const emit = () => {
          try {
            hooks.onRequestRecord!(toRecord(track, status, aborted, endedAt));
          } catch {
            // metrics must never break a request
          }
        };
        if (track.settled) track.settled.then(emit, emit);
        else emit();
      });
    }
    if (closing) {
      reply.header('connection', 'close');
      return sendApiError(reply, new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: config.retryAfterSeconds }));
    }
    const hostErr = checkHost(req, { loopbackOnly, allowedHosts: config.allowedHosts });
    if (hostErr) return sendApiError(reply, hostErr);
    const origin = checkOrigin(req, { allowed: config.allowedOrigins, self: selfOrigins });
    if (!origin.ok) return sendApiError(reply, origin.error);
    if (origin.cors) {
      reply.header('access-control-allow-origin', origin.cors);
      reply.header('vary', 'Origin');
      reply.header('access-control-expose-headers', 'x-request-id, retry-after, retry-after-ms');
    }
    if (request.method === 'OPTIONS') {
      // Preflight (or a plain OPTIONS): answered here, no auth, no work.
      const allow = ROUTES[path]?.join(', ') ?? 'GET, POST';
      reply.header('allow', `${allow}, OPTIONS`);
      if (origin.cors) {
        reply.header('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
        const wanted = req.headers['access-control-request-headers'];
        const safe = typeof wanted === 'string' && /^[A-Za-z0-9-]+(\s*,\s*[A-Za-z0-9-]+)*$/.test(wanted) ? wanted : 'authorization, content-type';
        reply.header('access-control-allow-headers', safe);
        reply.header('access-control-max-age', '600');
      }
      return reply.code(204).send();
    }
    if (!isPublic(path)) {
      const keyErr = checkKey(req);
      if (keyErr) return sendApiError(reply, keyErr);
    }
    const encErr = checkContentEncoding(req);
    if (encErr) return sendApiError(reply, encErr);
  });

  // ---------------------------------------------------------------- body parsing
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const ct = String(request.headers['content-type'] ?? '');
    const charset = /charset=([^;\s]+)/i.exec(ct)?.[1]?.toLowerCase().replace(/"/g, '');
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      return done(new ApiError('unsupported_media_type', 'Only UTF-8 JSON bodies are accepted'), undefined);
    }
    try {
      done(null, parseJsonBody(body as Buffer, config.maxJsonDepth));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  app.setErrorHandler((err, _request, reply) => {
    const apiErr = fromFastifyError(err);
    if (apiErr.code === 'internal_error') console.error(`[server] unexpected error: ${sanitizeMessage(err)}`);
    return sendApiError(reply, apiErr);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = rawPath(request.raw);
    const allowed = ROUTES[path];
    if (allowed) {
      reply.header('allow', [...allowed, 'OPTIONS'].join(', '));
      return sendApiError(reply, new ApiError('method_not_allowed', `Method ${request.method.slice(0, 10)} is not allowed on this route`));
    }
    return sendApiError(reply, new ApiError('not_found', 'Unknown route'));
  });

  // ---------------------------------------------------------------- helpers
  const currentModel = (): ModelInfo => deps.engine.model ?? deps.modelInfo;
  const modelNames = () => {
    const m = currentModel();
    return new Set([m.id, deps.modelInfo.id, ...(meta.aliases ?? [])]);
  };

  function matchModel(requested: string | null): string {
    const id = currentModel().id;
    if (requested === null || requested === '') return id;
    if (modelNames().has(requested)) return id;
    // Echo a short, printable version of what was asked for (never used as a path).
    const shown = requested.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
    throw new ApiError('model_not_found', `The model '${shown}' does not exist. Available: ${id}`, { param: 'model' });
  }

  function requireEngineReady(): void {
    const state = deps.engine.state;
    if (state === 'ready') return;
    const retryAfter = config.retryAfterSeconds;
    if (state === 'loading') throw new ApiError('model_loading', 'The model is loading; retry shortly', { retryAfter });
    if (state === 'restarting') throw new ApiError('engine_restarting', 'The engine is restarting; retry shortly', { retryAfter });
    throw new ApiError('engine_unavailable', 'The engine is not running', { retryAfter: state === 'failed' ? 30 : retryAfter });
  }

  function encodePrompt(r: ChatRequest | CompletionRequest, text: ServerTextPipeline): { ids: number[]; text: string | null } {
    try {
      if (r.kind === 'chat') {
        const templateKwargs = templateKwargsFor(r, text);
        return text.encodeChat(r.messages, { ...(r.tools ? { tools: r.tools } : {}), ...(templateKwargs ? { templateKwargs } : {}) });
      }
      if (typeof r.prompt === 'string') return { ids: text.encode(r.prompt), text: null };
      return { ids: r.prompt, text: null };
    } catch (err) {
      if (err instanceof ApiError) throw err;
      // Template errors (e.g. "roles must alternate") are the client's to fix: 400, sanitized.
      throw new ApiError('invalid_request', `Could not render the prompt: ${(err as Error)?.message ?? 'template error'}`, {
        param: r.kind === 'chat' ? 'messages' : 'prompt',
      });
    }
  }

  /**
   * Template variables of a chat request: the client's `chat_template_kwargs`, plus one default of
   * ours — when the output is forced (response_format JSON, or a required/named tool call) a
   * template with a thinking switch (Qwen3's `enable_thinking`) renders its non-thinking prompt,
   * since the constraint would not let the model open a think block anyway. An explicit
   * `enable_thinking` from the client always wins.
   */
  function templateKwargsFor(r: ChatRequest, text: ServerTextPipeline): Record<string, unknown> | null {
    const forced = r.constraint !== null || (r.tools !== null && (r.toolChoice === 'required' || typeof r.toolChoice === 'object'));
    const kwargs = r.templateKwargs ? { ...r.templateKwargs } : {};
    if (forced && !('enable_thinking' in kwargs) && text.templateUses?.('enable_thinking')) kwargs.enable_thinking = false;
    return Object.keys(kwargs).length ? kwargs : null;
  }

  /**
   * The decoding constraint of a request: a forced tool call (tool_choice 'required' or a named
   * function) in the model's own tool-call format, else the response_format's JSON constraint,
   * else (tools with tool_choice 'auto') a lazy one that holds calls the model starts to the schemas.
   */
  function constraintFor(r: ChatRequest | CompletionRequest, text: ServerTextPipeline): GenerationConstraint | null {
    if (r.kind === 'chat' && r.tools && (r.toolChoice === 'required' || typeof r.toolChoice === 'object')) {
      let c: GenerationConstraint | null;
      try {
        c = toolCallConstraint(text.toolCallFormat, r.tools);
      } catch (err) {
        if (err instanceof ToolSchemaError) throw new ApiError('invalid_value', `tools: ${err.message}`, { param: 'tools' });
        throw err;
      }
      if (!c) {
        throw new ApiError('unsupported_parameter', "This model's chat template has no tool-call format, so a tool call cannot be forced", {
          param: 'tool_choice',
        });
      }
      return c;
    }
    if (r.constraint) return r.constraint;
    // tool_choice auto: a call the model starts on its own is held to the tools' schemas (lazily,
    // from its `<tool_call>` marker on); plain answers stay free.
    if (r.kind === 'chat' && r.tools && r.toolChoice === 'auto') return lazyToolCallConstraint(text.toolCallFormat, r.tools);
    return null;
  }

  function prepare(
    r: ChatRequest | CompletionRequest,
    track: RequestTrack,
    lease: ServedModelLease | null,
    format: ResponseFormat = openAIFormat,
  ): PreparedGeneration {
    const modelId = lease ? lease.id : matchModel(r.model);
    requireEngineReady();
    const info = lease ? lease.info : currentModel();
    const prompt = encodePrompt(r, lease ? lease.text : deps.text);
    const promptIds = prompt.ids;
    if (promptIds.length === 0) throw new ApiError('invalid_value', 'The prompt is empty', { param: r.kind === 'chat' ? 'messages' : 'prompt' });
    track.promptTokens = promptIds.length;
    const ctx = info.contextLength;
    if (promptIds.length >= ctx) {
      throw new ApiError(
        'context_length_exceeded',
        `This model's maximum context length is ${ctx} tokens, but the prompt has ${promptIds.length} tokens`,
        { param: r.kind === 'chat' ? 'messages' : 'prompt' },
      );
    }
    const remaining = ctx - promptIds.length;
    const maxTokens = Math.min(r.maxTokens ?? config.defaultMaxTokens, remaining);
    const sampling: SamplingParams = { ...r.sampling, maxTokens };
    if (sampling.seed === undefined) delete sampling.seed;
    const toolsActive = r.kind === 'chat' && r.tools !== null && (lease ? lease.text : deps.text).toolCallFormat !== 'none';
    const constraint = constraintFor(r, lease ? lease.text : deps.text);
    const deterministic = sampling.temperature === 0 || sampling.seed !== undefined;
    // Requests with logprobs bypass the response cache (it stores text only; replaying without
    // the numbers would be wrong, and a key that includes them would still store none).
    const cacheKey: ResponseCacheKey | null =
      deterministic && r.logprobs === null && hooks.responseCache
        ? { route: r.kind, modelFingerprint: info.fingerprint, promptIds, sampling, toolsActive, ...(constraint ? { constraint } : {}) }
        : null;
    return {
      route: r.kind,
      id: randomId(format.idPrefix ?? (r.kind === 'chat' ? 'chatcmpl-' : 'cmpl-')),
      created: Math.floor(Date.now() / 1000),
      modelId,
      systemFingerprint: `fp_${info.fingerprint.slice(0, 12)}`,
      promptIds,
      sampling,
      stream: r.stream,
      includeUsage: r.includeUsage,
      toolsActive,
      constraint,
      logprobs: r.logprobs,
      cacheKey,
      // Logprob tokens concatenate to `content`: with logprobs the think block stays in it.
      reasoning: r.kind === 'chat' && r.splitReasoning && r.logprobs === null,
      startInThinking: prompt.text !== null && promptOpensThinking(prompt.text),
      format,
    };
  }

  const genEnv = {
    engine: deps.engine,
    text: deps.text,
    hooks,
    slots,
    keepAliveIntervalMs: config.keepAliveIntervalMs,
    retryAfterSeconds: config.retryAfterSeconds,
    shutdownSignal: shutdown.signal,
  };

  async function handleGeneration(request: FastifyRequest, reply: FastifyReply, kind: 'chat' | 'completions') {
    const body = request.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object') throw new ApiError('invalid_json', 'Request body must be a JSON object');
    const r =
      kind === 'chat'
        ? validateChatRequest(body, { maxStopLength: config.maxStopLength })
        : validateCompletionRequest(body, {
            maxStopLength: config.maxStopLength,
            // Library mode: token ids are checked against the leased model's vocabulary below.
            vocabSize: deps.models ? Number.MAX_SAFE_INTEGER : currentModel().vocabSize,
          });
    await generate(request, reply, r, openAIFormat);
  }

  /**
   * The request life cycle of every generating API after its own validation: model lease → prompt
   * → context check → (runGeneration) response cache → admission → slot → engine → the API's format.
   */
  async function generate(request: FastifyRequest, reply: FastifyReply, r: ChatRequest | CompletionRequest, format: ResponseFormat): Promise<void> {
    const track = request.track!;
    track.stream = r.stream;
    if (!deps.models) {
      const prep = prepare(r, track, null, format);
      const run = runGeneration(genEnv, prep, reply, track);
      track.settled = run;
      await run;
      return;
    }
    await withLease(reply, r.model, async (lease) => {
      if (r.kind === 'completions' && typeof r.prompt !== 'string' && r.prompt.some((t) => t >= lease.info.vocabSize)) {
        throw new ApiError('invalid_value', 'token ids must be integers within the vocabulary', { param: 'prompt' });
      }
      const prep = prepare(r, track, lease, format);
      const run = runGeneration({ ...genEnv, text: lease.text }, prep, reply, track);
      track.settled = run;
      await run;
    });
  }

  /**
   * Library mode: lease the named model (loads or switches it; a request for the loaded model gets
   * it at once). The wait for a load is part of this request's latency; the lease keeps the model
   * from being unloaded or switched away until `fn` has ended. A client that left while the model
   * was loading gets nothing (recorded as 499).
   */
  async function withLease(reply: FastifyReply, model: string | null, fn: (lease: ServedModelLease) => Promise<void>): Promise<void> {
    let clientGone = false;
    const onGone = () => {
      clientGone = true;
    };
    reply.raw.once('close', onGone);
    let lease: ServedModelLease;
    try {
      lease = await deps.models!.acquire(model === null || model === '' ? null : model);
    } finally {
      reply.raw.off('close', onGone);
    }
    try {
      if (clientGone) {
        reply.hijack();
        return;
      }
      await fn(lease);
    } finally {
      lease.release();
    }
  }

  /** Prompt tokens of a chat request as it would run (template, tools, thinking switch): count_tokens. */
  async function countChatTokens(reply: FastifyReply, r: ChatRequest): Promise<number | null> {
    if (!deps.models) {
      matchModel(r.model);
      return encodePrompt(r, deps.text).ids.length;
    }
    let n: number | null = null;
    await withLease(reply, r.model, async (lease) => {
      n = encodePrompt(r, lease.text).ids.length;
    });
    return n;
  }

  // ---------------------------------------------------------------- routes
  app.post('/v1/chat/completions', (request, reply) => handleGeneration(request, reply, 'chat'));
  app.post('/v1/completions', (request, reply) => handleGeneration(request, reply, 'completions'));
  registerAnthropicRoutes(app, { generate, countChatTokens, maxStopLength: config.maxStopLength });
  registerResponsesRoutes(app, { generate, maxStopLength: config.maxStopLength, store: new ResponseStore() });
  registerEmbeddingsRoute(app, {
    engine: deps.engine,
    text: deps.text,
    models: deps.models,
    hooks,
    slots,
    retryAfterSeconds: config.retryAfterSeconds,
    shutdownSignal: shutdown.signal,
    matchModel,
    requireEngineReady,
    currentModel,
  });

  const startNames = new Set([deps.modelInfo.id, ...(meta.aliases ?? [])]);
  app.get('/v1/models', async () => {
    if (deps.models) {
      const loadedId = deps.models.status().modelId;
      const list = await deps.models.list();
      return {
        object: 'list',
        data: list.map(({ id, ...extra }) => {
          // Only the started model is the demo one; other library models are real.
          const demo = meta.demo === true && (startNames.has(id) || (typeof extra.folder === 'string' && startNames.has(extra.folder)));
          return {
            id,
            object: 'model',
            created: modelCreated,
            owned_by: demo ? 'mlx-bar-demo (random weights, output is gibberish)' : 'mlx-bar',
            ...(demo ? { demo: true } : {}),
            ...extra,
            loaded: id === loadedId,
          };
        }),
      };
    }
    const m = currentModel();
    return {
      object: 'list',
      data: [
        {
          id: m.id,
          object: 'model',
          created: modelCreated,
          owned_by: meta.demo ? 'mlx-bar-demo (random weights, output is gibberish)' : 'mlx-bar',
          ...(meta.demo ? { demo: true } : {}),
          context_length: m.contextLength,
          architecture: m.architecture,
        },
      ],
    };
  });

  // Model management (dashboard Models page): downloads into the library and switching models.
  const admin = (): ServerModelAdmin => {
    if (!deps.modelAdmin) throw new ApiError('not_found', 'Model management is not available on this server');
    return deps.modelAdmin;
  };
  const bodyString = (body: unknown, field: string): string => {
    const v = (body as Record<string, unknown> | null)?.[field];
    if (v === undefined || v === null || v === '') throw new ApiError('missing_required_parameter', `Missing "${field}"`, { param: field });
    if (typeof v !== 'string') throw new ApiError('invalid_value', `"${field}" must be a string`, { param: field });
    return v;
  };
  app.post('/v1/models/pull', async (request, reply) => {
    const a = admin();
    const repo = bodyString(request.body, 'repo');
    const { job, created } = a.pull(repo);
    return reply.code(created ? 202 : 200).send({ job });
  });
  app.get('/v1/models/pulls', async () => ({ object: 'list', data: admin().pulls() }));
  app.delete('/v1/models/pulls/:id', async (request) => {
    const id = String((request.params as { id?: string }).id ?? '');
    const job = /^[\w-]{1,64}$/.test(id) ? admin().cancelPull(id) : null;
    if (!job) throw new ApiError('not_found', 'No such download');
    return { job };
  });
  app.post('/v1/models/load', async (request) => {
    const a = admin();
    const model = bodyString(request.body, 'model');
    const entry = await a.load(model);
    return { object: 'model', ...entry, loaded: true };
  });

  app.get('/health', async (_request, reply) => {
    const state = deps.engine.state;
    const m = deps.engine.model ?? deps.modelInfo;
    let extra: Record<string, unknown> = {};
    try {
      extra = hooks.getHealth?.() ?? {};
    } catch {
      extra = {};
    }
    // Library mode: a model unloaded after idle time is not an error; the next request reloads it.
    const ms = deps.models?.status() ?? null;
    const idleUnloaded = ms !== null && ms.state === 'empty' && state === 'stopped';
    const ok = state === 'ready' || idleUnloaded;
    if (!ok) reply.code(503).header('retry-after', String(config.retryAfterSeconds));
    return {
      status: ok ? 'ok' : state,
      model: ms ? (ms.loadingId ?? ms.modelId ?? ms.defaultId) : (m?.id ?? null),
      ...(ms ? { model_state: ms.state === 'empty' ? 'unloaded' : ms.state } : {}),
      ...(meta.demo ? { demo: true } : {}),
      uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
      engine: { state },
      requests: slots.load,
      ...extra,
    };
  });

  // Dashboard (static vite build). `/` is a convenience redirect for people opening the URL.
  app.get('/', async (_request, reply) => reply.redirect('/dashboard/', 302));
  app.get('/dashboard', async (_request, reply) => reply.redirect('/dashboard/', 301));
  app.get('/dashboard/*', async (request, reply) => {
    const rest = rawPath(request.raw).slice('/dashboard/'.length);
    const file = await readDashboardFile(config.dashboardDir, rest);
    for (const [k, v] of Object.entries(DASHBOARD_SECURITY_HEADERS)) reply.header(k, v);
    reply.header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    return reply.type(file.type).send(file.body);
  });

  let metricsRegistered: Promise<void> | null = null;
  const registerMetrics = () => {
    if (!metricsRegistered) metricsRegistered = Promise.resolve(hooks.metricsRoutes?.(app)).then(() => undefined);
    return metricsRegistered;
  };

  return {
    app,
    config,
    get load() {
      return slots.load;
    },
    address: () => bound,
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
      }
    },
  };
}
