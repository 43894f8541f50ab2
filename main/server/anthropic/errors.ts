// Anthropic's error shape for /v1/messages*: `{"type":"error","error":{"type","message"},"request_id"}`
// (the Anthropic SDKs read `error.type` to pick their exception class). The ApiError keeps its HTTP
// status and its sanitized message (no paths, no stacks); only the envelope and the type differ.
import type { ApiError } from '../../common/errors.ts';

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
  request_id: string | null;
}

/** Anthropic's error type for one of our errors (by HTTP status, as Anthropic documents them). */
export function anthropicErrorType(err: ApiError): AnthropicErrorType {
  switch (err.status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
      // queue full, memory, loading, restarting: Anthropic's "temporarily overloaded" (retryable).
      return 'overloaded_error';
  }
  return err.status >= 500 ? 'api_error' : 'invalid_request_error';
}

export function anthropicErrorBody(err: ApiError, requestId: string | null = null): AnthropicErrorBody {
  return { type: 'error', error: { type: anthropicErrorType(err), message: err.message }, request_id: requestId };
}
