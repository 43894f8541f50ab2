// Owns "which model is loaded". One model at a time in the engine process; loads are single-flight
// (ten concurrent first requests cause one load: LM Studio #1751 loaded N copies) and serialized
// (a switch waits for the running load and for requests still using the old model); a memory-fit
// check refuses models that cannot fit with a reason (non-retryable 400 `model_too_large`) instead
// of letting the engine abort; idle unload after a configurable time (Ollama's keep-alive: default
// 5 minutes, 0 = never) frees RAM, and the next request loads the model again.
import { EventEmitter, once } from 'node:events';
import type { EngineClient, EngineCrashInfo, EngineState, ModelInfo } from '../engine/types.ts';
import { ApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { availableMemoryBytes, estimateFit, type FitEstimate } from './fit.ts';
import { findModel as findInLibrary, shapeOf, type LibraryEntry, type ListOptions } from './library.ts';
import { quoteUntrusted } from './validate.ts';

export const DEFAULT_IDLE_UNLOAD_MS = 5 * 60 * 1000;

export type UnloadReason = 'idle' | 'switch' | 'manual' | 'engine_stopped' | 'closed';

export interface ModelManagerOptions<X = unknown> {
  engine: EngineClient;
  dataDir: string;
  /** Library options (extra folders, configured context, overhead); a getter follows settings changes. */
  library?: ListOptions | (() => ListOptions);
  /** Idle time before the model is unloaded; 0 = never. Default 5 minutes. */
  idleUnloadMs?: number;
  /** Memory the next model may use, before counting what unloading the current one frees. */
  availableBytes?: () => number;
  /** Skip the fit refusal (the user's explicit override, like LM Studio's guardrail switch). */
  allowOversize?: boolean;
  /** Lookup override (default: findModel over the library). */
  find?: (id: string) => Promise<LibraryEntry | null>;
  /**
   * Per-model companion loaded with the model and dropped with it, e.g. the text pipeline
   * (`(dir) => loadTextPipeline(dir)`). Runs before engine.start, so a bad tokenizer fails fast.
   */
  loadExtras?: (dir: string, entry: LibraryEntry) => Promise<X>;
  /**
   * Awaited before the loaded model is replaced or unloaded (switch, idle, manual, closed), after
   * the requests using it have finished and while the engine still holds it: e.g. to save its
   * prompt-prefix KV to disk, which a switch would otherwise throw away. Bounded by `hookTimeoutMs`;
   * a failure or timeout is reported as a `release_hook` event and never blocks the switch.
   */
  beforeRelease?: (id: string, reason: UnloadReason) => Promise<unknown> | unknown;
  /**
   * Awaited after the engine has loaded a model and before requests waiting for it proceed: e.g.
   * to restore that model's saved prompt prefixes, so the first request after a switch is warm.
   * Bounded by `hookTimeoutMs` like beforeRelease.
   */
  afterLoad?: (id: string, info: ModelInfo) => Promise<unknown> | unknown;
  /** Upper bound for each hook call (default 5 s): a slow disk delays a switch by at most this. */
  hookTimeoutMs?: number;
  /**
   * Arms the hook timeout: calls `fire` after `ms`, returns a cancel function. Default: an unref'd
   * setTimeout. Tests pass their own to check the time a hook is given without waiting for it.
   */
  hookTimer?: (ms: number, fire: () => void) => () => void;
}

function realTimer(ms: number, fire: () => void): () => void {
  const t = setTimeout(fire, ms);
  t.unref?.();
  return () => clearTimeout(t);
}

export const DEFAULT_HOOK_TIMEOUT_MS = 5_000;

/** What happened to a beforeRelease/afterLoad call (the `release_hook` / `load_hook` events). */
export interface HookOutcome {
  id: string;
  hook: 'beforeRelease' | 'afterLoad';
  reason?: UnloadReason;
  outcome: 'ok' | 'error' | 'timeout';
  ms: number;
  /** Sanitized message when outcome is 'error'. */
  error?: string;
}

export interface ModelStatus {
  state: 'empty' | 'loading' | 'loaded';
  /** The loaded model's id. */
  modelId: string | null;
  /** The model being loaded, if any. */
  loadingId: string | null;
  idleUnloadMs: number;
  lastUsedAt: number | null;
  /** When the idle unload will happen (ms epoch), if scheduled. */
  unloadAt: number | null;
  activeRequests: number;
}

export interface ModelLease<X = unknown> {
  id: string;
  info: ModelInfo;
  /** What `loadExtras` returned for this model (undefined without it). */
  extras: X;
  /** Call once the request is finished (idempotent). */
  release(): void;
}

/**
 * Events: `loading` ({ id }), `loaded` ({ id, info, loadMs }), `unloaded` ({ id, reason }),
 * `load_failed` ({ id, error: ApiError }), `status` (ModelStatus) after every change,
 * `release_hook` / `load_hook` (HookOutcome) after each beforeRelease / afterLoad call.
 */
export class ModelManager<X = unknown> extends EventEmitter {
  private readonly engine: EngineClient;
  private readonly opts: ModelManagerOptions<X>;
  private current: { id: string; entry: LibraryEntry; info: ModelInfo; extras: X } | null = null;
  private loadingId: string | null = null;
  private readonly pending = new Map<string, Promise<ModelInfo>>();
  private chain: Promise<unknown> = Promise.resolve();
  private leases = 0;
  private idleMs: number;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastUsedAt: number | null = null;
  private unloadAt: number | null = null;
  private ourStop = false;
  private closed = false;
  /** True while beforeRelease runs: the outgoing model takes no new requests (they queue behind). */
  private releasing = false;
  /**
   * Set when the engine's supervisor gave up ("gave up after N consecutive crashes"). It sticks:
   * requests get 503 engine_gave_up instead of silently reloading the model that keeps crashing,
   * until an explicit load (POST /v1/models/load, the tray) clears it.
   */
  private gaveUp: { id: string | null; reason: string } | null = null;
  /** Request-driven load failures per model: each one doubles the wait before the next attempt. */
  private readonly loadFailures = new Map<string, { count: number; until: number }>();
  private readonly onEngineCrash = (info: EngineCrashInfo) => {
    if (info.willRestart) return;
    this.gaveUp = { id: this.current?.id ?? this.loadingId, reason: `the engine crashed ${info.consecutiveCrashes} times in a row` };
  };
  private readonly onEngineState = (state: EngineState) => {
    // The supervisor gave up or the engine was stopped by someone else: nothing is loaded any more.
    if ((state === 'failed' || (state === 'stopped' && !this.ourStop)) && this.current && !this.loadingId) {
      const id = this.current.id;
      this.current = null;
      this.clearIdle();
      this.emit('unloaded', { id, reason: 'engine_stopped' satisfies UnloadReason });
      this.emitStatus();
    }
  };

  constructor(opts: ModelManagerOptions<X>) {
    super();
    this.engine = opts.engine;
    this.opts = opts;
    this.idleMs = normalizeIdle(opts.idleUnloadMs ?? DEFAULT_IDLE_UNLOAD_MS);
    this.engine.on('state', this.onEngineState);
    this.engine.on('crash', this.onEngineCrash);
  }

  get loadedId(): string | null {
    return this.current?.id ?? null;
  }

  get loadedInfo(): ModelInfo | null {
    return this.current?.info ?? null;
  }

  /** The loaded model's library entry (internal: has the folder path) and extras. */
  get loaded(): { id: string; entry: LibraryEntry; info: ModelInfo; extras: X } | null {
    return this.current ? { ...this.current } : null;
  }

  status(): ModelStatus {
    return {
      state: this.loadingId ? 'loading' : this.current ? 'loaded' : 'empty',
      modelId: this.current?.id ?? null,
      loadingId: this.loadingId,
      idleUnloadMs: this.idleMs,
      lastUsedAt: this.lastUsedAt,
      unloadAt: this.unloadAt,
      activeRequests: this.leases,
    };
  }

  setIdleUnloadMs(ms: number): void {
    this.idleMs = normalizeIdle(ms);
    this.armIdle();
    this.emitStatus();
  }

  /**
   * Loads `id` unless it is already loaded; concurrent calls for the same id share one load.
   * `explicit` (a user's load: POST /v1/models/load, the tray): also after the engine gave up or while
   * earlier failures back off; request-driven loads (the default) are refused then.
   */
  ensureLoaded(id: string, opts: { explicit?: boolean } = {}): Promise<ModelInfo> {
    if (this.closed) return Promise.reject(new ApiError('engine_unavailable', 'The model manager is shut down'));
    if (opts.explicit) {
      this.gaveUp = null;
      this.loadFailures.delete(id);
    } else if (!(this.current?.id === id && this.engineHasModel())) {
      const refused = this.refusal(id);
      if (refused) return Promise.reject(refused);
    }
    if (this.current?.id === id && !this.loadingId && !this.releasing && this.engineHasModel()) {
      this.touch();
      return Promise.resolve(this.current.info);
    }
    const running = this.pending.get(id);
    if (running) return running;
    const p = this.enqueue(() => this.load(id));
    this.pending.set(id, p);
    const clear = () => {
      if (this.pending.get(id) === p) this.pending.delete(id);
    };
    p.then(clear, clear);
    return p;
  }

  /**
   * Loads `id` (if needed) and holds it for one request: no idle unload and no switch to another
   * model until `release()`. Use this around every generation.
   */
  async acquire(id: string): Promise<ModelLease<X>> {
    for (;;) {
      const info = await this.ensureLoaded(id);
      // A switch may have begun between the load finishing and this continuation; then go again.
      if (this.current?.id !== id || this.current.info !== info || this.releasing) continue;
      this.leases++;
      this.clearIdle();
      this.emitStatus();
      let released = false;
      const extras = this.current.extras;
      return {
        id,
        info,
        extras,
        release: () => {
          if (released) return;
          released = true;
          this.leases--;
          this.touch();
          if (this.leases === 0) this.emit('drained');
        },
      };
    }
  }

  /** Marks the model as used now (restarts the idle countdown). */
  touch(): void {
    this.lastUsedAt = Date.now();
    this.armIdle();
  }

  /** Unloads the current model (after the requests using it finish). */
  unload(reason: UnloadReason = 'manual'): Promise<void> {
    return this.enqueue(() => this.doUnload(reason));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.unload('closed').catch(() => {});
    this.closed = true;
    this.clearIdle();
    this.engine.off('state', this.onEngineState);
    this.engine.off('crash', this.onEngineCrash);
  }

  /** Whether the engine gave up (sticky until an explicit load) — for status displays. */
  get engineGaveUp(): { id: string | null; reason: string } | null {
    return this.gaveUp ? { ...this.gaveUp } : null;
  }

  // ------------------------------------------------------------------ internals

  private refusal(id: string): ApiError | null {
    if (this.gaveUp) {
      const which = this.gaveUp.id ? ` with ${quoteUntrusted(this.gaveUp.id)}` : '';
      return new ApiError(
        'engine_gave_up',
        `The engine stopped: ${this.gaveUp.reason}${which}, so models are not reloaded automatically. Load a model explicitly (POST /v1/models/load, the Models page or the tray) or restart the server.`,
      );
    }
    const f = this.loadFailures.get(id);
    const left = f ? f.until - Date.now() : 0;
    if (f && left > 0) {
      const s = Math.ceil(left / 1000);
      return new ApiError('engine_unavailable', `Loading ${quoteUntrusted(id)} failed ${f.count} time(s) in a row; the next attempt is allowed in ${s} s (or load it explicitly).`, { retryAfter: s });
    }
    return null;
  }

  private noteLoadFailure(id: string): void {
    const count = (this.loadFailures.get(id)?.count ?? 0) + 1;
    // 2 s, 4 s, 8 s … at most a minute between request-driven attempts
    this.loadFailures.set(id, { count, until: Date.now() + Math.min(60_000, 1000 * 2 ** count) });
    if (this.loadFailures.size > 256) this.loadFailures.delete(this.loadFailures.keys().next().value as string);
  }

  private engineHasModel(): boolean {
    const s = this.engine.state;
    return s === 'ready' || s === 'restarting'; // restarting: the supervisor reloads the same folder
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private libraryOptions(): ListOptions {
    const l = this.opts.library;
    return typeof l === 'function' ? l() : l ?? {};
  }

  /** Fit check for `entry`, counting the memory the currently loaded model would give back. */
  estimate(entry: LibraryEntry): FitEstimate {
    const lib = this.libraryOptions();
    let available = this.opts.availableBytes ? this.opts.availableBytes() : lib.availableBytes ?? availableMemoryBytes();
    if (this.current && this.current.id !== entry.id) available += this.current.entry.fitsInMemory.needBytes || 0;
    return estimateFit(shapeOf(entry), { ...lib, availableBytes: available });
  }

  private async load(id: string): Promise<ModelInfo> {
    if (this.current?.id === id && this.engineHasModel()) {
      this.touch();
      return this.current.info;
    }
    const find = this.opts.find ?? ((x: string) => findInLibrary(x, this.opts.dataDir, this.libraryOptions()));
    const entry = await find(id);
    if (!entry) {
      throw new ApiError('model_not_found', `The model ${quoteUntrusted(id)} does not exist or is not downloaded`, { param: 'model' });
    }
    const fit = this.estimate(entry);
    if (!fit.fits && !this.opts.allowOversize) {
      const error = new ApiError('model_too_large', `Model ${quoteUntrusted(id)} was not loaded. ${fit.reason}.`, { param: 'model' });
      this.emit('load_failed', { id, error });
      throw error;
    }
    // Companion (e.g. tokenizer + chat template) first: if it fails, the current model stays.
    let extras: X;
    try {
      extras = (this.opts.loadExtras ? await this.opts.loadExtras(entry.dir, entry) : undefined) as X;
    } catch (err) {
      const error = new ApiError('model_load_failed', `Could not load ${quoteUntrusted(id)}: ${sanitizeMessage(err)}`);
      this.emit('load_failed', { id, error });
      throw error;
    }
    // Let requests still generating on the previous model finish before replacing it.
    while (this.leases > 0) await once(this, 'drained');
    if (this.current) await this.release(this.current.id, 'switch');
    // (Synchronous from here until engine.start: no lease can slip in on the old model.)
    const previous = this.current;
    this.current = null;
    this.clearIdle();
    this.loadingId = id;
    if (previous) this.emit('unloaded', { id: previous.id, reason: 'switch' satisfies UnloadReason });
    this.emit('loading', { id });
    this.emitStatus();
    const t0 = Date.now();
    try {
      const info = await this.engine.start(entry.dir);
      await this.runHook({ id, hook: 'afterLoad' }, () => this.opts.afterLoad?.(id, info));
      this.current = { id, entry, info, extras };
      this.loadingId = null;
      this.loadFailures.delete(id);
      this.emit('loaded', { id, info, loadMs: Date.now() - t0 });
      this.touch();
      this.emitStatus();
      return info;
    } catch (err) {
      this.loadingId = null;
      const code = (err as { code?: string })?.code;
      const error =
        code === 'engine_unavailable'
          ? new ApiError('engine_unavailable', `The engine is not available to load ${quoteUntrusted(id)}`)
          : new ApiError('model_load_failed', `Could not load ${quoteUntrusted(id)}: ${sanitizeMessage(err)}`);
      this.noteLoadFailure(id);
      this.emit('load_failed', { id, error });
      this.emitStatus();
      throw error;
    }
  }

  private async doUnload(reason: UnloadReason): Promise<void> {
    while (this.leases > 0) await once(this, 'drained');
    this.clearIdle();
    if (!this.current) return;
    await this.release(this.current.id, reason);
    if (!this.current) return; // the engine died meanwhile (onEngineState reported it)
    const { id } = this.current;
    this.current = null;
    this.ourStop = true;
    try {
      await this.engine.stop();
    } finally {
      this.ourStop = false;
    }
    this.emit('unloaded', { id, reason });
    this.emitStatus();
  }

  /**
   * beforeRelease for the outgoing model, with new requests for it held back meanwhile; then waits
   * for any request that had already been admitted just before.
   */
  private async release(id: string, reason: UnloadReason): Promise<void> {
    if (this.opts.beforeRelease && this.engineHasModel()) {
      this.releasing = true;
      try {
        await this.runHook({ id, hook: 'beforeRelease', reason }, () => this.opts.beforeRelease!(id, reason));
      } finally {
        this.releasing = false;
      }
    }
    while (this.leases > 0) await once(this, 'drained');
  }

  /** Runs one hook within hookTimeoutMs; never throws (the outcome is an event). */
  private async runHook(what: Pick<HookOutcome, 'id' | 'hook' | 'reason'>, fn: () => unknown): Promise<void> {
    if (!(what.hook === 'afterLoad' ? this.opts.afterLoad : this.opts.beforeRelease)) return;
    const t0 = Date.now();
    const limit = this.opts.hookTimeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
    let cancel = () => {};
    const TIMEOUT = Symbol('timeout');
    const timedOut = new Promise<typeof TIMEOUT>((r) => {
      cancel = (this.opts.hookTimer ?? realTimer)(limit, () => r(TIMEOUT));
    });
    let outcome: HookOutcome;
    try {
      const r = await Promise.race([Promise.resolve().then(fn), timedOut]);
      outcome = { ...what, outcome: r === TIMEOUT ? 'timeout' : 'ok', ms: Date.now() - t0 };
    } catch (err) {
      outcome = { ...what, outcome: 'error', ms: Date.now() - t0, error: sanitizeMessage(err) };
    } finally {
      cancel();
    }
    this.emit(what.hook === 'afterLoad' ? 'load_hook' : 'release_hook', outcome);
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.unloadAt = null;
  }

  private armIdle(): void {
    this.clearIdle();
    if (this.idleMs <= 0 || !this.current || this.leases > 0 || this.closed) return;
    this.unloadAt = Date.now() + this.idleMs;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.unloadAt = null;
      // Only if still idle when the unload actually runs (a request may have arrived meanwhile).
      this.enqueue(async () => {
        const idleFor = Date.now() - (this.lastUsedAt ?? 0);
        if (this.leases > 0 || this.pending.size > 0 || idleFor < this.idleMs - 5) return this.armIdle();
        await this.doUnload('idle');
      }).catch(() => {});
    }, this.idleMs);
    this.idleTimer.unref?.(); // an idle timer alone must not keep the process alive
  }

  private emitStatus(): void {
    this.emit('status', this.status());
  }
}

function normalizeIdle(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? Math.floor(ms) : 0;
}

export function createModelManager<X = unknown>(opts: ModelManagerOptions<X>): ModelManager<X> {
  return new ModelManager<X>(opts);
}
