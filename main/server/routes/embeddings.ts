// POST /v1/embeddings (OpenAI shape, as LM Studio / Ollama / llama-server serve it): validate the
// body, run it through the embeddings life cycle (embedding-run.ts: lease, gates, admission, slot,
// engine) and answer float arrays or base64 little-endian float32 (what the openai SDKs ask for by
// default and decode themselves).
import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { bodyObject } from '../body.ts';
import type { ServerContext } from '../context.ts';
import { embeddingsRunner, type RunEmbeddings } from '../embedding-run.ts';
import { DEFAULT_EMBEDDINGS_LIMITS, validateEmbeddingsRequest, type EmbeddingsLimits } from '../validate-embeddings.ts';

export type { EmbeddingsResult, RunEmbeddings } from '../embedding-run.ts';

const LITTLE_ENDIAN = os.endianness() === 'LE';

/** Base64 of the vector as little-endian float32 (the openai SDK's decoding). */
export function float32Base64(v: Float32Array): string {
  if (LITTLE_ENDIAN) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  const b = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) b.writeFloatLE(v[i], i * 4);
  return b.toString('base64');
}

export function embeddingsRoutes(
  app: FastifyInstance,
  ctx: ServerContext,
  opts: { limits?: Partial<EmbeddingsLimits> } = {},
): { run: RunEmbeddings; limits: EmbeddingsLimits } {
  const limits: EmbeddingsLimits = { ...DEFAULT_EMBEDDINGS_LIMITS, ...opts.limits };
  const run = embeddingsRunner(ctx, limits);
  ctx.declareRoute('/v1/embeddings', ['POST']);
  app.post('/v1/embeddings', async (request, reply) => {
    const body = bodyObject(request);
    const r = validateEmbeddingsRequest(body, limits);
    return run(request, reply, r, ({ modelId, vectors, promptTokens }) => ({
      object: 'list',
      data: vectors.map((vec, index) => ({ object: 'embedding', index, embedding: r.encodingFormat === 'base64' ? float32Base64(vec) : Array.from(vec) })),
      model: modelId,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    }));
  });
  return { run, limits };
}
