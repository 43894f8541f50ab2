// A circuit breaker per upstream. Closed: requests flow and consecutive failures are counted.
// After `failureThreshold` consecutive failures it opens: requests are refused at once (503
// upstream_down + Retry-After) instead of each waiting for a connect timeout. After `cooldownMs`
// it lets exactly one probe through (half-open); the probe's success closes it, its failure opens
// it again for another cooldown. Why our own and not opossum: opossum wraps one async call and
// judges it by its promise, but a stream is judged in two phases (before the first byte, then until
// the end) and the state must drive the degradation status and the metrics. The clock is injected
// so tests never sleep.
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerOptions {
  failureThreshold?: number;
  cooldownMs?: number;
  now?: () => number;
  onChange?: (state: BreakerState, prev: BreakerState) => void;
}

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probeInFlight = false;
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  private readonly now: () => number;
  private readonly onChange: (state: BreakerState, prev: BreakerState) => void;

  constructor(opts: BreakerOptions = {}) {
    this.failureThreshold = Math.max(1, opts.failureThreshold ?? 3);
    this.cooldownMs = Math.max(0, opts.cooldownMs ?? 15_000);
    this.now = opts.now ?? Date.now;
    this.onChange = opts.onChange ?? (() => {});
  }

  /** The state as a request would see it now (an open breaker past its cooldown reads half_open). */
  get state(): BreakerState {
    if (this.current === 'open' && this.now() - this.openedAt >= this.cooldownMs) return 'half_open';
    return this.current;
  }

  /** Seconds until an open breaker lets a probe through (for Retry-After); 0 when not open. */
  retryAfterSeconds(): number {
    if (this.state !== 'open') return 0;
    return Math.max(1, Math.ceil((this.cooldownMs - (this.now() - this.openedAt)) / 1000));
  }

  /**
   * Asks to send one request. Returns a ticket to settle with success()/failure(), or null when the
   * breaker refuses (open, or half-open with its one probe already out).
   */
  tryAcquire(): { success(): void; failure(): void; release(): void } | null {
    const s = this.state;
    if (s === 'open') return null;
    let probe = false;
    if (s === 'half_open') {
      if (this.probeInFlight) return null;
      this.probeInFlight = true;
      probe = true;
      this.set('half_open');
    }
    let settled = false;
    const done = (fn: () => void) => () => {
      if (settled) return;
      settled = true;
      if (probe) this.probeInFlight = false;
      fn();
    };
    return {
      success: done(() => this.recordSuccess()),
      failure: done(() => this.recordFailure()),
      // Neither (e.g. the client went away before the upstream answered): a probe slot is freed.
      release: done(() => {}),
    };
  }

  private recordSuccess(): void {
    this.failures = 0;
    this.set('closed');
  }

  private recordFailure(): void {
    this.failures++;
    if (this.current === 'half_open' || this.failures >= this.failureThreshold) {
      this.openedAt = this.now();
      this.set('open');
    }
  }

  private set(next: BreakerState): void {
    const prev = this.current;
    this.current = next;
    if (prev !== next) this.onChange(next, prev);
  }
}
