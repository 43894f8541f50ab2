// One error taxonomy for everything that leaves the process. Every error a client can see is an
// ApiError with an HTTP status, an OpenAI `type`, a stable `code` and an optional `param`; its
// message is sanitized at construction. Unknown errors become `internal_error` with a generic
// message (the detail goes to the log, sanitized too).
import { sanitizeMessage } from './sanitize.ts';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

/** Stable machine-readable codes. Adding one is fine; renaming one breaks clients. */
export const ERROR_CODES = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_value: { status: 400, type: 'invalid_request_error' },
  missing_required_parameter: { status: 400, type: 'invalid_request_error' },
  unsupported_parameter: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  forbidden_host: { status: 403, type: 'permission_error' },
  forbidden_origin: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'not_found_error' },
  model_not_found: { status: 404, type: 'not_found_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  request_timeout: { status: 408, type: 'invalid_request_error' },
  body_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  headers_too_large: { status: 431, type: 'invalid_request_error' },
  queue_full: { status: 503, type: 'server_error' },
  server_overloaded: { status: 503, type: 'server_error' },
  insufficient_memory: { status: 503, type: 'server_error' },
  model_too_large: { status: 400, type: 'invalid_request_error' },
  engine_restarting: { status: 503, type: 'server_error' },
  engine_unavailable: { status: 503, type: 'server_error' },
  model_loading: { status: 503, type: 'server_error' },
  engine_crashed: { status: 500, type: 'server_error' },
  /** The engine crashed again and again and its supervisor gave up: no silent reload; load it explicitly. */
  engine_gave_up: { status: 503, type: 'server_error' },
  model_load_failed: { status: 500, type: 'server_error' },
  cache_error: { status: 500, type: 'server_error' },
  rate_limited: { status: 429, type: 'rate_limit_error' },
  upstream_unavailable: { status: 502, type: 'server_error' },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_down: { status: 503, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'server_error' },
  internal_error: { status: 500, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: ErrorType }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface OpenAIErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: ErrorCode };
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: ErrorCode;
  readonly param: string | null;
  /** Seconds; sent as Retry-After (and retry-after-ms) on 503s. */
  readonly retryAfter?: number;
  constructor(code: ErrorCode, message: string, opts: { param?: string | null; retryAfter?: number; status?: number } = {}) {
    super(sanitizeMessage(message));
    this.name = 'ApiError';
    const def = ERROR_CODES[code];
    this.code = code;
    this.status = opts.status ?? def.status;
    this.type = def.type;
    this.param = opts.param ?? null;
    this.retryAfter = opts.retryAfter;
  }
  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Converts anything thrown into an ApiError without leaking its details. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && code in ERROR_CODES && code !== 'internal_error') {
    return new ApiError(code as ErrorCode, (err as Error).message ?? code);
  }
  return new ApiError('internal_error', 'Internal server error');
}
