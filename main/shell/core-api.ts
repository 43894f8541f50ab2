// The shell's client of the running core's own HTTP API, the same endpoints any client uses:
// GET /v1/models, POST /v1/models/load, GET /v1/metrics (so the tray and the window show exactly
// what the API reports). Plain Node fetch, no Electron; every failure is a value, never a throw.
import { sanitizeMessage } from '../common/sanitize.ts';
import type { MetricsSnapshot } from '../common/metrics-types.ts';
import { quoteId } from './app-models.ts';

export interface CoreApi {
  /** Base URL without /v1, e.g. http://127.0.0.1:8080 */
  url: string;
  /** The server's API key (settings.apiKey), sent as a bearer token when set. */
  apiKey: string | null;
  fetchImpl?: typeof fetch;
}

function headers(api: CoreApi, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { accept: 'application/json', ...extra };
  if (api.apiKey) h.authorization = `Bearer ${api.apiKey}`;
  return h;
}

/** GET /v1/models → its object rows; null when the server did not answer with a list. */
export async function fetchModelRows(api: CoreApi): Promise<Record<string, unknown>[] | null> {
  const f = api.fetchImpl ?? fetch;
  try {
    const res = await f(`${api.url}/v1/models`, { headers: headers(api), signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return null;
    const body = (await res.json()) as { data?: unknown };
    if (!Array.isArray(body?.data)) return null;
    return body.data.filter((r): r is Record<string, unknown> => !!r && typeof r === 'object');
  } catch {
    return null;
  }
}

export type LoadResult = { ok: true } | { ok: false; message: string };

/** POST /v1/models/load; the error message is the server's own, sanitized. */
export async function loadModel(api: CoreApi, id: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<LoadResult> {
  const f = api.fetchImpl ?? fetch;
  try {
    const res = await f(`${api.url}/v1/models/load`, {
      method: 'POST',
      headers: headers(api, { 'content-type': 'application/json' }),
      body: JSON.stringify({ model: id }),
      signal: AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), ...(opts.signal ? [opts.signal] : [])]),
    });
    if (res.ok) {
      await res.body?.cancel().catch(() => {});
      return { ok: true };
    }
    const body = (await res.json().catch(() => null)) as { error?: { message?: unknown } } | null;
    const msg = body?.error?.message;
    return { ok: false, message: sanitizeMessage(typeof msg === 'string' && msg ? msg : `The server refused the switch (HTTP ${res.status})`) };
  } catch (err) {
    const name = (err as { name?: string })?.name;
    if (name === 'TimeoutError') return { ok: false, message: `Loading ${quoteId(id)} took too long` };
    if (name === 'AbortError') return { ok: false, message: 'The switch was cancelled: the server is stopping' };
    return { ok: false, message: `Could not reach the server: ${sanitizeMessage(err)}` };
  }
}

/** GET /v1/metrics; null when the server did not answer with a snapshot. */
export async function fetchMetrics(api: CoreApi): Promise<MetricsSnapshot | null> {
  const f = api.fetchImpl ?? fetch;
  try {
    const res = await f(`${api.url}/v1/metrics`, { headers: headers(api), signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    const body = (await res.json()) as MetricsSnapshot;
    return body && typeof body === 'object' && body.degradation ? body : null;
  } catch {
    return null;
  }
}
