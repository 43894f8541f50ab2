// The gates every request passes before any route runs, in this order and all before the body is
// read: shutdown? → Host (DNS rebinding) → Origin (browser CSRF) + CORS/preflight → API key →
// Content-Encoding; then the JSON body parser (content type, size, UTF-8, depth, proto keys; bodies
// over LARGE_BODY_BYTES in a prompt worker thread). Also
// the error handler (fastify's own errors mapped onto ApiError), 404/405, and the per-request track
// that becomes one RequestRecord. Each API's error shape comes from error-shapes.ts.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, toApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { isLoopbackHost, type ServerConfig } from './config.ts';
import { errorBodyFor } from './error-shapes.ts';
import type { ServerHooks } from './hooks.ts';
import { readBody } from './body-reader.ts';
import { parseJsonBody } from './json-body.ts';
import { checkContentEncoding, checkHost, checkOrigin, makeApiKeyCheck } from './security.ts';
import { newTrack, toRecord, type RequestTrack } from './track.ts';

declare module 'fastify' {
  interface FastifyRequest {
    track: RequestTrack | null;
  }
}

export interface GatesContext {
  config: ServerConfig;
  hooks: ServerHooks;
  /** API routes and their methods (for 405 + Allow and OPTIONS); route files declare theirs. */
  routes: Map<string, string[]>;
  isClosing(): boolean;
  /** The server's own origins (always allowed; known once bound). */
  selfOrigins(): string[];
  /**
   * Parses a body of more than LARGE_BODY_BYTES off the event loop (the prompt workers): same
   * checks and errors as parseJsonBody. Absent: every body is parsed inline. `body` may be moved to
   * the worker (body-reader.ts gives a large body its own ArrayBuffer): the caller must not read it after.
   */
  parseLargeJson?(body: Buffer, maxDepth: number, path: string): Promise<Record<string, unknown>>;
}

/**
 * Bodies above this are parsed in a prompt worker: an 8 MB body (UTF-8 check, depth scan,
 * JSON.parse, proto-key scan) held the event loop — /health, every stream — for 60-270 ms.
 * Below it a worker round trip costs more than the parse.
 */
export const LARGE_BODY_BYTES = 256 * 1024;

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

export function rawPath(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
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

export function registerGates(app: FastifyInstance, ctx: GatesContext): void {
  const checkKey = makeApiKeyCheck(ctx.config.apiKey);
  const loopbackOnly = isLoopbackHost(ctx.config.host);
  app.decorateRequest('track', null);

  app.addHook('onRequest', async (request, reply) => {
    const req = request.raw;
    const path = rawPath(req);
    reply.header('x-request-id', request.id);
    const route = request.routeOptions?.url ?? 'unknown';
    const track = newTrack(request.id, route, !isUnrecorded(path));
    request.track = track;
    if (track.record && ctx.hooks.onRequestRecord) {
      const res = reply.raw;
      res.once('close', () => {
        const endedAt = performance.now();
        const aborted = !res.writableFinished;
        // 499 (nginx's "client closed request") when the client left before any response.
        const status = res.headersSent ? res.statusCode : 499;
        const emit = () => {
          try {
            ctx.hooks.onRequestRecord!(toRecord(track, status, aborted, endedAt));
          } catch {
            // metrics must never break a request
          }
        };
        if (track.settled) track.settled.then(emit, emit);
        else emit();
      });
    }
    if (ctx.isClosing()) {
      reply.header('connection', 'close');
      return sendApiError(reply, new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: ctx.config.retryAfterSeconds }));
    }
    const hostErr = checkHost(req, { loopbackOnly, allowedHosts: ctx.config.allowedHosts });
    if (hostErr) return sendApiError(reply, hostErr);
    const origin = checkOrigin(req, { allowed: ctx.config.allowedOrigins, self: ctx.selfOrigins });
    if (!origin.ok) return sendApiError(reply, origin.error);
    if (origin.cors) {
      reply.header('access-control-allow-origin', origin.cors);
      reply.header('vary', 'Origin');
      reply.header('access-control-expose-headers', 'x-request-id, retry-after, retry-after-ms');
    }
    if (request.method === 'OPTIONS') {
      // Preflight (or a plain OPTIONS): answered here, no auth, no work.
      const allow = ctx.routes.get(path)?.join(', ') ?? 'GET, POST';
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
  app.addContentTypeParser('application/json', (request, payload, done) => {
    const ct = String(request.headers['content-type'] ?? '');
    const charset = /charset=([^;\s]+)/i.exec(ct)?.[1]?.toLowerCase().replace(/"/g, '');
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      return done(new ApiError('unsupported_media_type', 'Only UTF-8 JSON bodies are accepted'), undefined);
    }
    const limit = request.routeOptions.bodyLimit ?? ctx.config.bodyLimitBytes;
    const contentLength = Number(request.headers['content-length']);
    readBody(payload, { limit, contentLength, preallocateFrom: LARGE_BODY_BYTES })
      .then((buf) => {
        if (ctx.parseLargeJson && buf.length > LARGE_BODY_BYTES) return ctx.parseLargeJson(buf, ctx.config.maxJsonDepth, rawPath(request.raw));
        return parseJsonBody(buf, ctx.config.maxJsonDepth);
      })
      .then(
        (value) => done(null, value),
        (err: Error) => done(err, undefined),
      );
  });

  app.setErrorHandler((err, _request, reply) => {
    const apiErr = fromFastifyError(err);
    if (apiErr.code === 'internal_error') console.error(`[server] unexpected error: ${sanitizeMessage(err)}`);
    return sendApiError(reply, apiErr);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = rawPath(request.raw);
    const allowed = ctx.routes.get(path);
    if (allowed) {
      reply.header('allow', [...allowed, 'OPTIONS'].join(', '));
      return sendApiError(reply, new ApiError('method_not_allowed', `Method ${request.method.slice(0, 10)} is not allowed on this route`));
    }
    return sendApiError(reply, new ApiError('not_found', 'Unknown route'));
  });
}
