// POST /v1/embeddings (and Ollama's /api/embed, which shares the route's runner) for a remote
// model: the validated request is sent to the upstream's /embeddings through the same queue,
// breaker, timeouts and statistics as its generations, and the vectors come back as Float32Arrays
// for the calling API to shape (OpenAI float/base64, Ollama arrays) exactly as local ones are.
// No fallback to a local model here: vectors of another model live in another space, and mixing
// them into an index would corrupt every later search — a clear 503 is the safe answer.
import { ApiError } from '../../common/errors.ts';
import type { EmbeddingsRequest } from '../validate-embeddings.ts';
import { upstreamApiError } from './errors.ts';
import type { RemoteUpstream } from './remotes.ts';
import { readJson, UpstreamError } from './upstream.ts';

export interface RemoteEmbeddings {
  vectors: Float32Array[];
  promptTokens: number;
}

/** An upstream `embedding`: a number array, or base64 little-endian float32 (what the SDKs ask for). */
function vectorOf(v: unknown): Float32Array | null {
  if (Array.isArray(v)) {
    if (!v.every((x) => typeof x === 'number' && Number.isFinite(x))) return null;
    return Float32Array.from(v as number[]);
  }
  if (typeof v === 'string') {
    const buf = Buffer.from(v, 'base64');
    if (buf.length % 4 !== 0) return null;
    const out = new Float32Array(buf.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
    return out;
  }
  return null;
}

/** Parses an OpenAI embeddings response for `n` inputs (ordered by `index`). */
export function parseEmbeddingsResponse(json: unknown, n: number): RemoteEmbeddings {
  const bad = () => new UpstreamError('protocol', 'upstream sent an invalid embeddings response');
  const data = (json as { data?: unknown })?.data;
  if (!Array.isArray(data) || data.length !== n) throw bad();
  const vectors: Array<Float32Array | undefined> = new Array(n);
  data.forEach((row, pos) => {
    const r = row as { index?: unknown; embedding?: unknown };
    const index = Number.isInteger(r?.index) ? (r.index as number) : pos;
    const v = vectorOf(r?.embedding);
    if (!v || index < 0 || index >= n || vectors[index]) throw bad();
    vectors[index] = v;
  });
  const usage = (json as { usage?: { prompt_tokens?: unknown } }).usage;
  const pt = usage?.prompt_tokens;
  return { vectors: vectors as Float32Array[], promptTokens: typeof pt === 'number' && Number.isInteger(pt) && pt >= 0 ? pt : 0 };
}

/** Forwards one validated embeddings request; rejects with a mapped ApiError. */
export async function forwardEmbeddings(upstream: RemoteUpstream, r: EmbeddingsRequest, signal: AbortSignal): Promise<RemoteEmbeddings> {
  // `truncate` is our extension; upstreams spell it differently or not at all, so it is refused
  // rather than silently dropped (an over-long input would then fail upstream anyway).
  if (r.truncate) throw new ApiError('unsupported_parameter', `'truncate' is not available for the remote model "${upstream.id}"`, { param: 'truncate' });
  const inputs = r.input.kind === 'text' ? r.input.texts : r.input.ids;
  // Float always: every OpenAI-compatible server speaks it (base64 is optional); the client's
  // encoding_format is applied by our own writer.
  const body: Record<string, unknown> = { input: inputs, encoding_format: 'float' };
  if (r.dimensions !== null) body.dimensions = r.dimensions;
  const call = await upstream.open('embeddings', body, signal);
  try {
    const json = await readJson(call.response.body, upstream.client.timeouts.idleMs);
    const out = parseEmbeddingsResponse(json, inputs.length);
    call.finish({ ok: true });
    return out;
  } catch (err) {
    if (signal.aborted) {
      call.finish({ aborted: true });
      throw err;
    }
    call.finish({ ok: false, error: err });
    throw upstreamApiError(err, upstream.settings);
  }
}
