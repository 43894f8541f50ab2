// The one degradation state machine of the app. Every part that can degrade reports here, and
// every part that shows or acts on the state (admission, /health, /v1/metrics, logs, tray,
// dashboard) reads from here, so the state a user sees is the state that is enforced.
//
// Inputs:
//   - cache operations (the persisted caches call recordCacheSuccess / recordCacheError),
//   - memory pressure from the memory sampler (reportMemoryPressure),
//   - queue depth from the request queue (reportQueueDepth),
//   - engine state events from the EngineClient (reportEngineState),
//   - remote upstreams whose circuit breaker is open (watchUpstreams: read on every status()).
//
// The cache part is a circuit breaker: `closed` (cache used) → after 5 consecutive errors `open`
// (cache bypassed) → after a cooldown `half_open` (operations are let through as probes) → 10
// consecutive successes close it; one failed probe reopens it with a doubled cooldown (capped).
// A reopen soon after a close keeps the longer cooldown, so an intermittent fault cannot make the
// cache flap open/closed at the base cooldown rate. Time is read lazily from an injectable clock
// (no timers), so the machine is deterministic under test and holds no handle open.
//
// Combined state, highest priority first:
//   engine_failed > engine_restarting > shedding > cache_disabled > upstream_down > normal
// `cache_enabled` and `upstreams_down` are reported independently of the combined state (the cache
// can be disabled while the engine restarts, an upstream be down while the queue sheds, and all
// must be visible).
// `upstream_down` degrades only the remote models concerned, never the server: their requests get
// 503 upstream_down (or their local fallback) from the remote's own breaker, while local models and
// the other upstreams keep serving — so admission() refuses nothing for it. It is the lowest state
// because everything else still works; it is a state at all so the tray, dashboard and /health say
// that part of what the endpoint offers is unavailable.
import { EventEmitter } from 'node:events';
import { ApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { DegradationState, DegradationStatus } from '../common/metrics-types.ts';

export type MemoryPressureLevel = 'normal' | 'soft' | 'hard';
export type CircuitState = 'closed' | 'open' | 'half_open';
/** Engine states as emitted by EngineClient ('state' event). */
export type EngineStateInput = 'stopped' | 'loading' | 'ready' | 'restarting' | 'failed';

/** What a cache needs from the machine; the caches depend on this, not on the class. */
export interface CacheHealth {
  /** False while the circuit is open: callers skip the cache entirely (no disk access). */
  cacheAllowed(): boolean;
  recordCacheSuccess(op: string): void;
  recordCacheError(op: string, err: unknown): void;
}

export interface DegradationOptions {
  /** Milliseconds clock; injectable for tests. */
  now?: () => number;
  /** Consecutive cache errors that open the circuit. */
  cacheErrorThreshold?: number;
  /** Consecutive successful operations (after the cooldown) that close it. */
  cacheSuccessThreshold?: number;
  /** First cooldown before probes are allowed. */
  cacheCooldownMs?: number;
  /** Cap for the doubling cooldown. */
  cacheMaxCooldownMs?: number;
  /** Retry-After (seconds) sent with 503s. */
  retryAfter?: Partial<Record<'shedding' | 'engine_restarting' | 'engine_failed', number>>;
  /** Sanitized transition log lines go here (e.g. the app logger). */
  log?: (line: string) => void;
}

export interface DegradationChange {
  status: DegradationStatus;
  previous: DegradationStatus;
}

/** Internal detail for metrics/debugging (not part of the DegradationStatus contract). */
export interface DegradationDetail {
  circuit: CircuitState;
  consecutiveCacheErrors: number;
  consecutiveCacheSuccesses: number;
  cooldownMs: number;
  /** ms epoch when probes become allowed (open), else null. */
  probeAt: number | null;
  cacheErrorsTotal: number;
  circuitOpens: number;
  lastCacheError: string | null;
  memoryPressure: MemoryPressureLevel;
  queueShedding: boolean;
  engineState: EngineStateInput | null;
}

const DEFAULTS = {
  cacheErrorThreshold: 5,
  cacheSuccessThreshold: 10,
  cacheCooldownMs: 30_000,
  cacheMaxCooldownMs: 10 * 60_000,
};

function describeError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const msg = sanitizeMessage(err);
  return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

export class Degradation extends EventEmitter implements CacheHealth {
  private readonly now: () => number;
  private readonly errThreshold: number;
  private readonly okThreshold: number;
  private readonly baseCooldown: number;
  private readonly maxCooldown: number;
  private readonly retryAfterS: Record<'shedding' | 'engine_restarting' | 'engine_failed', number>;
  private readonly log: (line: string) => void;

  // cache circuit
  private circuit: CircuitState = 'closed';
  private errStreak = 0;
  private okStreak = 0;
  private cooldown: number;
  private openedAt = 0;
  private lastClosedAt = -Infinity;
  private errorsTotal = 0;
  private opens = 0;
  private lastError: string | null = null;

  // load / engine
  private memory: MemoryPressureLevel = 'normal';
  private queueShed = false;
  private queueDetail = '';
  private engine: EngineStateInput | null = null;
  private engineReason: string | null = null;
  private upstreamsDown: () => readonly string[] = () => [];

  private current: DegradationStatus;

  constructor(opts: DegradationOptions = {}) {
    super();
    this.now = opts.now ?? Date.now;
    this.errThreshold = opts.cacheErrorThreshold ?? DEFAULTS.cacheErrorThreshold;
    this.okThreshold = opts.cacheSuccessThreshold ?? DEFAULTS.cacheSuccessThreshold;
    this.baseCooldown = opts.cacheCooldownMs ?? DEFAULTS.cacheCooldownMs;
    this.maxCooldown = Math.max(this.baseCooldown, opts.cacheMaxCooldownMs ?? DEFAULTS.cacheMaxCooldownMs);
    this.retryAfterS = { shedding: 5, engine_restarting: 3, engine_failed: 30, ...opts.retryAfter };
    this.log = opts.log ?? (() => {});
    this.cooldown = this.baseCooldown;
    this.current = { state: 'normal', cache_enabled: true, reason: null, since: new Date(this.now()).toISOString() };
  }

  // ---- cache circuit -------------------------------------------------------------------------

  /** Moves open → half_open once the cooldown has elapsed (lazily, no timers). */
  private tick(): void {
    if (this.circuit === 'open' && this.now() - this.openedAt >= this.cooldown) {
      this.circuit = 'half_open';
      this.okStreak = 0;
      this.log(`degradation: cache cooldown elapsed, probing (${this.okThreshold} successes close the circuit)`);
      this.refresh();
    }
  }

  cacheAllowed(): boolean {
    this.tick();
    return this.circuit !== 'open';
  }

  recordCacheSuccess(op: string): void {
    this.tick();
    if (this.circuit === 'open') return; // an operation that started before the circuit opened
    this.errStreak = 0;
    this.okStreak++;
    if (this.circuit === 'half_open' && this.okStreak >= this.okThreshold) {
      this.circuit = 'closed';
      this.lastClosedAt = this.now();
      this.log(`degradation: cache re-enabled after ${this.okStreak} successful operations (last: ${sanitizeMessage(op)})`);
      this.refresh();
    }
  }

  recordCacheError(op: string, err: unknown): void {
    this.tick();
    this.errorsTotal++;
    this.lastError = `${sanitizeMessage(op)}: ${describeError(err)}`;
    if (this.circuit === 'open') return;
    this.okStreak = 0;
    this.errStreak++;
    if (this.circuit === 'half_open') {
      // A failed probe: reopen with a doubled cooldown (capped).
      this.cooldown = Math.min(this.cooldown * 2, this.maxCooldown);
      this.openCircuit('probe failed');
    } else if (this.errStreak >= this.errThreshold) {
      // Reopening soon after a close keeps (and doubles) the previous cooldown: no flapping under
      // an intermittent fault. A long healthy period resets it to the base value.
      if (this.now() - this.lastClosedAt > this.maxCooldown) this.cooldown = this.baseCooldown;
      else this.cooldown = Math.min(this.cooldown * 2, this.maxCooldown);
      this.openCircuit(`${this.errStreak} consecutive cache errors`);
    }
  }

  private openCircuit(why: string): void {
    this.circuit = 'open';
    this.openedAt = this.now();
    this.opens++;
    this.errStreak = 0;
    this.okStreak = 0;
    this.log(`degradation: cache disabled (${why}; last error ${this.lastError}); probing again in ${Math.round(this.cooldown / 1000)}s`);
    this.refresh();
  }

  // ---- load and engine -----------------------------------------------------------------------

  reportMemoryPressure(level: MemoryPressureLevel): void {
    if (level === this.memory) return;
    this.memory = level;
    this.refresh();
  }

  /**
   * Queue pressure with hysteresis: shedding starts when `depth >= limit` and ends once the queue
   * drained to half the limit, so a queue hovering at its limit does not toggle on every request.
   */
  reportQueueDepth(depth: number, limit: number): void {
    if (!(limit > 0)) return;
    const before = this.queueShed;
    if (!this.queueShed && depth >= limit) this.queueShed = true;
    else if (this.queueShed && depth <= Math.floor(limit / 2)) this.queueShed = false;
    this.queueDetail = `${depth}/${limit}`;
    if (before !== this.queueShed) this.refresh();
  }

  /** Feed from EngineClient.on('state', (state, reason) => …). */
  reportEngineState(state: EngineStateInput, reason?: string): void {
    this.engine = state;
    this.engineReason = reason ? sanitizeMessage(reason) : null;
    this.refresh();
  }

  /**
   * Follows an EngineClient's 'state' events (structural type: no engine import here). Also takes
   * the client's current state. Returns a function that detaches the listener.
   */
  attachEngine(client: {
    readonly state?: EngineStateInput;
    on(event: 'state', listener: (state: EngineStateInput, reason?: string) => void): unknown;
    off(event: string, listener: (...args: any[]) => void): unknown;
  }): () => void {
    const listener = (state: EngineStateInput, reason?: string) => this.reportEngineState(state, reason);
    client.on('state', listener);
    if (client.state) this.reportEngineState(client.state);
    return () => {
      client.off('state', listener);
    };
  }

  /**
   * Follows the remote upstreams' circuit breakers: `down` returns the ids whose breaker is open now
   * (read lazily on every status(), as the breakers open and cool down on their own clocks). Call
   * status() after a breaker changed to log the transition at once.
   */
  watchUpstreams(down: () => readonly string[]): void {
    this.upstreamsDown = down;
    this.refresh();
  }

  // ---- outputs -------------------------------------------------------------------------------

  private compute(): { state: DegradationState; cache_enabled: boolean; reason: string | null; upstreams_down?: string[] } {
    const down = [...this.upstreamsDown()];
    const extra = down.length ? { upstreams_down: down } : {};
    const s = this.computeState(down);
    return { ...s, ...extra };
  }

  private computeState(down: string[]): { state: DegradationState; cache_enabled: boolean; reason: string | null } {
    const cache_enabled = this.circuit === 'closed';
    const cacheReason =
      this.circuit === 'open'
        ? `cache disabled after repeated cache errors; probing in ${Math.max(0, Math.ceil((this.openedAt + this.cooldown - this.now()) / 1000))}s`
        : this.circuit === 'half_open'
          ? 'cache disabled; probing'
          : null;
    if (this.engine === 'failed') {
      return { state: 'engine_failed', cache_enabled, reason: `engine stopped after repeated crashes${this.engineReason ? ` (${this.engineReason})` : ''}` };
    }
    if (this.engine === 'restarting') {
      return { state: 'engine_restarting', cache_enabled, reason: `engine restarting${this.engineReason ? ` (${this.engineReason})` : ''}` };
    }
    if (this.memory === 'hard' || this.queueShed) {
      const parts = [];
      if (this.memory === 'hard') parts.push('memory pressure above the hard watermark');
      if (this.queueShed) parts.push(`request queue full (${this.queueDetail})`);
      return { state: 'shedding', cache_enabled, reason: `shedding load: ${parts.join('; ')}` };
    }
    if (!cache_enabled) return { state: 'cache_disabled', cache_enabled, reason: cacheReason };
    if (down.length) {
      const names = down.map((id) => JSON.stringify(id.length > 64 ? `${id.slice(0, 63)}…` : id)).join(', ');
      return {
        state: 'upstream_down',
        cache_enabled,
        reason: `remote model${down.length > 1 ? 's' : ''} ${names} unavailable (upstream circuit open); local models keep serving`,
      };
    }
    return { state: 'normal', cache_enabled, reason: null };
  }

  /** Recomputes the combined status and emits `change` when state, cache_enabled or reason kind changed. */
  private refresh(): void {
    const next = this.compute();
    const prev = this.current;
    const stateChanged =
      next.state !== prev.state || next.cache_enabled !== prev.cache_enabled || (next.upstreams_down ?? []).join('\n') !== (prev.upstreams_down ?? []).join('\n');
    // The cache reason embeds a countdown; only the state change is an event worth logging.
    const reasonChanged = stripCountdown(next.reason) !== stripCountdown(prev.reason);
    if (!stateChanged && !reasonChanged) {
      this.current = { ...prev, reason: next.reason };
      return;
    }
    const status: DegradationStatus = {
      ...next,
      reason: next.reason === null ? null : sanitizeMessage(next.reason),
      since: stateChanged ? new Date(this.now()).toISOString() : prev.since,
    };
    this.current = status;
    if (stateChanged) this.log(`degradation: ${prev.state} → ${status.state} (cache ${status.cache_enabled ? 'enabled' : 'disabled'})${status.reason ? `: ${status.reason}` : ''}`);
    this.emit('change', { status, previous: prev } satisfies DegradationChange);
  }

  status(): DegradationStatus {
    this.tick();
    const next = this.compute();
    if (next.reason !== this.current.reason || (next.upstreams_down ?? []).join('\n') !== (this.current.upstreams_down ?? []).join('\n')) this.refresh();
    const out = { ...this.current };
    if (out.upstreams_down) out.upstreams_down = [...out.upstreams_down];
    return out;
  }

  detail(): DegradationDetail {
    this.tick();
    return {
      circuit: this.circuit,
      consecutiveCacheErrors: this.errStreak,
      consecutiveCacheSuccesses: this.okStreak,
      cooldownMs: this.cooldown,
      probeAt: this.circuit === 'open' ? this.openedAt + this.cooldown : null,
      cacheErrorsTotal: this.errorsTotal,
      circuitOpens: this.opens,
      lastCacheError: this.lastError,
      memoryPressure: this.memory,
      queueShedding: this.queueShed,
      engineState: this.engine,
    };
  }

  /**
   * Admission decision for a new generation request: null = admit, otherwise a 503 ApiError with
   * retryAfter (seconds) for the Retry-After header. A disabled cache never refuses a request.
   */
  admission(): ApiError | null {
    const s = this.status();
    switch (s.state) {
      case 'engine_failed':
        return new ApiError('engine_unavailable', 'The inference engine stopped after repeated crashes; restart the model from the app or CLI.', {
          retryAfter: this.retryAfterS.engine_failed,
        });
      case 'engine_restarting':
        return new ApiError('engine_restarting', 'The inference engine is restarting; retry shortly.', { retryAfter: this.retryAfterS.engine_restarting });
      case 'shedding':
        return this.memory === 'hard'
          ? new ApiError('insufficient_memory', 'The server is under memory pressure and is not accepting new requests; retry shortly.', {
              retryAfter: this.retryAfterS.shedding,
            })
          : new ApiError('server_overloaded', 'The server is overloaded; retry shortly.', { retryAfter: this.retryAfterS.shedding });
      default:
        // normal, cache_disabled, and upstream_down (a remote's own breaker refuses its requests;
        // everything else is served).
        return null;
    }
  }

  override on(event: 'change', listener: (change: DegradationChange) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }
}

function stripCountdown(reason: string | null): string | null {
  return reason === null ? null : reason.replace(/probing in \d+s/, 'probing in Ns');
}

export function createDegradation(opts: DegradationOptions = {}): Degradation {
  return new Degradation(opts);
}
