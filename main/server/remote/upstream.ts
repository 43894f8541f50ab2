// HTTP client for one OpenAI-compatible upstream (vLLM, SGLang, llama-server, Ollama, LM Studio,
// another MLX Bar). node:http(s) rather than fetch because we need three different clocks — connect,
// time to the response headers (an upstream may prefill a long prompt first), and idle time between
// body bytes — and back-pressure: the response body is read only as fast as the caller consumes it,
// so a slow client slows the upstream's socket instead of buffering a whole stream in memory.
//
// Retries happen only before the first byte (connect refused/reset, 502/503/504 without a body
// consumed); once a response is being read nothing is replayed. Errors come back as UpstreamError
// with a `kind`; mapping to the client-facing error (and scrubbing the upstream's URL and key) is
// errors.ts's job.
import http from 'node:http';
import https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { createParser } from 'eventsource-parser';

export interface RemoteEndpoint {
  /** Our id for it (what clients put in `model`). */
  id: string;
  /** e.g. http://gpu-box:8000/v1 — requests go to `${baseURL}/chat/completions`. */
  baseURL: string;
  apiKey?: string;
  /** The upstream's own model name (default: `id`). */
  model?: string;
  headers?: Record<string, string>;
}

export interface UpstreamTimeouts {
  /** TCP (+TLS) connect. */
  connectMs: number;
  /** From the request sent to the response headers (the upstream may be prefilling). */
  headersMs: number;
  /** Longest silence while reading the body. */
  idleMs: number;
}

export const DEFAULT_TIMEOUTS: UpstreamTimeouts = { connectMs: 5_000, headersMs: 120_000, idleMs: 60_000 };

export type UpstreamErrorKind = 'connect' | 'timeout' | 'status' | 'protocol' | 'aborted' | 'closed';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly detail: { status?: number; body?: unknown; retryAfter?: number; phase?: 'connect' | 'headers' | 'body' } = {},
  ) {
    super(message);
  }
  /** Safe to try again: nothing of a response was consumed, and the upstream may just be restarting. */
  get retryable(): boolean {
    if (this.kind === 'connect') return true;
    if (this.kind === 'status') return this.detail.status === 502 || this.detail.status === 503 || this.detail.status === 504;
    return false;
  }
}

export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

const MAX_JSON_BYTES = 64 * 1024 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;

export interface UpstreamClientOptions {
  timeouts?: Partial<UpstreamTimeouts>;
  /** Attempts after the first, before the first byte only. */
  retries?: number;
  retryMinMs?: number;
}

export class UpstreamClient {
  readonly timeouts: UpstreamTimeouts;
  private readonly retries: number;
  private readonly retryMinMs: number;
  private readonly agent: http.Agent;
  private readonly base: URL;

  constructor(readonly endpoint: RemoteEndpoint, opts: UpstreamClientOptions = {}) {
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.retries = opts.retries ?? 2;
    this.retryMinMs = opts.retryMinMs ?? 100;
    this.base = new URL(endpoint.baseURL.endsWith('/') ? endpoint.baseURL : `${endpoint.baseURL}/`);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new Error('baseURL must be http(s)');
    const Agent = this.base.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: 64 });
  }

  /** The upstream's model name for a request. */
  get upstreamModel(): string {
    return this.endpoint.model || this.endpoint.id;
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * POSTs JSON to `path` (relative to baseURL) and resolves once a 2xx response's headers arrived.
   * Non-2xx → UpstreamError('status') with the parsed error body. Retries before the first byte.
   */
  async post(path: string, body: unknown, signal?: AbortSignal): Promise<UpstreamResponse> {
    const payload = Buffer.from(JSON.stringify(body));
    const retryable = (err: unknown) => err instanceof UpstreamError && err.retryable && !signal?.aborted;
    // The first attempt outside p-retry: nearly every request succeeds at once, and building the
    // retry schedule each time was ~2% of a forwarded request's CPU (profiled).
    try {
      return await this.once('POST', path, payload, signal);
    } catch (err) {
      if (!retryable(err) || this.retries <= 0) throw err;
    }
    try {
      await delay(this.retryMinMs, undefined, { signal });
    } catch {
      throw new UpstreamError('aborted', 'request aborted');
    }
    return pRetry(
      async () => {
        try {
          return await this.once('POST', path, payload, signal);
        } catch (err) {
          if (retryable(err)) throw err;
          throw new AbortError(err as Error);
        }
      },
      // The same schedule as before: retryMinMs, then ×2 per further attempt.
      { retries: this.retries - 1, minTimeout: this.retryMinMs * 2, factor: 2, randomize: false, signal },
    ).catch((err: unknown) => {
      // p-retry wraps non-Error throwables and rethrows the AbortError's original error.
      throw err instanceof UpstreamError ? err : signal?.aborted ? new UpstreamError('aborted', 'request aborted') : err;
    });
  }

  /** GET (e.g. `models`) → parsed JSON. */
  async getJson(path: string, signal?: AbortSignal): Promise<unknown> {
    const res = await this.once('GET', path, null, signal);
    return readJson(res.body, this.timeouts.idleMs);
  }

  private once(method: 'GET' | 'POST', path: string, payload: Buffer | null, signal?: AbortSignal): Promise<UpstreamResponse> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    const headers: Record<string, string> = { accept: 'application/json, text/event-stream', ...(this.endpoint.headers ?? {}) };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.endpoint.apiKey) headers.authorization = `Bearer ${this.endpoint.apiKey}`;
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      if (signal?.aborted) return reject(new UpstreamError('aborted', 'request aborted'));
      let phase: 'connect' | 'headers' = 'connect';
      let settled = false;
      const fail = (err: UpstreamError) => {
        if (settled) return;
        settled = true;
        cleanup();
        req.destroy();
        reject(err);
      };
      const req = mod.request(url, { method, headers, agent: this.agent });
      const connectTimer = setTimeout(
        () => fail(new UpstreamError('connect', 'connect timed out', { phase: 'connect' })),
        this.timeouts.connectMs,
      );
      let headersTimer: NodeJS.Timeout | undefined;
      const startHeadersClock = () => {
        phase = 'headers';
        clearTimeout(connectTimer);
        headersTimer = setTimeout(
          () => fail(new UpstreamError('timeout', 'no response from the upstream in time', { phase: 'headers' })),
          this.timeouts.headersMs,
        );
      };
      const onAbort = () => fail(new UpstreamError('aborted', 'request aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => {
        clearTimeout(connectTimer);
        clearTimeout(headersTimer);
        signal?.removeEventListener('abort', onAbort);
      };
      req.on('socket', (socket) => {
        // A reused keep-alive socket is already connected.
        if (!(socket as { connecting?: boolean }).connecting) startHeadersClock();
        else socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', startHeadersClock);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A reset after connecting but before any response byte is still "before the first byte".
        fail(new UpstreamError('connect', `upstream unreachable (${err.code ?? 'error'})`, { phase }));
      });
      req.on('response', (res) => {
        if (settled) return res.resume();
        settled = true;
        cleanup();
        const status = res.statusCode ?? 0;
        // Idle clock for the body: a stalled stream ends with an error instead of hanging forever.
        res.socket?.setTimeout(this.timeouts.idleMs, () => res.destroy(new UpstreamError('timeout', 'upstream stalled', { phase: 'body' })));
        if (status >= 200 && status < 300) return resolve({ status, headers: res.headers, body: res });
        readText(res, MAX_ERROR_BYTES, this.timeouts.idleMs)
          .catch(() => '')
          .then((text) => {
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* a plain-text error */
            }
            const ra = Number(res.headers['retry-after']);
            reject(
              new UpstreamError('status', `upstream answered ${status}`, {
                status,
                body: parsed,
                retryAfter: Number.isFinite(ra) && ra > 0 ? ra : undefined,
                phase: 'headers',
              }),
            );
          });
      });
      req.end(payload ?? undefined);
    });
  }
}

/** Reads a whole (bounded) body as text. */
export async function readText(res: http.IncomingMessage, limit: number, _idleMs: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.destroy();
      throw new UpstreamError('protocol', 'upstream response too large');
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJson(res: http.IncomingMessage, idleMs: number): Promise<unknown> {
  const text = await readTextSafe(res, MAX_JSON_BYTES, idleMs);
  try {
    return JSON.parse(text);
  } catch {
    throw new UpstreamError('protocol', 'upstream sent invalid JSON');
  }
}

async function readTextSafe(res: http.IncomingMessage, limit: number, idleMs: number): Promise<string> {
  try {
    return await readText(res, limit, idleMs);
  } catch (err) {
    throw asBodyError(err);
  }
}

function asBodyError(err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'ECONNABORTED') {
    return new UpstreamError('closed', 'upstream closed the connection mid-response', { phase: 'body' });
  }
  return new UpstreamError('closed', 'upstream response failed', { phase: 'body' });
}

/**
 * The `data:` payloads of an OpenAI-style SSE body, parsed, one per chunk, until `[DONE]`.
 * Pull-based: the socket is read only when the consumer asks for the next chunk. A body that ends
 * without `[DONE]` (the upstream died) throws UpstreamError('closed').
 */
export async function* sseChunks(res: http.IncomingMessage): AsyncGenerator<unknown> {
  const pending: unknown[] = [];
  let done = false;
  let bad: UpstreamError | null = null;
  const parser = createParser({
    onEvent(ev) {
      if (done) return;
      if (ev.data === '[DONE]') {
        done = true;
        return;
      }
      try {
        pending.push(JSON.parse(ev.data));
      } catch {
        bad ??= new UpstreamError('protocol', 'upstream sent an invalid stream chunk');
      }
    },
  });
  try {
    // destroyOnReturn false: leaving the loop at [DONE] must not destroy the socket (a plain
    // for-await over the response would), so it goes back to the keep-alive pool instead of every
    // forwarded request paying a new TCP (+TLS) connection to the upstream.
    for await (const chunk of res.iterator({ destroyOnReturn: false })) {
      parser.feed((chunk as Buffer).toString('utf8'));
      if (bad) throw bad;
      while (pending.length) yield pending.shift();
      if (done) return;
    }
  } catch (err) {
    throw asBodyError(err);
  } finally {
    // Finished: read what is left of the response (normally nothing but its end) so the socket is
    // reusable. Failed, or the consumer stopped early: drop the connection.
    if (!done) res.destroy();
    else if (!res.complete) res.resume();
  }
  if (!done) throw new UpstreamError('closed', 'upstream stream ended before [DONE]', { phase: 'body' });
}
