// A prompt worker thread (started by prompt-pool.ts): parses large request bodies (and compiles
// the schemas validation will check), renders chat templates, tokenizes and builds decoding
// constraints for large requests, so the server's event loop keeps answering /health and running
// streams meanwhile. It loads each model's text pipeline once, from the model folder the
// server's own pipeline came from, and serves a task only when its tokenizer and template have the
// same fingerprints as the server's (a folder changed on disk since the model was loaded is
// reported as `unavailable`, and the server renders inline as before).
import { parentPort } from 'node:worker_threads';
import { loadTextPipeline, type TextPipeline } from '../engine/text/index.ts';
import { earlyRefusal } from './early-refusal.ts';
import { parseJsonBody } from './json-body.ts';
import { encodeTexts, renderPrompt, toWireError } from './prompt-render.ts';
import type { WorkerModelRef, WorkerReply, WorkerTask } from './prompt-pool.ts';
import { precheckSchemas } from './schema-verdicts.ts';

/** Text pipelines by model key; a few, since a library switches models. */
const pipelines = new Map<string, Promise<TextPipeline | null>>();
const MAX_PIPELINES = 2;

function pipelineFor(model: WorkerModelRef): Promise<TextPipeline | null> {
  let p = pipelines.get(model.key);
  if (p) {
    // Most recently used last: the first entry is the one to evict.
    pipelines.delete(model.key);
    pipelines.set(model.key, p);
    return p;
  }
  p = loadTextPipeline(model.dir).then(
    (t) => (t.tokenizerFingerprint === model.tokenizerFingerprint && t.templateFingerprint === model.templateFingerprint ? t : null),
    () => null,
  );
  pipelines.set(model.key, p);
  while (pipelines.size > MAX_PIPELINES) pipelines.delete(pipelines.keys().next().value!);
  return p;
}

/**
 * A large request body: checked, parsed, its schemas compiled and — when certain — refused here
 * (early-refusal.ts). Only the verdicts (and the body bytes, moved) travel back, never the value: cloning a huge parsed body
 * to the event loop costs more than parsing it there.
 */
function parse(task: Extract<WorkerTask, { op: 'parse' }>): WorkerReply {
  try {
    const buf = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
    const value = parseJsonBody(buf, task.maxDepth);
    const verdicts = precheckSchemas(value);
    const refused = earlyRefusal(task.path, value, task.early);
    if (refused) return { id: task.id, kind: 'error', error: toWireError(refused) };
    // No escapes, no "proto", no "constructor": secure-json-parse would return JSON.parse's result as is.
    const text = buf.toString('latin1');
    const plain = !text.includes('\\u') && !text.includes('proto') && !text.includes('constructor');
    return { id: task.id, kind: 'parsed', verdicts, plain, bytes: task.bytes };
  } catch (err) {
    return { id: task.id, kind: 'error', error: toWireError(err) };
  }
}

async function run(task: WorkerTask): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  if (task.op === 'parse') {
    const reply = parse(task);
    // The body goes back to the event loop (moved, not copied) only when it is parsed there again.
    return { reply, transfer: reply.kind === 'parsed' ? [task.bytes.buffer as ArrayBuffer] : [] };
  }
  const text = await pipelineFor(task.model);
  if (!text) {
    pipelines.delete(task.model.key); // retried on a later task (e.g. a transient read error)
    return { reply: { id: task.id, kind: 'unavailable' }, transfer: [] };
  }
  try {
    if (task.op === 'render') {
      const work = renderPrompt(task.input, text, { withConstraint: task.withConstraint });
      const count = work.ids.length;
      // Ids a caller will refuse anyway (as many as the context or more) stay here: only the count travels.
      const ids = count < task.keepIdsBelow ? Uint32Array.from(work.ids) : null;
      const constraint = 'error' in work.constraint ? { error: toWireError(work.constraint.error) } : work.constraint;
      return { reply: { id: task.id, kind: 'render', count, ids, opensThinking: work.opensThinking, constraint }, transfer: ids ? [ids.buffer as ArrayBuffer] : [] };
    }
    const lists = encodeTexts(task.texts, text);
    const lengths = Uint32Array.from(lists, (l) => l.length);
    const flat = new Uint32Array(lengths.reduce((a, n) => a + n, 0));
    let at = 0;
    for (const l of lists) {
      flat.set(l, at);
      at += l.length;
    }
    return { reply: { id: task.id, kind: 'encode', lengths, flat }, transfer: [lengths.buffer as ArrayBuffer, flat.buffer as ArrayBuffer] };
  } catch (err) {
    return { reply: { id: task.id, kind: 'error', error: toWireError(err) }, transfer: [] };
  }
}

if (!parentPort) throw new Error('prompt-worker.ts runs as a worker thread (prompt-pool.ts starts it)');
const port = parentPort;
port.on('message', (task: WorkerTask) => {
  // One task at a time per worker (the pool never sends another before the reply).
  void run(task).then(({ reply, transfer }) => port.postMessage(reply, transfer));
});
