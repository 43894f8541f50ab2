// Renders + tokenizes large prompts off the event loop (issue #11 item 1). Rendering a chat template
// and BPE-encoding are O(request size) and synchronous: a near-limit prompt, thousands of messages,
// many large tool schemas or a big embeddings batch used to hold the event loop for seconds, so
// /health and every running stream stalled. Small requests stay inline (a worker round trip would
// cost more than their render); anything past `inlineMaxChars` characters (or MAX_INLINE_MESSAGES
// messages) goes to a small pool of worker threads (prompt-worker.ts) running the same code
// (prompt-render.ts), so the token ids, constraint and cache keys are the same either way.
//
// A small own pool rather than piscina/tinypool: what we need beyond "run a function in a thread"
// is the part those libraries do not do for us — a per-worker cache of text pipelines keyed by
// model, the inline/worker split, error mapping to ApiErrors, and cancellation that stops a running
// render (terminating that worker; piscina does the same) — and the rest is ~100 lines.
//  - at most `workers` threads, started on demand; after `idleMs` without work all but one are
//    stopped (each holds its own tokenizer: tens of MB for Qwen3's). One stays, so only the first
//    large request after start pays a worker's start-up (loading the tokenizer, ~0.5 s);
//  - at most `maxQueue` tasks waiting for a thread; more → 503 queue_full + Retry-After;
//  - an aborted task (client gone, shutdown) leaves the queue, or, when running, its worker is
//    terminated at once (a replacement starts on the next task);
//  - a worker that cannot load the model's pipeline (folder changed or gone since the model was
//    loaded: the fingerprints differ) → that model renders inline, as before.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ApiError } from '../common/errors.ts';
import type { GenerationConstraint } from '../engine/types.ts';
import type { ServerTextPipeline } from './hooks.ts';
import sjson from 'secure-json-parse';
import type { EarlyOptions } from './early-refusal.ts';
import { ownsArrayBuffer } from './body-reader.ts';
import { parseJsonBody } from './json-body.ts';
import { textSize } from './prompt-bounds.ts';
import { encodeTexts, fromWireError, renderPrompt, type PromptInput, type PromptWork, type WireError } from './prompt-render.ts';
import { applySchemaVerdicts, type SchemaVerdicts } from './schema-verdicts.ts';

/** Where a model's pipeline comes from, for a worker to load the same one. */
export interface WorkerModelRef {
  key: string;
  dir: string;
  tokenizerFingerprint: string;
  templateFingerprint: string;
}

export type WorkerTask =
  | { id: number; model: WorkerModelRef; op: 'render'; input: PromptInput; withConstraint: boolean; keepIdsBelow: number }
  | { id: number; model: WorkerModelRef; op: 'encode'; texts: string[] }
  | { id: number; op: 'parse'; bytes: Uint8Array; maxDepth: number; path: string; early: EarlyOptions };

export type WorkerReply =
  | { id: number; kind: 'render'; count: number; ids: Uint32Array | null; opensThinking: boolean; constraint: { ok: GenerationConstraint | null } | { error: WireError } }
  | { id: number; kind: 'encode'; lengths: Uint32Array; flat: Uint32Array }
  /** `bytes`: the body, moved back from the worker (it was moved there), for the parse here. */
  | { id: number; kind: 'parsed'; verdicts: SchemaVerdicts; plain: boolean; bytes: Uint8Array }
  | { id: number; kind: 'error'; error: WireError }
  | { id: number; kind: 'unavailable' };

/** A rendered prompt; `ids` is null when it has `keepIdsBelow` tokens or more (only the count is known). */
export interface RenderedPrompt extends Omit<PromptWork, 'ids'> {
  ids: number[] | null;
  count: number;
  /** Where it was rendered (tests and the bench look). */
  where: 'inline' | 'worker';
}

export interface PromptPoolOptions {
  /** Worker threads at most; 0 = everything inline (the old behaviour). */
  workers: number;
  /** Tasks waiting for a worker at most. */
  maxQueue: number;
  /** Requests with at most this many characters (messages + tools, prompt, inputs) render inline. */
  inlineMaxChars: number;
  retryAfterSeconds: number;
  /** Stop all workers but one after this long without work. */
  idleMs?: number;
  /** The worker script (tests); default prompt-worker.ts/.js next to this module. */
  entry?: string;
}

/** More messages than this go to a worker whatever their size (the template loops over each). */
export const MAX_INLINE_MESSAGES = 256;

export function defaultPromptWorkerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = path.dirname(here);
  if (here.endsWith('.ts')) return path.join(dir, 'prompt-worker.ts');
  // Bundled (scripts/build-main.mjs): dist/main/prompt-worker.js, next to this chunk or one level up.
  const near = path.join(dir, 'prompt-worker.js');
  return existsSync(near) ? near : path.join(dir, '..', 'prompt-worker.js');
}

/** A `.ts` worker (running from sources) starts through prompt-worker-tsx.mjs, which registers tsx first. */
function spawnWorker(entry: string): Worker {
  if (!entry.endsWith('.ts')) return new Worker(entry);
  return new Worker(new URL('./prompt-worker-tsx.mjs', import.meta.url), { workerData: { promptWorkerEntry: pathToFileURL(entry).href } });
}

interface Task {
  msg: WorkerTask;
  /** Moved to the worker with the message (the sender's copy becomes unusable). */
  transfer: ArrayBuffer[];
  signal?: AbortSignal;
  onAbort?: () => void;
  resolve(reply: WorkerReply): void;
  reject(err: unknown): void;
}

interface Slot {
  worker: Worker;
  task: Task | null;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

export class PromptPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Models whose pipeline a worker could not reproduce: rendered inline. */
  private readonly inlineOnly = new Set<string>();
  private readonly refs = new WeakMap<object, WorkerModelRef | null>();
  private readonly entry: string;
  readonly stats = { inline: 0, worker: 0, parsed: 0, parseRefused: 0, cancelled: 0, workersStarted: 0, crashed: 0, refusedFull: 0 };

  constructor(private readonly opts: PromptPoolOptions) {
    this.entry = opts.entry ?? defaultPromptWorkerEntry();
  }

  /** Tasks running in workers / waiting for one. */
  get load(): { running: number; queued: number; workers: number } {
    return { running: this.slots.filter((s) => s.task).length, queued: this.queue.length, workers: this.slots.length };
  }

  /**
   * Renders + tokenizes `input` for `text`'s model and builds its constraint. Throws the same
   * ApiErrors as inline rendering; rejects with the signal's reason when aborted.
   */
  async render(
    text: ServerTextPipeline,
    input: PromptInput,
    opts: { signal?: AbortSignal; withConstraint?: boolean; keepIdsBelow?: number } = {},
  ): Promise<RenderedPrompt> {
    const keepIdsBelow = opts.keepIdsBelow ?? Number.MAX_SAFE_INTEGER;
    const ref = this.big(input) ? this.refOf(text) : null;
    if (ref) {
      const reply = await this.submit({ id: this.nextId++, model: ref, op: 'render', input, withConstraint: opts.withConstraint !== false, keepIdsBelow }, opts.signal);
      if (reply.kind === 'render') {
        this.stats.worker++;
        const constraint = 'error' in reply.constraint ? { error: fromWireError(reply.constraint.error) } : reply.constraint;
        return { ids: reply.ids ? Array.from(reply.ids) : null, count: reply.count, opensThinking: reply.opensThinking, constraint, where: 'worker' };
      }
      if (reply.kind === 'error') throw fromWireError(reply.error);
      this.inlineOnly.add(ref.key); // 'unavailable': render here, as before
    }
    opts.signal?.throwIfAborted();
    this.stats.inline++;
    const work = renderPrompt(input, text, { withConstraint: opts.withConstraint });
    return { ...work, ids: work.ids.length < keepIdsBelow ? work.ids : null, count: work.ids.length, where: 'inline' };
  }

  /** Tokenizes embedding inputs (each as `text.encode` would). */
  async encodeTexts(text: ServerTextPipeline, texts: string[], signal?: AbortSignal): Promise<number[][]> {
    let chars = 0;
    for (const s of texts) chars += s.length;
    const ref = chars > this.opts.inlineMaxChars ? this.refOf(text) : null;
    if (ref) {
      const reply = await this.submit({ id: this.nextId++, model: ref, op: 'encode', texts }, signal);
      if (reply.kind === 'encode') {
        this.stats.worker++;
        const out: number[][] = [];
        let at = 0;
        for (const n of reply.lengths) {
          out.push(Array.from(reply.flat.subarray(at, at + n)));
          at += n;
        }
        return out;
      }
      if (reply.kind === 'error') throw fromWireError(reply.error);
      this.inlineOnly.add(ref.key);
    }
    signal?.throwIfAborted();
    this.stats.inline++;
    return encodeTexts(texts, text);
  }

  /**
   * Checks a large JSON request body in a worker: parseJsonBody there (UTF-8, depth, proto keys,
   * top-level object: the same ApiErrors), its schemas compiled (schema-verdicts.ts), and what the
   * route would certainly refuse refused there (early-refusal.ts) — so a maximal refused request
   * costs the event loop nothing but sending the error. Otherwise the value is parsed here again
   * (JSON.parse of checked text: cheaper than receiving a structured clone of it, which for 100,000
   * messages took longer than the parse) with the worker's schema verdicts attached.
   */
  async parseJson(buf: Buffer, opts: { maxDepth: number; path: string; early: EarlyOptions }): Promise<Record<string, unknown>> {
    if (this.opts.workers <= 0 || this.closed) return parseJsonBody(buf, opts.maxDepth);
    // The body moves to the worker (and back with a 'parsed' reply): no copy when it owns its
    // ArrayBuffer (body-reader.ts reads large bodies that way); otherwise one copy here.
    const bytes = ownsArrayBuffer(buf) ? new Uint8Array(buf.buffer, 0, buf.byteLength) : new Uint8Array(buf);
    const reply = await this.submit({ id: this.nextId++, op: 'parse', bytes, ...opts }, undefined, [bytes.buffer as ArrayBuffer]);
    if (reply.kind === 'error') {
      this.stats.parseRefused++;
      throw fromWireError(reply.error);
    }
    if (reply.kind !== 'parsed') throw new ApiError('internal_error', 'The request body could not be parsed');
    this.stats.parsed++;
    let text = Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength).toString('utf8'); // valid UTF-8: the worker checked
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const value = (reply.plain ? JSON.parse(text) : sjson.parse(text, undefined, { protoAction: 'remove', constructorAction: 'remove' })) as Record<string, unknown>;
    applySchemaVerdicts(value, reply.verdicts);
    return value;
  }

  /** Stops every worker; waiting and running tasks are rejected with `reason`. */
  async close(reason: unknown = new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: this.opts.retryAfterSeconds })): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const t of this.queue.splice(0)) this.settle(t, () => t.reject(reason));
    await Promise.all(
      this.slots.splice(0).map((s) => {
        if (s.task) this.settle(s.task, () => s.task!.reject(reason));
        return s.worker.terminate().catch(() => 0);
      }),
    );
  }

  private big(input: PromptInput): boolean {
    const limit = this.opts.inlineMaxChars;
    if (input.kind === 'completions') return typeof input.prompt === 'string' && input.prompt.length > limit;
    if (input.messages.length > MAX_INLINE_MESSAGES) return true;
    // textSize stops counting past the limit: deciding costs at most ~limit characters of work.
    let size = textSize(input.messages, limit);
    if (size <= limit && input.tools) size += textSize(input.tools, limit);
    if (size <= limit && input.constraint) size += textSize(input.constraint, limit);
    return size > limit;
  }

  private refOf(text: ServerTextPipeline): WorkerModelRef | null {
    if (this.opts.workers <= 0 || this.closed) return null;
    let ref = this.refs.get(text);
    if (ref === undefined) {
      const t = text;
      const dir = t.origin?.modelDir;
      ref =
        typeof dir === 'string' && typeof t.tokenizerFingerprint === 'string' && typeof t.templateFingerprint === 'string'
          ? { key: `${t.tokenizerFingerprint}:${t.templateFingerprint}:${dir}`, dir, tokenizerFingerprint: t.tokenizerFingerprint, templateFingerprint: t.templateFingerprint }
          : null;
      this.refs.set(text, ref);
    }
    return ref && !this.inlineOnly.has(ref.key) ? ref : null;
  }

  private submit(msg: WorkerTask, signal?: AbortSignal, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    return new Promise<WorkerReply>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const task: Task = { msg, transfer, signal, resolve, reject };
      const free = this.freeSlot();
      if (!free && this.queue.length >= this.opts.maxQueue) {
        this.stats.refusedFull++;
        return reject(new ApiError('queue_full', 'Too many large prompts are being prepared; retry shortly', { retryAfter: this.opts.retryAfterSeconds }));
      }
      if (signal) {
        task.onAbort = () => this.abort(task);
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      if (this.idleTimer) (clearTimeout(this.idleTimer), (this.idleTimer = null));
      if (free) this.start(free, task);
      else this.queue.push(task);
    });
  }

  /** An idle worker, or a new one while under the limit. */
  private freeSlot(): Slot | null {
    const idle = this.slots.find((s) => !s.task);
    if (idle) return idle;
    if (this.slots.length >= this.opts.workers) return null;
    const worker = spawnWorker(this.entry);
    this.stats.workersStarted++;
    const slot: Slot = { worker, task: null };
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      const t = slot.task;
      if (!t || t.msg.id !== reply.id) return;
      slot.task = null;
      this.settle(t, () => t.resolve(reply));
      this.next(slot);
    });
    const gone = () => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return; // terminated on purpose
      this.slots.splice(i, 1);
      const t = slot.task;
      slot.task = null;
      if (t) {
        this.stats.crashed++;
        this.settle(t, () => t.reject(new ApiError('internal_error', 'The prompt could not be prepared (its worker stopped); retry the request')));
      }
      this.pump();
    };
    worker.on('error', gone);
    worker.on('exit', gone);
    this.slots.push(slot);
    return slot;
  }

  private start(slot: Slot, task: Task): void {
    slot.task = task;
    slot.worker.postMessage(task.msg, task.transfer);
  }

  private next(slot: Slot): void {
    const t = this.queue.shift();
    if (t) return this.start(slot, t);
    if (this.slots.every((s) => !s.task) && !this.idleTimer && !this.closed) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        if (this.queue.length || this.slots.some((s) => s.task)) return;
        for (const s of this.slots.splice(1)) void s.worker.terminate().catch(() => 0);
      }, this.opts.idleMs ?? 60_000);
      this.idleTimer.unref();
    }
  }

  /** Starts queued tasks on free or new workers (after a worker went away). */
  private pump(): void {
    while (this.queue.length && !this.closed) {
      const slot = this.freeSlot();
      if (!slot) return;
      this.start(slot, this.queue.shift()!);
    }
  }

  private abort(task: Task): void {
    const q = this.queue.indexOf(task);
    if (q >= 0) this.queue.splice(q, 1);
    const slot = this.slots.find((s) => s.task === task);
    if (slot) {
      // A running render cannot be interrupted from outside but by stopping its thread.
      this.slots.splice(this.slots.indexOf(slot), 1);
      slot.task = null;
      void slot.worker.terminate().catch(() => 0);
      this.pump();
    }
    if (q >= 0 || slot) {
      this.stats.cancelled++;
      this.settle(task, () => task.reject(abortError(task.signal!)));
    }
  }

  private settle(task: Task, fn: () => void): void {
    if (task.onAbort) task.signal?.removeEventListener('abort', task.onAbort);
    task.onAbort = undefined;
    fn();
  }
}
