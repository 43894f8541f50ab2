// Entry point of the engine process (child_process.fork from Node, utilityProcess.fork from
// Electron). It owns the MLX binding: loads one model, runs up to `maxBatch` generations at once
// (continuous batching: their decode steps share forward passes, model/batch.ts; later requests
// wait in arrival order; an embeddings job runs alone), streams EngineEvents back, and answers stats. Anything that
// goes wrong inside a request becomes an `error` event for that request; anything that escapes
// becomes a `fatal` message and a non-zero exit, which the supervising EngineClient turns into a
// restart. Errors are sanitized before they leave: no paths, no stacks.
import { performance } from 'node:perf_hooks';
import { sanitizeMessage } from '../../common/sanitize.ts';
import type { EngineErrorCode, EngineEvent, EngineStats, GenerateRequest, ModelInfo, PrefixKvSnapshot } from '../types.ts';
import { detectLoadedBlas, gemvShimLoaded } from './blas.ts';
import { parentChannel } from './ipc.ts';
import { PROTOCOL_VERSION, cancelledDoneEvent, parseParentMessage, validateGenerateRequest, type EngineMessage, type LoadOptions } from './protocol.ts';
import { validateEmbedRequest } from './protocol.ts';
import { DEFAULT_SAMPLING, type EmbedRequest } from '../types.ts';
import { loadBackend, type Backend } from './backend.ts';

const channel = parentChannel();
const send = (msg: EngineMessage): void => channel.send(msg);
const emit = (event: EngineEvent): void => send({ type: 'event', event });

interface Job {
  request: GenerateRequest;
  receivedAt: number;
  abort: AbortController;
  /**
   * Set for an embeddings job. It shares the generation queue so MLX runs one request at a time in
   * arrival order (a running generation is never interleaved with an embedding); `request` then
   * only carries its requestId (for cancel and duplicate checks).
   */
  embed?: { id: number; request: EmbedRequest };
}

let backend: Backend | null = null;
let loading = false;
let shuttingDown = false;
const queue: Job[] = [];
/** Jobs running now: up to maxBatch generations, or one embeddings job. */
const running = new Set<Job>();
let maxBatch = 1;
/** A `configure` that arrived while the model was loading wins over the load options. */
let configuredMaxBatch: number | null = null;
const isRunning = (requestId: string): Job | undefined => [...running].find((j) => j.request.requestId === requestId);

function errorEvent(requestId: string, code: EngineErrorCode, message: string): EngineEvent {
  return { type: 'error', requestId, code, message: sanitizeMessage(message) };
}

function cancelledDone(job: Job, promptTokens = job.request.promptIds.length): EngineEvent {
  return cancelledDoneEvent(job.request.requestId, promptTokens);
}

async function handleLoad(modelDir: string, protocol: number, options: LoadOptions): Promise<void> {
  if (protocol !== PROTOCOL_VERSION) {
    send({ type: 'load_failed', message: `Engine protocol mismatch (parent ${protocol}, engine ${PROTOCOL_VERSION})` });
    return;
  }
  if (backend || loading) {
    send({ type: 'load_failed', message: 'A model is already loaded in this engine process' });
    return;
  }
  loading = true;
  const t0 = performance.now();
  try {
    backend = await loadBackend(modelDir, options);
    maxBatch = configuredMaxBatch ?? Math.max(1, options.maxBatch ?? 1);
    backend.setMaxBatch(maxBatch);
    const model: ModelInfo = backend.info;
    send({ type: 'ready', model, loadMs: performance.now() - t0 });
  } catch (err) {
    send({ type: 'load_failed', message: sanitizeMessage(err) });
  } finally {
    loading = false;
  }
}

function handleGenerate(raw: unknown): void {
  const requestId = typeof (raw as { requestId?: unknown })?.requestId === 'string' ? (raw as { requestId: string }).requestId : 'unknown';
  const req = validateGenerateRequest(raw);
  if (typeof req === 'string') {
    emit(errorEvent(requestId.slice(0, 128), 'invalid_request', req));
    return;
  }
  if (!backend || shuttingDown) {
    emit(errorEvent(req.requestId, 'engine_unavailable', shuttingDown ? 'The engine is shutting down' : 'No model is loaded'));
    return;
  }
  if (isRunning(req.requestId) || queue.some((j) => j.request.requestId === req.requestId)) {
    emit(errorEvent(req.requestId, 'invalid_request', 'A request with this id is already running'));
    return;
  }
  queue.push({ request: req, receivedAt: performance.now(), abort: new AbortController() });
  pump();
}

function embedReply(id: number, extra: Partial<Extract<EngineMessage, { type: 'embed_result' }>>): void {
  send({ type: 'embed_result', id, embeddings: [], promptTokens: 0, pooling: backend?.embedding.pooling ?? 'last', ...extra });
}

/** Ends a job that never ran: a cancelled `done` for a generation, a cancelled reply for an embedding. */
function endUnrun(job: Job): void {
  if (job.embed) embedReply(job.embed.id, { cancelled: true });
  else emit(cancelledDone(job));
}

function handleEmbed(id: number, raw: unknown): void {
  const req = validateEmbedRequest(raw);
  if (typeof req === 'string') return embedReply(id, { error: { code: 'invalid_request', message: req } });
  if (!backend || shuttingDown) {
    return embedReply(id, { error: { code: 'engine_unavailable', message: shuttingDown ? 'The engine is shutting down' : 'No model is loaded' } });
  }
  if (isRunning(req.requestId) || queue.some((j) => j.request.requestId === req.requestId)) {
    return embedReply(id, { error: { code: 'invalid_request', message: 'A request with this id is already running' } });
  }
  queue.push({
    request: { requestId: req.requestId, promptIds: [], sampling: DEFAULT_SAMPLING, cachePrompt: false },
    receivedAt: performance.now(),
    abort: new AbortController(),
    embed: { id, request: req },
  });
  pump();
}

async function runEmbedJob(b: Backend, job: Job & { embed: NonNullable<Job['embed']> }): Promise<void> {
  const { id, request } = job.embed;
  try {
    const r = await b.embed(request, job.abort.signal);
    if (job.abort.signal.aborted) return embedReply(id, { cancelled: true });
    send({ type: 'embed_result', id, embeddings: r.embeddings, promptTokens: r.promptTokens, pooling: r.pooling });
  } catch (err) {
    if (job.abort.signal.aborted) return embedReply(id, { cancelled: true });
    const code = (err as { code?: unknown })?.code;
    const known = code === 'context_length_exceeded' || code === 'invalid_request';
    embedReply(id, {
      error: { code: known ? code : 'internal_error', message: known ? sanitizeMessage(err) : `Embedding failed: ${sanitizeMessage(err)}` },
    });
  }
}

function handleCancel(requestId: string): void {
  const job = isRunning(requestId);
  if (job) {
    job.abort.abort();
    return;
  }
  const i = queue.findIndex((j) => j.request.requestId === requestId);
  if (i >= 0) {
    const [job] = queue.splice(i, 1);
    endUnrun(job);
  }
  // Unknown or finished ids are ignored: cancel races with completion by design.
}

/**
 * Starts queued jobs in arrival order while there is room: generations up to maxBatch at once (they
 * join the running batch at its next step), an embeddings job only alone (never interleaved with a
 * generation). The head of the queue waits for room: nobody overtakes it.
 */
function pump(): void {
  while (queue.length > 0 && backend && !shuttingDown) {
    const head = queue[0];
    const embedRunning = [...running].some((j) => j.embed);
    if (head.embed ? running.size > 0 : embedRunning || running.size >= maxBatch) break;
    queue.shift();
    void runJob(backend, head);
  }
}

async function runJob(b: Backend, job: Job): Promise<void> {
  running.add(job);
  try {
    if (job.embed) await runEmbedJob(b, job as Job & { embed: NonNullable<Job['embed']> });
    else await b.run(job.request, { signal: job.abort.signal, receivedAt: job.receivedAt, emit });
  } catch (err) {
    const code = (err as { code?: unknown })?.code;
    emit(
      errorEvent(
        job.request.requestId,
        code === 'context_length_exceeded' || code === 'invalid_request' ? code : 'internal_error',
        code === 'context_length_exceeded' || code === 'invalid_request' ? sanitizeMessage(err) : `Generation failed: ${sanitizeMessage(err)}`,
      ),
    );
  } finally {
    running.delete(job);
  }
  // Memory policy between requests, only when nothing else runs (a ~50 ms full GC would stall the
  // other streams; the per-step policy keeps memory bounded meanwhile). Embedding jobs free their
  // arrays per input (embedTokens: minor GC + a turn, a full GC when RSS grew).
  if (running.size === 0) {
    if (job.embed) await b.afterEmbed();
    else await b.afterRequest();
  }
  pump();
}

/** Settings changed live: the new batch size applies to the next generations that start. */
function handleConfigure(n: number): void {
  configuredMaxBatch = n;
  maxBatch = n;
  backend?.setMaxBatch(n);
  pump();
}

function handleStats(id: number): void {
  const mem = process.memoryUsage();
  const stats: EngineStats = {
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    mlxActiveBytes: backend?.mlxActiveBytes() ?? null,
    mlxPeakBytes: backend?.mlxPeakBytes() ?? null,
    mlxCacheBytes: backend?.mlxCacheBytes() ?? null,
    prefixCache: backend?.prefixCacheStats() ?? {
      entries: 0,
      bytes: 0,
      budgetBytes: 0,
      reusedTokens: 0,
      computedTokens: 0,
      hits: 0,
      misses: 0,
    },
    blas: detectLoadedBlas(),
    gemvShim: gemvShimLoaded(),
  };
  const batch = backend?.batchStats();
  if (batch) stats.batch = batch;
  const pool = backend?.kvPoolStats();
  if (pool) stats.kvPool = pool;
  send({ type: 'stats', id, stats });
}

function handlePrefixExport(id: number, minTokens: number, onlyNew: boolean): void {
  try {
    send({ type: 'prefix_export_result', id, entries: backend ? backend.exportPrefixEntries(minTokens, onlyNew) : [] });
  } catch (err) {
    send({ type: 'prefix_export_result', id, entries: [], error: sanitizeMessage(err) });
  }
}

function handlePrefixImport(id: number, entry: PrefixKvSnapshot): void {
  try {
    if (!backend) throw new Error('No model is loaded');
    send({ type: 'prefix_import_result', id, ok: backend.importPrefixEntry(entry) });
  } catch (err) {
    send({ type: 'prefix_import_result', id, ok: false, error: sanitizeMessage(err) });
  }
}

function handlePrefixClear(id: number): void {
  const freedBytes = backend ? backend.clearPrefixCache() : 0;
  send({ type: 'prefix_clear_result', id, freedBytes });
  // The binding frees MLX memory only when V8 collects the arrays' wrappers.
  if (freedBytes > 0 && backend) void backend.afterRequest();
}

function shutdown(code: number): void {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const job of running) job.abort.abort();
  for (const job of queue.splice(0)) endUnrun(job);
  // The running generation notices the abort within one prefill chunk / decode step and sends
  // its `done`; wait for that (bounded), then leave.
  const deadline = Date.now() + 3_000;
  const tick = (): void => {
    if (running.size === 0 || Date.now() > deadline) setTimeout(() => process.exit(code), 10);
    else setTimeout(tick, 5);
  };
  tick();
}

channel.onMessage((raw) => {
  const msg = parseParentMessage(raw);
  if (!msg) {
    process.stderr.write('engine: dropped a malformed message from the parent\n');
    return;
  }
  switch (msg.type) {
    case 'load':
      void handleLoad(msg.modelDir, msg.protocol, msg.options ?? {});
      break;
    case 'generate':
      handleGenerate(msg.request);
      break;
    case 'cancel':
      handleCancel(msg.requestId);
      break;
    case 'stats':
      handleStats(msg.id);
      break;
    case 'prefix_export':
      handlePrefixExport(msg.id, msg.minTokens, msg.onlyNew);
      break;
    case 'prefix_import':
      handlePrefixImport(msg.id, msg.entry);
      break;
    case 'prefix_clear':
      handlePrefixClear(msg.id);
      break;
    case 'embed':
      handleEmbed(msg.id, msg.request);
      break;
    case 'configure':
      handleConfigure(msg.maxBatch);
      break;
    case 'shutdown':
      shutdown(0);
      break;
  }
});

// The parent went away (crashed or closed the channel): nobody is listening, stop computing.
channel.onDisconnect(() => shutdown(0));

function fatal(err: unknown): void {
  try {
    send({ type: 'fatal', message: sanitizeMessage(err) });
    process.stderr.write(`engine fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  } finally {
    setTimeout(() => process.exit(70), 20);
  }
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);
// Ignore SIGINT from a terminal's Ctrl-C: the parent decides when the engine stops.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => shutdown(0));

send({ type: 'hello', protocol: PROTOCOL_VERSION, pid: process.pid });
