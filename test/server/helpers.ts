// Starts the REAL stack for server tests: a tiny random-weight model (real mlx-community layout,
// real Qwen3 tokenizer), the supervised engine process running MLX, engine-text's pipeline, and
// the HTTP server on a loopback port chosen by the OS. Plus small raw-HTTP helpers for attacks.
import http from 'node:http';
import net from 'node:net';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { createEngineClient, loadTextPipeline } from '../../main/engine/index.ts';
import type { EngineClient, ModelInfo } from '../../main/engine/types.ts';
import { createServer, type MlxBarServer, type ServerConfig } from '../../main/server/index.ts';
import type { CachedGeneration, ResponseCacheKey, ServerHooks } from '../../main/server/hooks.ts';
import type { RequestRecord } from '../../main/common/metrics-types.ts';

export interface TestStack {
  url: string;
  port: number;
  server: MlxBarServer;
  engine: EngineClient;
  modelInfo: ModelInfo;
  modelDir: string;
  /** The real text pipeline, loaded once (extra servers in a test file reuse it). */
  text: Awaited<ReturnType<typeof loadTextPipeline>>;
  records: RequestRecord[];
  close(): Promise<void>;
}

export const TINY: TinyModelSpec = { family: 'qwen3' };

export interface StackOptions {
  spec?: TinyModelSpec;
  config?: Partial<ServerConfig>;
  hooks?: ServerHooks;
  /** Engine-process options sent with the load (e.g. maxBatch). */
  engine?: import('../../main/engine/process/protocol.ts').LoadOptions;
}

/** Engine + text + server. Every test file calls close() in `after`. */
export async function startStack(opts: StackOptions = {}): Promise<TestStack> {
  const modelDir = await buildTinyModel(opts.spec ?? TINY);
  const text = await loadTextPipeline(modelDir);
  const engine = createEngineClient({ log: () => {}, ...(opts.engine ? { engine: opts.engine } : {}) });
  const records: RequestRecord[] = [];
  let server: MlxBarServer | null = null;
  try {
    const modelInfo = await engine.start(modelDir);
    const hooks: ServerHooks = {
      ...opts.hooks,
      onRequestRecord: (r) => {
        records.push(r);
        opts.hooks?.onRequestRecord?.(r);
      },
    };
    server = createServer({ engine, text, modelInfo, hooks }, { port: 0, ...opts.config });
    const addr = await server.listen();
    const s = server;
    return {
      url: addr.url,
      port: addr.port,
      server: s,
      engine,
      modelInfo,
      modelDir,
      text,
      records,
      async close() {
        await s.close(500).catch(() => {});
        await engine.stop().catch(() => {});
      },
    };
  } catch (err) {
    await server?.close(0).catch(() => {});
    await engine.stop().catch(() => {});
    throw err;
  }
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request with full control over headers and body bytes (node:http, no client-side fixes). */
export function rawRequest(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; timeoutMs?: number },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: { host: `127.0.0.1:${port}`, ...opts.headers },
        agent: false,
        setHost: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

/** Writes raw bytes on a TCP socket and returns everything the server sends until it closes. */
export function rawSocket(port: number, data: string | Buffer, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    }, timeoutMs);
    sock.on('connect', () => sock.write(data));
    sock.on('data', (c) => chunks.push(c));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      if (chunks.length) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(err);
    });
  });
}

export const json = (o: unknown) => JSON.stringify(o);

export function postJson(port: number, path: string, body: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  return rawRequest(port, {
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  messages: [{ role: 'user', content }],
  max_tokens: 4,
  ...extra,
});

/** Parses an SSE body into its data payloads (JSON objects, or the string '[DONE]') and comment count. */
export function parseSse(body: string): { events: unknown[]; comments: number } {
  const events: unknown[] = [];
  let comments = 0;
  for (const frame of body.split('\n\n')) {
    if (!frame.trim()) continue;
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) comments++;
      else if (line.startsWith('data: ')) {
        const d = line.slice(6);
        events.push(d === '[DONE]' ? d : JSON.parse(d));
      }
    }
  }
  return { events, comments };
}

/** What must never appear in an error body (paths, stacks, home dirs). */
export const LEAK_RE = /\/home\/|\/Users\/|\/tmp\/|\/root\/|[A-Za-z]:\\\\|\bat .*:\d+:\d+|node_modules|\.ts:\d+|Error: /;

/**
 * A response-cache hook that is always a miss and records the keys the server would store: every
 * request still runs on the engine, and a test can see what would have been cached (and with
 * which key).
 */
export function recordingResponseCache(): { hook: NonNullable<ServerHooks['responseCache']>; keys: ResponseCacheKey[] } {
  const keys: ResponseCacheKey[] = [];
  const hook = {
    get(): CachedGeneration | null {
      return null;
    },
    set(key: ResponseCacheKey) {
      keys.push(key);
    },
  };
  return { hook, keys };
}
