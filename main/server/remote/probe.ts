// A one-off health check of a remote model's upstream, for callers without a running server's
// breaker to ask (`mlx-bar models`, the app while the server is stopped): GET {baseURL}/models
// with the remote's key, a short clock, no retry. What it reports is what the user can act on:
// up, down (unreachable / refusing / failing), or up but not serving the configured model name.
// Never the URL or key (the caller prints this).
import type { RemoteEndpoint } from './upstream.ts';
import { UpstreamClient, UpstreamError } from './upstream.ts';

export interface RemoteProbe {
  health: 'up' | 'down';
  /** Why it is down, or a warning while up (e.g. the model name is not listed upstream); null when fine. */
  note: string | null;
}

export async function probeRemote(endpoint: RemoteEndpoint, timeoutMs = 3000): Promise<RemoteProbe> {
  let client: UpstreamClient;
  try {
    client = new UpstreamClient(endpoint, { timeouts: { connectMs: timeoutMs, headersMs: timeoutMs, idleMs: timeoutMs }, retries: 0 });
  } catch {
    return { health: 'down', note: 'invalid base URL' };
  }
  try {
    const json = (await client.getJson('models', AbortSignal.timeout(timeoutMs * 2))) as { data?: unknown };
    const ids = Array.isArray(json?.data) ? json.data.map((m) => (m as { id?: unknown })?.id).filter((x): x is string => typeof x === 'string') : null;
    if (ids && !ids.includes(client.upstreamModel)) return { health: 'up', note: `model "${client.upstreamModel}" not listed upstream` };
    return { health: 'up', note: null };
  } catch (err) {
    if (!(err instanceof UpstreamError)) return { health: 'down', note: 'no valid answer' };
    switch (err.kind) {
      case 'connect':
        return { health: 'down', note: 'unreachable' };
      case 'timeout':
      case 'aborted':
        return { health: 'down', note: 'no answer in time' };
      case 'status': {
        const s = err.detail.status ?? 0;
        return { health: 'down', note: s === 401 || s === 403 ? `refused the credentials (${s})` : `answered ${s}` };
      }
      default:
        return { health: 'down', note: 'no valid answer' };
    }
  } finally {
    client.close();
  }
}
