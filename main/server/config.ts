// Server configuration: every limit the HTTP layer enforces, with safe defaults. The settings
// helper maps validated settings onto this shape; `resolveServerConfig` fills the gaps and
// refuses unsafe combinations (a non-loopback bind without an API key).
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { ApiError } from '../common/errors.ts';

export interface ServerConfig {
  /** Interface to bind. Loopback unless an API key is set. */
  host: string;
  /** 0 = pick a free port. */
  port: number;
  /** When set, every route except /health and the static dashboard needs `Authorization: Bearer <key>`. */
  apiKey: string | null;
  /**
   * Browser origins allowed to call the API (exact, or a prefix ending in `*`, e.g.
   * `vscode-webview://*`). The server's own origin (the dashboard) is always allowed.
   * Requests without an Origin header (editors, CLIs) are always allowed.
   */
  allowedOrigins: string[];
  /** Extra Host header names accepted besides loopback names (rarely needed). */
  allowedHosts: string[];
  bodyLimitBytes: number;
  /** Maximum JSON nesting depth of a request body (deeper → 400 before parsing). */
  maxJsonDepth: number;
  /** Generations running at once (the engine batches their decode steps; settings maxConcurrent). */
  maxConcurrent: number;
  /** Requests waiting for a generation slot; beyond it → 503 queue_full + Retry-After. */
  maxQueue: number;
  /** Seconds suggested to clients in Retry-After on 503. */
  retryAfterSeconds: number;
  /** node:http: time allowed to receive the complete headers (slowloris). */
  headersTimeoutMs: number;
  /** node:http: time allowed to receive the complete request (headers + body). */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** node:http: larger headers get 431. */
  maxHeaderSize: number;
  /** Interval of `: ping` SSE comments while nothing else was sent (long prefills). */
  keepAliveIntervalMs: number;
  /** Used when a request sets no max_tokens; always clamped to the remaining context. */
  defaultMaxTokens: number;
  /** Longest accepted stop string (characters). */
  maxStopLength: number;
  /** Directory of the built dashboard (vite output); null = not served. */
  dashboardDir: string | null;
  /**
   * Worker threads that render + tokenize large prompts off the event loop (prompt-pool.ts);
   * 0 = everything on the event loop.
   */
  promptWorkers: number;
  /** Prompts (messages + tools, a completion prompt, embedding inputs) up to this many characters render inline. */
  promptInlineMaxChars: number;
}

export const DEFAULT_SERVER_CONFIG: ServerConfig = {
  host: '127.0.0.1',
  port: 8080,
  apiKey: null,
  allowedOrigins: [],
  allowedHosts: [],
  bodyLimitBytes: 8 * 1024 * 1024,
  maxJsonDepth: 64,
  maxConcurrent: 1,
  maxQueue: 16,
  retryAfterSeconds: 2,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
  keepAliveIntervalMs: 5_000,
  defaultMaxTokens: 2048,
  maxStopLength: 512,
  dashboardDir: null,
  // One core is the engine's; the rest (at most 2) render prompts. Threads start on demand.
  promptWorkers: Math.max(1, Math.min(2, availableParallelism() - 1)),
  promptInlineMaxChars: 4096,
};

/** True for names/addresses that only reach this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

/** Fills defaults and enforces the bind policy. Throws ApiError(invalid_value) with `param`. */
export function resolveServerConfig(partial: Partial<ServerConfig> = {}): ServerConfig {
  const cfg: ServerConfig = { ...DEFAULT_SERVER_CONFIG };
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) (cfg as unknown as Record<string, unknown>)[k] = v;
  if (cfg.apiKey === '') cfg.apiKey = null;
  if (!Number.isInteger(cfg.port) || cfg.port < 0 || cfg.port > 65535) {
    throw new ApiError('invalid_value', `Port must be an integer between 0 and 65535`, { param: 'port' });
  }
  if (typeof cfg.host !== 'string' || !cfg.host || /[\s/?#@]/.test(cfg.host)) {
    throw new ApiError('invalid_value', 'Host must be a host name or IP address', { param: 'host' });
  }
  if (!isLoopbackHost(cfg.host) && !cfg.apiKey) {
    throw new ApiError(
      'invalid_value',
      `Refusing to listen on non-loopback host "${cfg.host.slice(0, 64)}" without an API key (set --api-key)`,
      { param: 'host' },
    );
  }
  if (cfg.apiKey !== null && (typeof cfg.apiKey !== 'string' || cfg.apiKey.length < 8 || /[\s]/.test(cfg.apiKey))) {
    throw new ApiError('invalid_value', 'API key must be at least 8 characters without spaces', { param: 'api_key' });
  }
  for (const k of [
    'bodyLimitBytes',
    'maxJsonDepth',
    'maxConcurrent',
    'headersTimeoutMs',
    'requestTimeoutMs',
    'keepAliveTimeoutMs',
    'maxHeaderSize',
    'keepAliveIntervalMs',
    'defaultMaxTokens',
    'maxStopLength',
  ] as const) {
    const v = cfg[k];
    if (!Number.isInteger(v) || v < 1) throw new ApiError('invalid_value', `${k} must be a positive integer`, { param: k });
  }
  for (const k of ['promptWorkers', 'promptInlineMaxChars'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 0) throw new ApiError('invalid_value', `${k} must be a non-negative integer`, { param: k });
  }
  if (!Number.isInteger(cfg.maxQueue) || cfg.maxQueue < 0) {
    throw new ApiError('invalid_value', 'maxQueue must be a non-negative integer', { param: 'maxQueue' });
  }
  // node requires requestTimeout >= headersTimeout (otherwise headersTimeout never fires first).
  if (cfg.requestTimeoutMs < cfg.headersTimeoutMs) cfg.requestTimeoutMs = cfg.headersTimeoutMs;
  return cfg;
}
