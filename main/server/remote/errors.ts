// What a client sees when a remote upstream fails: our own error shape with a stable code, never
// the upstream's URL, host, key or header values (a team's GPU box address is nobody's business),
// and the upstream's own message only for the client's own mistakes (4xx), scrubbed.
import { ApiError } from '../../common/errors.ts';
import type { RemoteEndpoint } from './upstream.ts';
import { UpstreamError } from './upstream.ts';

/** Every string of an endpoint that must never appear in a response, a log line or the dashboard. */
export function secretsOf(endpoint: RemoteEndpoint): string[] {
  const out = new Set<string>();
  if (endpoint.apiKey) out.add(endpoint.apiKey);
  for (const v of Object.values(endpoint.headers ?? {})) if (v && v.length >= 4) out.add(v);
  try {
    const u = new URL(endpoint.baseURL);
    out.add(endpoint.baseURL.replace(/\/+$/, ''));
    out.add(u.origin);
    out.add(u.host);
    if (u.hostname.length >= 4) out.add(u.hostname);
  } catch {
    /* validated at load; nothing to add */
  }
  return [...out].sort((a, b) => b.length - a.length);
}

/** Removes the endpoint's secrets and any URL from an upstream-provided text. */
export function scrubUpstreamText(text: string, endpoint: RemoteEndpoint): string {
  let out = text;
  for (const s of secretsOf(endpoint)) out = out.split(s).join('[upstream]');
  return out.replace(/\bhttps?:\/\/[^\s'"<>)]+/gi, '[url]').replace(/\bBearer\s+\S+/gi, 'Bearer [redacted]');
}

function upstreamMessage(body: unknown): string | null {
  if (typeof body === 'string') return body.trim() || null;
  if (body && typeof body === 'object') {
    const e = (body as { error?: unknown }).error;
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object' && typeof (e as { message?: unknown }).message === 'string') return (e as { message: string }).message;
    if (typeof (body as { message?: unknown }).message === 'string') return (body as { message: string }).message;
    if (typeof (body as { detail?: unknown }).detail === 'string') return (body as { detail: string }).detail;
  }
  return null;
}

function upstreamParam(body: unknown): string | null {
  const p = (body as { error?: { param?: unknown } })?.error?.param;
  return typeof p === 'string' && /^[\w.[\]-]{1,64}$/.test(p) ? p : null;
}

/**
 * Maps a failed upstream call to what the client gets. `model` is our id for the remote, named in
 * the message so the user knows which entry of their settings to look at.
 */
export function upstreamApiError(err: unknown, endpoint: RemoteEndpoint): ApiError {
  const id = endpoint.id;
  if (!(err instanceof UpstreamError)) return new ApiError('upstream_error', `The remote model "${id}" failed.`);
  switch (err.kind) {
    case 'connect':
      return new ApiError('upstream_unavailable', `The remote model "${id}" is unreachable.`);
    case 'timeout':
      return new ApiError('upstream_timeout', `The remote model "${id}" did not answer in time.`);
    case 'aborted':
      return new ApiError('upstream_error', `The request to the remote model "${id}" was cancelled.`);
    case 'closed':
    case 'protocol':
      return new ApiError('upstream_error', `The remote model "${id}" failed mid-response.`);
    case 'status': {
      const status = err.detail.status ?? 502;
      const said = upstreamMessage(err.detail.body);
      const detail = said ? `: ${scrubUpstreamText(said, endpoint).slice(0, 300)}` : '';
      if (status === 429) {
        return new ApiError('rate_limited', `The remote model "${id}" is rate-limited${detail}`, { retryAfter: err.detail.retryAfter ?? 5 });
      }
      if (status === 401 || status === 403) {
        // The client's key is ours, not the upstream's: this is a settings problem, reported as such.
        return new ApiError('upstream_error', `The remote model "${id}" refused MLX Bar's credentials; check its apiKey in the settings.`);
      }
      if (status === 404) {
        return new ApiError('upstream_error', `The remote model "${id}" does not exist upstream (check its model name in the settings)${detail}`);
      }
      if (status >= 400 && status < 500) {
        return new ApiError('invalid_request', `The remote model "${id}" refused the request${detail}`, {
          status: status === 413 || status === 422 ? status : 400,
          param: upstreamParam(err.detail.body),
        });
      }
      return new ApiError('upstream_error', `The remote model "${id}" failed (${status}).`);
    }
  }
}

/** Whether a failure says the upstream is unhealthy (counts against its circuit breaker). */
export function isUpstreamFault(err: unknown): boolean {
  if (!(err instanceof UpstreamError)) return true;
  if (err.kind === 'aborted') return false;
  if (err.kind === 'status') {
    const s = err.detail.status ?? 500;
    return s >= 500 || s === 401 || s === 403;
  }
  return true;
}
