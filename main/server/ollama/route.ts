// The Ollama API (`/api/*`: VS Code Copilot's Ollama provider, Open WebUI, Raycast, Obsidian and the
// `ollama` npm/Python clients). The routes only translate: request.ts turns bodies into the internal
// chat / completion / embeddings requests, the shared life cycles (`generate`, `runEmbeddings`: model
// lease, prompt, context check, response cache, admission, queue, engine, metrics, Host/Origin/key
// gates) run them like any other request, and output.ts writes Ollama's NDJSON lines or bodies.
// Errors are Ollama's `{"error": "..."}` (error-shapes.ts), gates included.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../../common/errors.ts';
import { bodyObject } from '../body.ts';
import type { ModelInfo } from '../../engine/types.ts';
import type { ServerContext } from '../context.ts';
import type { ResponseFormat, ResponseWriter, WriterContext } from '../generation.ts';
import { contextLimitOf, type ServedModelLease } from '../models.ts';
import type { ServerTextPipeline } from '../hooks.ts';
import type { RunEmbeddings } from '../routes/embeddings.ts';
import type { EmbeddingsLimits } from '../validate-embeddings.ts';
import { validateEmbeddingsRequest } from '../validate-embeddings.ts';
import type { OutputEvent } from '../output-split.ts';
import { outputDoneOf } from '../responses/route.ts';
import type { ChatRequest, CompletionRequest } from '../validate.ts';
import { ollamaEmbedBody, ollamaLegacyEmbeddingsBody, ollamaModelName, validateOllamaChat, validateOllamaGenerate } from './request.ts';
import { OllamaEncoder, ollamaErrorBody, ollamaLoadResponse } from './output.ts';
import { OLLAMA_COMPAT_VERSION, psEntry, showBody, tagsEntry, type OllamaModelFacts } from './models.ts';

export interface OllamaEmbeddings {
  run: RunEmbeddings;
  limits: EmbeddingsLimits;
}

export function ollamaFormat(kind: 'chat' | 'generate'): ResponseFormat {
  return {
    // NDJSON: one JSON object per line, no comments, so no keep-alive frames; no end marker (the
    // `done: true` line ends it).
    sse: { contentType: 'application/x-ndjson', keepAliveFrame: null, doneFrame: null },
    errorBody: (err) => ollamaErrorBody(err),
    async streamError(sse, err) {
      await sse.sendLine(ollamaErrorBody(err));
      await sse.done();
    },
    writer(ctx: WriterContext): ResponseWriter {
      const { prep, sse, track } = ctx;
      const enc = new OllamaEncoder(prep.modelId, kind);
      // Ollama reports thinking in `thinking` for /api/generate too (not only chat).
      const output = ctx.output({ reasoning: prep.reasoning === true });
      let sawToolCall = false;
      const feed = (events: OutputEvent[]): Record<string, unknown>[] => {
        const lines: Record<string, unknown>[] = [];
        for (const ev of events) {
          if (ev.type === 'tool_call') sawToolCall = true;
          lines.push(...enc.push(ev));
        }
        return lines;
      };
      const send = async (lines: Record<string, unknown>[]) => {
        for (const l of lines) await sse!.sendLine(l);
      };
      return {
        async delta(ev) {
          if (sse) await send(feed(output.push(ev)));
        },
        async done(ev, text) {
          // Flush (stream) or split the whole text (non-stream) first: a call found there counts.
          const lines = sse ? feed(output.flush()) : (feed(output.all(text)), []);
          const end = outputDoneOf(ev, sawToolCall, track.startedAt);
          track.finishReason = end.finishReason;
          if (sse) {
            await send([...lines, ...enc.finish(end)]);
            await sse.done();
            return;
          }
          ctx.writeJson(enc.body(end));
        },
      };
    },
  };
}

/** What a chat with this model's template can do (Ollama /api/show `capabilities`). */
const capabilitiesOf = (text: ServerTextPipeline) => ({ tools: text.toolCallFormat !== 'none', thinking: text.templateUses?.('enable_thinking') === true });

function factsOfInfo(id: string, m: ModelInfo, text: ServerTextPipeline, modifiedAt: number, contextLength: number): OllamaModelFacts {
  return {
    id,
    sizeBytes: m.weightBytes,
    architecture: m.architecture,
    parameters: m.numParameters,
    quantization: m.quantization,
    dtype: m.checkpointDtype,
    contextLength,
    modifiedAt,
    numLayers: m.numLayers,
    numKvHeads: m.numKvHeads,
    headDim: m.headDim,
    capabilities: capabilitiesOf(text),
  };
}

/** The models as Ollama's routes show them: the library (the loaded one in detail) and the remote engines. */
function ollamaCatalog(ctx: ServerContext) {
  /** The loaded model's lease, without loading anything (its template tells tools/thinking); null when none. */
  async function loadedLease(): Promise<ServedModelLease | null> {
    const st = ctx.models.status();
    if (st.state !== 'loaded' || !st.modelId) return null;
    return ctx.models.acquire(st.modelId).catch(() => null);
  }

  /**
   * Every model with Ollama facts: the library's public entries (the loaded one from its ModelInfo +
   * template), then the remote engines (as /v1/models lists them: id only, never URL or key).
   */
  async function listModels(): Promise<OllamaModelFacts[]> {
    const remotes = (ctx.remotes?.publicList() ?? []).map(
      (r): OllamaModelFacts => ({ id: r.id, sizeBytes: 0, architecture: null, parameters: null, quantization: null, dtype: null, contextLength: null, modifiedAt: ctx.startedAt, remote: true }),
    );
    return [...(await localModels()), ...remotes];
  }

  async function localModels(): Promise<OllamaModelFacts[]> {
    const lease = await loadedLease();
    try {
      return (await ctx.models.list()).map((e) => {
        if (lease && lease.id === e.id) return factsOfInfo(e.id, lease.info, lease.text, ctx.startedAt, contextLimitOf(lease.info, ctx.hooks.contextLimit));
        const n = (k: string) => (typeof e[k] === 'number' ? (e[k] as number) : null);
        const q = e.quantization as { bits: number } | null | undefined;
        return {
          id: e.id,
          sizeBytes: n('sizeBytes') ?? 0,
          architecture: typeof e.architecture === 'string' ? e.architecture : null,
          parameters: n('parameters'),
          quantization: q && typeof q.bits === 'number' ? { bits: q.bits } : null,
          dtype: typeof e.dtype === 'string' ? e.dtype : null,
          contextLength: n('contextLength') ?? n('context_length'),
          modifiedAt: ctx.startedAt,
          numLayers: n('numLayers'),
          numKvHeads: n('numKvHeads'),
          headDim: n('headDim'),
        };
      });
    } finally {
      lease?.release();
    }
  }

  /** The model a name means (`:latest` is ours); 404 in Ollama's shape otherwise. */
  async function find(name: string | null): Promise<OllamaModelFacts> {
    if (name === null || name === '') throw new ApiError('missing_required_parameter', "Missing 'model'", { param: 'model' });
    const list = await listModels();
    const found = list.find((m) => m.id === name);
    if (!found) throw new ApiError('model_not_found', `model '${name.replace(/[^\x20-\x7e]/g, '?').slice(0, 64)}' not found`, { param: 'model' });
    return found;
  }

  return { loadedLease, listModels, find };
}

export function ollamaRoutes(app: FastifyInstance, ctx: ServerContext, embeddings: OllamaEmbeddings): void {
  const opts = () => ({ maxStopLength: ctx.config.maxStopLength, vocabSize: Number.MAX_SAFE_INTEGER });
  const { loadedLease, listModels, find } = ollamaCatalog(ctx);

  const withCap = <T extends ChatRequest | CompletionRequest>(r: T, numCtx: number | null): T => {
    if (numCtx !== null) r.contextCap = numCtx;
    return r;
  };

  for (const [path, methods] of [
    ['/api/chat', ['POST']],
    ['/api/generate', ['POST']],
    ['/api/embed', ['POST']],
    ['/api/embeddings', ['POST']],
    ['/api/show', ['POST']],
    ['/api/tags', ['GET', 'HEAD']],
    ['/api/ps', ['GET', 'HEAD']],
    ['/api/version', ['GET', 'HEAD']],
  ] as const) {
    ctx.declareRoute(path, [...methods]);
  }

  app.post('/api/chat', async (request, reply) => {
    const o = validateOllamaChat(bodyObject(request), opts());
    if (!o.chat) return ollamaLoadResponse((await find(o.model)).id, 'chat');
    await ctx.lifecycle.generate(request, reply, withCap(o.chat, o.numCtx), ollamaFormat('chat'));
  });

  app.post('/api/generate', async (request, reply) => {
    const o = validateOllamaGenerate(bodyObject(request), opts());
    if (!o.request) return ollamaLoadResponse((await find(o.model)).id, 'generate');
    await ctx.lifecycle.generate(request, reply, withCap(o.request, o.numCtx), ollamaFormat('generate'));
  });

  app.post('/api/embed', async (request, reply) => {
    const started = performance.now();
    const r = validateEmbeddingsRequest(ollamaEmbedBody(bodyObject(request)), embeddings.limits);
    return embeddings.run(request, reply, r, (out) => ({
      model: out.modelId,
      embeddings: out.vectors.map((v) => Array.from(v)),
      total_duration: Math.round((performance.now() - started) * 1e6),
      load_duration: 0,
      prompt_eval_count: out.promptTokens,
    }));
  });

  // Legacy single-prompt embeddings (older clients, LangChain's OllamaEmbeddings).
  app.post('/api/embeddings', async (request, reply) => {
    const r = validateEmbeddingsRequest(ollamaLegacyEmbeddingsBody(bodyObject(request)), embeddings.limits);
    return embeddings.run(request, reply, r, (out) => ({ embedding: Array.from(out.vectors[0] ?? []) }));
  });

  app.get('/api/tags', async () => ({ models: (await listModels()).map(tagsEntry) }));

  app.post('/api/show', async (request) => {
    const body = bodyObject(request);
    // `name` is the field's old spelling, still sent by some clients.
    return showBody(await find(ollamaModelName(body.model ?? body.name)));
  });

  app.get('/api/ps', async () => {
    const lease = await loadedLease();
    if (!lease) return { models: [] };
    try {
      return { models: [psEntry(factsOfInfo(lease.id, lease.info, lease.text, ctx.startedAt, contextLimitOf(lease.info, ctx.hooks.contextLimit)), null, lease.info.weightBytes)] };
    } finally {
      lease.release();
    }
  });

  app.get('/api/version', async () => ({ version: OLLAMA_COMPAT_VERSION }));
}
