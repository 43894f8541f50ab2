// One AbortController per request that fires when the client goes away before the response is
// complete (track.cancelled, reason "client disconnected") or when the server shuts down (reason
// SHUTDOWN_REASON): generation and embeddings both stop engine work on it.
import type { ServerResponse } from 'node:http';
import type { RequestTrack } from './track.ts';

export const SHUTDOWN_REASON = 'server_shutdown';

export interface RequestAbort {
  readonly signal: AbortSignal;
  /** Removes the listeners (call in `finally`). */
  dispose(): void;
}

export function requestAbort(res: ServerResponse, track: RequestTrack, shutdownSignal: AbortSignal): RequestAbort {
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) {
      track.cancelled = true;
      abort.abort(new Error('client disconnected'));
    }
  };
  res.on('close', onClose);
  const onShutdown = () => abort.abort(SHUTDOWN_REASON);
  if (shutdownSignal.aborted) onShutdown();
  else shutdownSignal.addEventListener('abort', onShutdown, { once: true });
  return {
    signal: abort.signal,
    dispose() {
      res.off('close', onClose);
      shutdownSignal.removeEventListener('abort', onShutdown);
    },
  };
}
