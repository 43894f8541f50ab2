// The remote models of the settings, each an upstream with its own bounded queue, circuit breaker
// and statistics. The server's request life cycle asks `get(id)` for a request's model; when it is
// a remote, the request is forwarded through `open()` instead of the local engine.
import { ApiError } from '../../common/errors.ts';
import { summarize, type PercentileSummary } from '../../common/percentiles.ts';
import type { UpstreamMetrics } from '../../common/metrics-types.ts';
import { WorkSlots } from '../slots.ts';
import { CircuitBreaker, type BreakerState } from './breaker.ts';
import { isUpstreamFault, upstreamApiError, scrubUpstreamText } from './errors.ts';
import { UpstreamClient, UpstreamError, type RemoteEndpoint, type UpstreamResponse, type UpstreamTimeouts } from './upstream.ts';

export interface RemoteModelSettings extends RemoteEndpoint {
  /** Requests forwarded at the same time (default 4); more wait in a queue of `maxQueue` (default 16). */
  maxConcurrent?: number;
  maxQueue?: number;
  /** A local model (library id) that answers when this upstream is down. */
  fallback?: string;
}

export interface RemotesOptions {
  now?: () => number;
  timeouts?: Partial<UpstreamTimeouts>;
  retries?: number;
  retryMinMs?: number;
  breaker?: { failureThreshold?: number; cooldownMs?: number };
  retryAfterSeconds?: number;
  onBreakerChange?: (id: string, state: BreakerState, prev: BreakerState) => void;
  /** Samples kept per upstream for the percentiles. */
  window?: number;
}

export type UpstreamStats = UpstreamMetrics;

/** A forwarded call in flight: settle it exactly once when the response has been fully relayed. */
export interface UpstreamCall {
  response: UpstreamResponse;
  startedAt: number;
  /** Record the end: `ok` (relayed to the end), a failure (counts against the breaker), or the client left. */
  finish(outcome: { ok: true; completionTokens?: number; firstTokenAt?: number } | { ok: false; error: unknown } | { aborted: true }): void;
}

class Ring {
  private readonly buf: number[] = [];
  private next = 0;
  constructor(private readonly size: number) {}
  push(v: number): void {
    if (!Number.isFinite(v)) return;
    if (this.buf.length < this.size) this.buf.push(v);
    else this.buf[this.next] = v;
    this.next = (this.next + 1) % this.size;
  }
  summary(): PercentileSummary {
    return summarize(this.buf);
  }
}

export class RemoteUpstream {
  readonly client: UpstreamClient;
  readonly breaker: CircuitBreaker;
  private readonly slots: WorkSlots;
  private requests = 0;
  private readonly errors: Record<string, number> = {};
  private fallbacks = 0;
  private readonly latency: Ring;
  private readonly ttft: Ring;
  private readonly tps: Ring;

  constructor(readonly settings: RemoteModelSettings, private readonly opts: RemotesOptions) {
    this.client = new UpstreamClient(settings, { timeouts: opts.timeouts, retries: opts.retries, retryMinMs: opts.retryMinMs });
    this.breaker = new CircuitBreaker({
      ...opts.breaker,
      now: opts.now,
      onChange: (s, p) => opts.onBreakerChange?.(settings.id, s, p),
    });
    this.slots = new WorkSlots(settings.maxConcurrent ?? 4, settings.maxQueue ?? 16, opts.retryAfterSeconds ?? 2);
    const w = opts.window ?? 1024;
    this.latency = new Ring(w);
    this.ttft = new Ring(w);
    this.tps = new Ring(w);
  }

  get id(): string {
    return this.settings.id;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Whether a request sent now would be refused by the breaker (for fallback decisions). */
  get down(): boolean {
    return this.breaker.state === 'open';
  }

  countError(code: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  countFallback(): void {
    this.fallbacks++;
  }

  /**
   * Forwards one OpenAI request body to `path` (e.g. 'chat/completions'), with our `model` replaced
   * by the upstream's. Waits for a queue slot, asks the breaker, retries before the first byte.
   * Rejects with an ApiError (already mapped and scrubbed).
   */
  async open(path: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<UpstreamCall> {
    this.requests++;
    const ticket = this.breaker.tryAcquire();
    if (!ticket) {
      this.countError('upstream_down');
      throw new ApiError('upstream_down', `The remote model "${this.id}" is down; retry later.`, {
        retryAfter: this.breaker.retryAfterSeconds() || 1,
      });
    }
    let release: () => void;
    try {
      release = await this.slots.acquire(signal);
    } catch (err) {
      ticket.release();
      if (err instanceof ApiError) this.countError(err.code);
      throw err instanceof ApiError ? err : new ApiError('upstream_error', 'request cancelled');
    }
    const startedAt = this.now();
    let response: UpstreamResponse;
    try {
      response = await this.client.post(path, { ...body, model: this.client.upstreamModel }, signal);
    } catch (err) {
      release();
      if (err instanceof UpstreamError && err.kind === 'aborted') ticket.release();
      else if (isUpstreamFault(err)) ticket.failure();
      else ticket.success();
      const api = upstreamApiError(err, this.settings);
      this.countError(api.code);
      throw api;
    }
    let settled = false;
    return {
      response,
      startedAt,
      finish: (outcome) => {
        if (settled) return;
        settled = true;
        release();
        const end = this.now();
        if ('aborted' in outcome) {
          ticket.success(); // the upstream answered; the client left
          response.body.destroy();
          return;
        }
        if (!outcome.ok) {
          if (isUpstreamFault(outcome.error)) ticket.failure();
          else ticket.success();
          this.countError(upstreamApiError(outcome.error, this.settings).code);
          response.body.destroy();
          return;
        }
        ticket.success();
        this.latency.push(end - startedAt);
        if (outcome.firstTokenAt !== undefined) {
          this.ttft.push(outcome.firstTokenAt - startedAt);
          const genMs = end - outcome.firstTokenAt;
          if (outcome.completionTokens && outcome.completionTokens > 1 && genMs > 0) {
            this.tps.push(((outcome.completionTokens - 1) * 1000) / genMs);
          }
        }
      },
    };
  }

  stats(): UpstreamStats {
    const load = this.slots.load;
    return {
      upstream: this.id,
      state: this.breaker.state,
      requests: this.requests,
      errors: { ...this.errors },
      active: load.active,
      queued: load.queued,
      latency_ms: this.latency.summary(),
      ttft_ms: this.ttft.summary(),
      tokens_per_second: this.tps.summary(),
      fallbacks: this.fallbacks,
    };
  }

  /** Scrubs upstream-provided text (e.g. content of an error chunk) before it reaches a client or log. */
  scrub(text: string): string {
    return scrubUpstreamText(text, this.settings);
  }
}

export class Remotes {
  private readonly byId = new Map<string, RemoteUpstream>();

  constructor(list: readonly RemoteModelSettings[], opts: RemotesOptions = {}) {
    for (const s of list) this.byId.set(s.id, new RemoteUpstream(s, opts));
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string | null | undefined): RemoteUpstream | null {
    return id ? (this.byId.get(id) ?? null) : null;
  }

  all(): RemoteUpstream[] {
    return [...this.byId.values()];
  }

  /** Entries for GET /v1/models: never the URL, key or headers. */
  publicList(): Array<{ id: string; object: 'model'; owned_by: 'remote'; remote: true; health: 'up' | 'down' | 'probing' }> {
    return this.all().map((u) => ({
      id: u.id,
      object: 'model' as const,
      owned_by: 'remote' as const,
      remote: true as const,
      health: u.breaker.state === 'closed' ? 'up' : u.breaker.state === 'open' ? 'down' : 'probing',
    }));
  }

  /** Ids whose breaker is open (degradation `upstream_down`). */
  downIds(): string[] {
    return this.all()
      .filter((u) => u.down)
      .map((u) => u.id);
  }

  close(): void {
    for (const u of this.byId.values()) u.client.close();
  }
}
