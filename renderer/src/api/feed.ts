// Where the dashboard's live data comes from, in order of preference:
//   1. the Electron preload bridge (window.mlxBar), when the page runs inside the app window;
//   2. the server's SSE feed GET /v1/metrics/stream (one `data: <snapshot>` per second), read with
//      fetch + a stream reader rather than EventSource, because EventSource cannot send the
//      `Authorization` header a server with an API key requires;
//   3. polling GET /v1/metrics once a second, when the stream is unavailable or keeps failing.
// The page is the same in all three cases; only this module knows the difference.
import type { MetricsSnapshot } from '../../../main/common/metrics-types.ts';
import type { MlxBarApi } from '../../../preload/api.ts';

export type FeedMode = 'bridge' | 'sse' | 'poll';
export interface FeedStatus {
  mode: FeedMode;
  connected: boolean;
  /** true when the server answered 401: the page asks for the API key. */
  needsKey: boolean;
  error: string | null;
}

export interface FeedOptions {
  onSnapshot: (s: MetricsSnapshot) => void;
  onStatus: (s: FeedStatus) => void;
  /** Base URL of the server API; defaults to this page's origin. */
  baseUrl?: string;
  apiKey?: string | null;
  pollMs?: number;
}

export function bridge(): MlxBarApi | null {
  const b = (globalThis as { mlxBar?: MlxBarApi }).mlxBar;
  return b && b.version === 1 ? b : null;
}

/** A snapshot is only accepted when it has the fields the page reads (guards against HTML/error bodies). */
export function isSnapshot(x: unknown): x is MetricsSnapshot {
  if (!x || typeof x !== 'object') return false;
  const s = x as Partial<MetricsSnapshot>;
  return (
    typeof s.timestamp === 'string' &&
    typeof s.latency === 'object' && s.latency !== null &&
    typeof s.ttft === 'object' && s.ttft !== null &&
    typeof s.degradation === 'object' && s.degradation !== null &&
    typeof s.memory === 'object' && s.memory !== null &&
    Array.isArray(s.recent_requests)
  );
}

/** Splits an SSE byte stream into `data:` payloads (multi-line data joined with \n, comments ignored). */
export class SseParser {
  private buf = '';
  push(chunk: string): string[] {
    this.buf += chunk;
    const out: string[] = [];
    let idx: number;
    while ((idx = this.buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = this.buf.slice(0, idx);
      this.buf = this.buf.slice(idx + (this.buf[idx] === '\r' ? 4 : 2));
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) out.push(data.join('\n'));
    }
    return out;
  }
}

class HttpError extends Error {
  constructor(readonly status: number) { super(`HTTP ${status}`); }
}

export function startFeed(opts: FeedOptions): () => void {
  const b = bridge();
  if (b) {
    opts.onStatus({ mode: 'bridge', connected: true, needsKey: false, error: null });
    let stopped = false;
    void b.getSnapshot().then((s) => { if (!stopped && s) opts.onSnapshot(s); }).catch(() => {});
    const off = b.subscribe((s) => { if (!stopped) opts.onSnapshot(s); });
    return () => { stopped = true; off(); };
  }

  const base = opts.baseUrl ?? '';
  const pollMs = opts.pollMs ?? 1000;
  const headers: Record<string, string> = {};
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  const ctrl = new AbortController();
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let streamFailures = 0;

  const status = (mode: FeedMode, connected: boolean, error: string | null, needsKey = false) => {
    if (!stopped) opts.onStatus({ mode, connected, needsKey, error });
  };

  const fetchOnce = async (): Promise<MetricsSnapshot> => {
    const res = await fetch(`${base}/v1/metrics`, { headers: { ...headers, accept: 'application/json' }, cache: 'no-store', signal: ctrl.signal });
    if (!res.ok) throw new HttpError(res.status);
    const body: unknown = await res.json();
    if (!isSnapshot(body)) throw new Error('unexpected response');
    return body;
  };

  const poll = async () => {
    if (stopped) return;
    try {
      const s = await fetchOnce();
      if (!stopped) { opts.onSnapshot(s); status('poll', true, null); }
    } catch (err) {
      if (stopped) return;
      if (err instanceof HttpError && err.status === 401) { status('poll', false, 'API key required', true); return; }
      status('poll', false, 'server unreachable');
    }
    if (!stopped) timer = setTimeout(poll, pollMs);
  };

  const stream = async () => {
    while (!stopped) {
      try {
        const res = await fetch(`${base}/v1/metrics/stream`, { headers: { ...headers, accept: 'text/event-stream' }, cache: 'no-store', signal: ctrl.signal });
        if (res.status === 401) { status('sse', false, 'API key required', true); return; }
        if (!res.ok || !res.body || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) throw new HttpError(res.status);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        let gotFrame = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const data of parser.push(value)) {
            try {
              const body: unknown = JSON.parse(data);
              if (isSnapshot(body) && !stopped) {
                if (!gotFrame) { gotFrame = true; streamFailures = 0; status('sse', true, null); }
                opts.onSnapshot(body);
              }
            } catch { /* one bad frame is not worth tearing the feed down */ }
          }
        }
        throw new Error('stream ended');
      } catch {
        if (stopped) return;
        streamFailures += 1;
        // No such route, or something in between buffers SSE: polling works everywhere.
        if (streamFailures >= 3) { status('poll', false, 'live feed unavailable, polling'); void poll(); return; }
        status('sse', false, 'reconnecting');
        await new Promise((r) => { timer = setTimeout(r, 1000 * streamFailures); });
      }
    }
  };

  // One immediate fetch so the first paint has numbers without waiting for the first frame.
  void fetchOnce().then((s) => { if (!stopped) opts.onSnapshot(s); }).catch(() => {});
  void stream();

  return () => {
    stopped = true;
    ctrl.abort();
    if (timer) clearTimeout(timer);
  };
}
