// Retries with exponential backoff for the things that can be retried (engine restarts, model
// downloads, transient fs/network errors), over the maintained `p-retry` (node-retry underneath).
//
// Defaults: 3 retries after the first attempt, base delays 100 / 200 / 400 ms (factor 2), with
// jitter (node-retry's `randomize`: each delay is multiplied by a random factor in [1, 2), so
// concurrent retriers spread out), capped at 5 s. No sleep before the first attempt. Only errors
// that `isRetryable` accepts are retried; anything else (a 4xx ApiError, ENOENT, EACCES, ENOSPC, a
// corrupt model) fails at once with the original error. Aborting `signal` stops waiting and rejects
// with the signal's reason.
import pRetry, { AbortError } from 'p-retry';
import { ApiError } from './errors.ts';

export interface RetryOptions {
  retries?: number;
  minTimeoutMs?: number;
  maxTimeoutMs?: number;
  factor?: number;
  /** Multiply each delay by U[1,2). Default true. */
  jitter?: boolean;
  signal?: AbortSignal;
  isRetryable?: (err: unknown) => boolean;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (info: { attempt: number; retriesLeft: number; error: unknown }) => void;
}

const TRANSIENT_NODE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EBUSY', 'EAGAIN', 'EMFILE', 'ENFILE', 'ENOTCONN', 'ESOCKETTIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);
const TRANSIENT_API_CODES = new Set(['engine_crashed', 'engine_unavailable', 'engine_restarting', 'model_loading', 'server_overloaded', 'queue_full', 'request_timeout']);

/** Default policy: transient system/network errors and transient engine states; explicit `retryable`. */
export function isRetryableError(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const e = err as { retryable?: unknown; code?: unknown; name?: unknown; status?: unknown };
  if (typeof e.retryable === 'boolean') return e.retryable;
  if (e.name === 'AbortError') return false;
  if (err instanceof ApiError) return TRANSIENT_API_CODES.has(err.code);
  if (typeof e.code === 'string') return TRANSIENT_NODE_CODES.has(e.code) || TRANSIENT_API_CODES.has(e.code);
  if (typeof e.status === 'number') return e.status === 408 || e.status === 429 || e.status >= 500;
  return false;
}

export async function withRetry<T>(fn: (attempt: number) => Promise<T> | T, opts: RetryOptions = {}): Promise<T> {
  const retryable = opts.isRetryable ?? isRetryableError;
  if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('Aborted');
  return pRetry(
    async (attempt) => {
      try {
        return await fn(attempt);
      } catch (err) {
        // AbortError makes p-retry stop at once; it rethrows err.originalError (the real error).
        if (!retryable(err)) throw new AbortError(err instanceof Error ? err : new Error(String(err)));
        throw err instanceof Error ? err : new Error(String(err));
      }
    },
    {
      retries: opts.retries ?? 3,
      factor: opts.factor ?? 2,
      minTimeout: opts.minTimeoutMs ?? 100,
      maxTimeout: opts.maxTimeoutMs ?? 5000,
      randomize: opts.jitter ?? true,
      signal: opts.signal,
      onFailedAttempt: (error) => {
        if (error.retriesLeft > 0) opts.onRetry?.({ attempt: error.attemptNumber, retriesLeft: error.retriesLeft, error });
      },
    },
  );
}
