// The supervised engine process as the server sees it (EngineClient from ../types.ts).
//
// - One engine process at a time, started with OpenBLAS forced into its environment (blas.ts).
// - The requests in flight (generation streams keyed by requestId, request/reply calls keyed by a
//   numeric id) live in engine-requests.ts; events for unknown ids are dropped. This file supervises.
// - Supervision: an unexpected exit (SIGKILL, OOM killer, the uncatchable C++ abort = exit 134)
//   ends every in-flight stream with an `engine_crashed` error, moves to `restarting`, and starts
//   a new process on the same model after an exponential backoff (initialMs · factor^(n-1),
//   capped at maxMs). After `maxConsecutiveCrashes` crashes without a healthy period in between the
//   supervisor gives up (`failed`). "Healthy" = a generation completed, or the process stayed up for
//   `stableAfterMs` after becoming ready; either resets the crash count.
// - The engine's stdout/stderr only ever reach `log`, sanitized. Errors that reach callers are
//   sanitized EngineEvents or Errors carrying an EngineErrorCode in `.code`.
import { EventEmitter } from 'node:events';
import { sanitizeMessage } from '../../common/sanitize.ts';
import type {
  EmbedRequest,
  EmbedResult,
  EngineClient,
  EngineCrashInfo,
  EngineEvent,
  EngineState,
  EngineStats,
  GenerateRequest,
  ModelInfo,
  PrefixKvSnapshot,
} from '../types.ts';
import { engineProcessEnv } from './blas.ts';
import {
  PROTOCOL_VERSION,
  cancelledDoneEvent,
  parseEngineMessage,
  parsePrefixSnapshot,
  validateEmbedRequest,
  validateGenerateRequest,
  type EngineMessage,
  type ParentMessage,
} from './protocol.ts';
import { EngineError, EngineRequests, type SendToProcess } from './engine-requests.ts';
import { resolveEngineClientOptions, type EngineClientOptions, type ResolvedEngineClientOptions } from './engine-client-options.ts';
import { engineExecArgv, type EngineProcessHandle } from './spawn.ts';

interface Child {
  handle: EngineProcessHandle;
  /** Set when we asked it to go (stop/restart); its exit is then not a crash. */
  expectedExit: boolean;
  exited: Promise<void>;
  markExited: () => void;
  fatalMessage: string | null;
  ready: boolean;
}

export { EngineError };
export type { EngineClientOptions };

export function createEngineClient(options: EngineClientOptions = {}): SupervisedEngineClient {
  return new SupervisedEngineClient(options);
}

export class SupervisedEngineClient extends EventEmitter implements EngineClient {
  private _state: EngineState = 'stopped';
  private _model: ModelInfo | null = null;
  private modelDir: string | null = null;
  private child: Child | null = null;
  /** Generation streams and request/reply calls in flight (engine-requests.ts). */
  private readonly requests: EngineRequests;
  private consecutiveCrashes = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private stableTimer: NodeJS.Timeout | null = null;
  /** Bumped by start()/stop() so stale restarts and loads know they were superseded. */
  private generation = 0;
  private pendingStart: { resolve: (m: ModelInfo) => void; reject: (e: Error) => void } | null = null;

  private readonly opts: ResolvedEngineClientOptions;

  constructor(options: EngineClientOptions) {
    super();
    this.opts = resolveEngineClientOptions(options);
    this.requests = new EngineRequests({ cancelGraceMs: this.opts.cancelGraceMs });
  }

  get state(): EngineState {
    return this._state;
  }

  get model(): ModelInfo | null {
    return this._model;
  }

  // ------------------------------------------------------------------ lifecycle

  async start(modelDir: string): Promise<ModelInfo> {
    if (typeof modelDir !== 'string' || modelDir.length === 0) throw new EngineError('model_load_failed', 'No model folder given');
    if (this.child || this.restartTimer) await this.stop();
    const gen = ++this.generation;
    this.modelDir = modelDir;
    this.consecutiveCrashes = 0;
    this._model = null;
    this.setState('loading');
    return new Promise<ModelInfo>((resolve, reject) => {
      this.pendingStart = { resolve, reject };
      this.launch(gen);
    });
  }

  async stop(): Promise<void> {
    this.generation++;
    this.clearTimers();
    const child = this.child;
    this.child = null;
    if (this.pendingStart) {
      this.pendingStart.reject(new EngineError('engine_unavailable', 'The engine was stopped before the model finished loading'));
      this.pendingStart = null;
    }
    if (child) {
      child.expectedExit = true;
      child.handle.send({ type: 'shutdown' } satisfies ParentMessage);
      const killTimer = setTimeout(() => child.handle.kill('SIGKILL'), 5_000);
      await child.exited;
      clearTimeout(killTimer);
    }
    this.requests.endAll('cancelled', new EngineError('engine_unavailable', 'The engine was stopped'));
    this._model = null;
    if (this._state !== 'stopped') this.setState('stopped');
  }

  private launch(gen: number): void {
    const dir = this.modelDir!;
    let resolveExit!: () => void;
    const exited = new Promise<void>((r) => (resolveExit = r));
    const child: Child = {
      handle: undefined as unknown as EngineProcessHandle,
      expectedExit: false,
      exited,
      markExited: resolveExit,
      fatalMessage: null,
      ready: false,
    };
    let loadTimer: NodeJS.Timeout | null = null;
    try {
      child.handle = this.opts.spawn(
        { entry: this.opts.entry, execArgv: engineExecArgv(this.opts.entry), env: engineProcessEnv(this.opts.env) },
        {
          onLog: (line) => this.log(line),
          onMessage: (raw) => {
            // A process being stopped still delivers its last events (the `done` of a cancelled
            // generation); anything else from a superseded process is ignored.
            if (this.child !== child && !child.expectedExit) return;
            const msg = parseEngineMessage(raw);
            if (!msg) {
              this.log('supervisor: dropped a malformed message from the engine');
              return;
            }
            this.onEngineMessage(child, msg, gen, () => {
              if (loadTimer) clearTimeout(loadTimer);
            });
          },
          onExit: (code, signal) => {
            if (loadTimer) clearTimeout(loadTimer);
            child.markExited();
            this.onChildExit(child, code, signal);
          },
        },
      );
    } catch (err) {
      child.markExited();
      this.log(`supervisor: could not start the engine process: ${sanitizeMessage(err)}`);
      this.child = child;
      this.onChildExit(child, null, null);
      return;
    }
    this.child = child;
    child.handle.send({ type: 'load', protocol: PROTOCOL_VERSION, modelDir: dir, options: this.opts.engine } satisfies ParentMessage);
    loadTimer = setTimeout(() => {
      if (this.child === child && !child.ready) {
        this.log('supervisor: model load timed out; killing the engine process');
        child.fatalMessage = 'Model load timed out';
        child.handle.kill('SIGKILL');
      }
    }, this.opts.loadTimeoutMs);
    loadTimer.unref?.();
  }

  private onEngineMessage(child: Child, msg: EngineMessage, gen: number, clearLoadTimer: () => void): void {
    switch (msg.type) {
      case 'hello':
        if (msg.protocol !== PROTOCOL_VERSION) this.log(`supervisor: engine speaks protocol ${msg.protocol}, expected ${PROTOCOL_VERSION}`);
        break;
      case 'ready': {
        clearLoadTimer();
        if (gen !== this.generation || this.child !== child) return;
        child.ready = true;
        this._model = msg.model;
        this.setState('ready');
        this.stableTimer = setTimeout(() => {
          this.stableTimer = null;
          this.consecutiveCrashes = 0;
        }, this.opts.stableAfterMs);
        this.stableTimer.unref?.();
        if (this.pendingStart) {
          this.pendingStart.resolve(msg.model);
          this.pendingStart = null;
        }
        break;
      }
      case 'load_failed': {
        clearLoadTimer();
        if (this.child !== child) return;
        // A clean load error (bad folder, unsupported model) will not fix itself: no retries.
        const reason = sanitizeMessage(msg.message);
        child.expectedExit = true;
        child.handle.send({ type: 'shutdown' } satisfies ParentMessage);
        setTimeout(() => child.handle.kill('SIGKILL'), 5_000).unref?.();
        this.child = null;
        this._model = null;
        this.setState('failed', `Model load failed: ${reason}`);
        if (this.pendingStart) {
          this.pendingStart.reject(new EngineError('model_load_failed', `Model load failed: ${reason}`));
          this.pendingStart = null;
        }
        break;
      }
      case 'fatal':
        child.fatalMessage = sanitizeMessage(msg.message);
        this.log(`engine reported a fatal error: ${child.fatalMessage}`);
        break;
      case 'stats':
      case 'prefix_export_result':
      case 'prefix_import_result':
      case 'prefix_clear_result':
      case 'embed_result':
        this.requests.onReply(msg);
        break;
      case 'event': {
        if (!this.requests.onEvent(msg.event)) return;
        if (msg.event.type === 'done' && msg.event.finishReason !== 'cancelled') {
          // A completed generation proves the process healthy.
          this.consecutiveCrashes = 0;
        }
        break;
      }
    }
  }

  private onChildExit(child: Child, code: number | null, signal: string | null): void {
    if (this.child !== child) return; // stopped / superseded: expected
    this.child = null;
    if (child.expectedExit) return;
    if (this.stableTimer) {
      clearTimeout(this.stableTimer);
      this.stableTimer = null;
    }
    this.consecutiveCrashes++;
    const willRestart = this.consecutiveCrashes < this.opts.maxConsecutiveCrashes;
    const how = signal ? `signal ${signal}` : code === 134 ? 'an abort in native code (exit 134)' : `exit code ${code}`;
    const reason = child.fatalMessage ? `${child.fatalMessage} (${how})` : `The engine process stopped unexpectedly (${how})`;
    this.log(`supervisor: engine process exited: ${reason}`);
    this.requests.endAll('crashed', new EngineError('engine_crashed', 'The engine process crashed'));
    const info: EngineCrashInfo = { exitCode: code, signal, consecutiveCrashes: this.consecutiveCrashes, willRestart };
    this.emit('crash', info);
    if (!willRestart) {
      this.setState('failed', `Gave up after ${this.consecutiveCrashes} consecutive crashes: ${reason}`);
      if (this.pendingStart) {
        this.pendingStart.reject(new EngineError(child.ready ? 'engine_crashed' : 'model_load_failed', `The engine failed to start: ${reason}`));
        this.pendingStart = null;
      }
      return;
    }
    const { initialMs, factor, maxMs } = this.opts.backoff;
    const delay = Math.min(maxMs, initialMs * factor ** (this.consecutiveCrashes - 1));
    // pendingStart (a crash during the first load) stays pending: the restart may still succeed.
    this.setState('restarting', `${reason}; restarting in ${Math.round(delay)} ms`);
    const gen = this.generation;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (gen !== this.generation) return;
      this.launch(gen);
    }, delay);
  }

  private clearTimers(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.restartTimer = this.stableTimer = null;
  }

  private setState(state: EngineState, reason?: string): void {
    this._state = state;
    this.emit('state', state, reason === undefined ? undefined : sanitizeMessage(reason));
  }

  private log(line: string): void {
    try {
      this.opts.log(sanitizeMessage(line));
    } catch {
      /* a broken logger must not break supervision */
    }
  }

  // ------------------------------------------------------------------ requests

  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    return this.stream(req, signal);
  }

  private async *stream(req: GenerateRequest, signal?: AbortSignal): AsyncGenerator<EngineEvent> {
    const requestId = typeof req?.requestId === 'string' ? req.requestId : '';
    const child = this.child;
    if (this._state !== 'ready' || !child) {
      yield {
        type: 'error',
        requestId,
        code: 'engine_unavailable',
        message: this._state === 'loading' ? 'The model is still loading' : this._state === 'restarting' ? 'The engine is restarting' : 'The engine is not running',
      };
      return;
    }
    // Checked here too (the engine re-checks): a malformed request fails without a round trip,
    // and an id the engine could not echo back would otherwise leave the stream waiting.
    const valid = validateGenerateRequest(req);
    if (typeof valid === 'string') {
      yield { type: 'error', requestId, code: 'invalid_request', message: valid };
      return;
    }
    if (this.requests.has(requestId)) {
      yield { type: 'error', requestId, code: 'invalid_request', message: 'A request with this id is already in flight' };
      return;
    }
    if (signal?.aborted) {
      yield cancelledDoneEvent(requestId, req.promptIds?.length ?? 0);
      return;
    }

    yield* this.requests.generate(this.sendTo(child), req, signal);
  }

  /** Sends to `child` while it is the current process (a superseded one gets nothing more). */
  private sendTo(child: Child): SendToProcess {
    return (msg) => this.child === child && child.handle.send(msg);
  }

  /** Sends a message that the engine answers with a reply carrying the same id. */
  private ask(build: (id: number) => ParentMessage, timeoutMs: number, what: string): Promise<EngineMessage> {
    const child = this.child;
    if (!child || this._state !== 'ready') return Promise.reject(new EngineError('engine_unavailable', 'The engine is not running'));
    return this.requests.ask((msg) => child.handle.send(msg), build, timeoutMs, what);
  }

  async stats(): Promise<EngineStats> {
    const msg = await this.ask((id) => ({ type: 'stats', id }), this.opts.statsTimeoutMs, 'stats');
    if (msg.type !== 'stats') throw new EngineError('internal_error', 'Unexpected reply from the engine');
    return msg.stats;
  }

  /**
   * Copies of the engine's prefix KV entries (for the caches layer to persist). Entries this engine
   * process already exported (or imported) are skipped unless `onlyNew` is false.
   */
  async exportPrefixEntries(opts: { minTokens?: number; onlyNew?: boolean } = {}): Promise<PrefixKvSnapshot[]> {
    const minTokens = Math.max(1, Math.floor(opts.minTokens ?? 1));
    const msg = await this.ask((id) => ({ type: 'prefix_export', id, minTokens, onlyNew: opts.onlyNew ?? true }), this.opts.loadTimeoutMs, 'prefix export');
    if (msg.type !== 'prefix_export_result') throw new EngineError('internal_error', 'Unexpected reply from the engine');
    if (msg.error) throw new EngineError('internal_error', `Prefix export failed: ${msg.error}`);
    return msg.entries;
  }

  /** Adds a persisted prefix entry to the engine's cache. Rejects (invalid_request) when it does not fit the model. */
  async importPrefixEntry(entry: PrefixKvSnapshot): Promise<boolean> {
    if (!parsePrefixSnapshot(entry)) throw new EngineError('invalid_request', 'Malformed prefix KV entry');
    const msg = await this.ask((id) => ({ type: 'prefix_import', id, entry }), this.opts.loadTimeoutMs, 'prefix import');
    if (msg.type !== 'prefix_import_result') throw new EngineError('internal_error', 'Unexpected reply from the engine');
    if (msg.error) throw new EngineError('invalid_request', `Prefix entry rejected: ${msg.error}`);
    return msg.ok;
  }

  /**
   * Generations the engine decodes together from now on (settings maxConcurrent changed while
   * serving): sent to the running engine process, and kept for the next load or restart.
   */
  setMaxBatch(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError('maxBatch must be an integer between 1 and 256');
    this.opts.engine = { ...this.opts.engine, maxBatch: n };
    try {
      this.child?.handle.send({ type: 'configure', maxBatch: n } satisfies ParentMessage);
    } catch {
      // a process on its way out: the next one is loaded with the new value
    }
  }

  /** Drops the engine's prefix-cache entries (soft memory pressure); resolves with the bytes released. */
  async clearPrefixCache(): Promise<number> {
    if (this._state !== 'ready') return 0;
    const msg = await this.ask((id) => ({ type: 'prefix_clear', id }), this.opts.statsTimeoutMs, 'prefix clear');
    return msg.type === 'prefix_clear_result' ? msg.freedBytes : 0;
  }

  /**
   * Embeddings of a batch of token-id inputs. Queued in the engine with generations (never
   * interleaved with one, never touching the prefix cache). Aborting `signal` cancels it (queued:
   * at once; running: between inputs/chunks) and rejects with an AbortError. A crash rejects with
   * engine_crashed, like stats().
   */
  async embed(req: EmbedRequest, signal?: AbortSignal): Promise<EmbedResult> {
    const valid = validateEmbedRequest(req);
    if (typeof valid === 'string') throw new EngineError('invalid_request', valid);
    const aborted = () => Object.assign(new Error('The embedding request was cancelled'), { name: 'AbortError' });
    if (signal?.aborted) throw aborted();
    const child = this.child;
    const onAbort = (): void => {
      if (this.child === child) child?.handle.send({ type: 'cancel', requestId: valid.requestId } satisfies ParentMessage);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let msg: EngineMessage;
    try {
      // No timeout of its own: a batch may legitimately take minutes; the caller's signal cancels
      // and a crash rejects. (setTimeout's largest delay, about 24.8 days.)
      msg = await this.ask((id) => ({ type: 'embed', id, request: valid }), 2 ** 31 - 1, 'embeddings');
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    if (msg.type !== 'embed_result') throw new EngineError('internal_error', 'Unexpected reply from the engine');
    if (msg.cancelled) throw aborted();
    if (msg.error) throw new EngineError(msg.error.code, msg.error.message);
    if (msg.embeddings.length !== valid.inputs.length) throw new EngineError('internal_error', 'The engine returned the wrong number of embeddings');
    // A completed request proves the process healthy (as a completed generation does).
    this.consecutiveCrashes = 0;
    return { embeddings: msg.embeddings, promptTokens: msg.promptTokens, pooling: msg.pooling };
  }

  /** The engine process id (tests and diagnostics); undefined when none is running. */
  get pid(): number | undefined {
    return this.child?.handle.pid;
  }
}

