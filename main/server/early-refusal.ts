// Refusing a large request where its body was parsed (a prompt worker), when the answer is certain.
// Handing a huge parsed body to the event loop costs about what parsing it there did (a structured
// clone of 100,000 messages took longer than JSON.parse of them), so a request that the route's
// validation or the cheap context bounds (prompt-bounds.ts) will refuse anyway is refused in the
// worker, and the event loop only sends the error. "Certain" = exactly what the route and the life
// cycle would answer, in their order:
//   validation (validate.ts, the same functions) → model lease → engine ready → context bounds.
// So the bounds are applied only when the main thread said which model a request gets and that its
// engine is ready (`EarlyBounds`: single-folder mode, the request names that model or none, no
// remote of that name); otherwise only validation runs here and the route does the rest.
// Routes covered: OpenAI /v1/chat/completions, /v1/completions, /v1/embeddings; Anthropic
// /v1/messages; Responses /v1/responses without previous_response_id (with one, the history lives in
// the main thread's store); Ollama /api/chat and /api/generate. Each through the same validation
// function its route calls, so the error (and the API's shape, chosen by path when it is sent) is
// the route's. Other bodies are parsed here too and validated by their routes as before.
import { ApiError } from '../common/errors.ts';
import { boundEmbeddingTexts, checkPromptBounds } from './prompt-bounds.ts';
import { validateAnthropicRequest } from './anthropic/request.ts';
import { validateOllamaChat, validateOllamaGenerate } from './ollama/request.ts';
import { validateResponsesRequest } from './responses/request.ts';
import { validateChatRequest, validateCompletionRequest, type ChatRequest, type CompletionRequest } from './validate.ts';
import { DEFAULT_EMBEDDINGS_LIMITS, validateEmbeddingsRequest } from './validate-embeddings.ts';

/** What the main thread knows about the model a request would get (null: unknown, no bounds here). */
export interface EarlyBounds {
  /** The model's own context length (what the life cycle's bounds use). */
  contextLength: number;
  hiddenSize: number;
  /** Names that lease this model (id, aliases); a request without `model` does too. */
  names: string[];
}

export interface EarlyOptions {
  maxStopLength: number;
  bounds: EarlyBounds | null;
}

const named = (model: string | null, b: EarlyBounds) => model === null || model === '' || b.names.includes(model);

/** The life cycle's cheap bounds for a request the route hands it (null: the route answers without generating). */
function bound(r: ChatRequest | CompletionRequest | null, b: EarlyBounds | null): void {
  if (r && b && named(r.model, b)) checkPromptBounds(r, b.contextLength);
}

/** The error the route would answer for `body` on `path`, when it is certain; else null. Throws nothing. */
export function earlyRefusal(path: string, body: Record<string, unknown>, opts: EarlyOptions): ApiError | null {
  try {
    const b = opts.bounds;
    if (path === '/v1/chat/completions') {
      bound(validateChatRequest(body, { maxStopLength: opts.maxStopLength }), b);
    } else if (path === '/v1/completions') {
      bound(validateCompletionRequest(body, { maxStopLength: opts.maxStopLength, vocabSize: Number.MAX_SAFE_INTEGER }), b);
    } else if (path === '/v1/messages') {
      bound(validateAnthropicRequest(body, { maxStopLength: opts.maxStopLength }).chat, b);
    } else if (path === '/v1/responses') {
      // The route looks previous_response_id up first (a 400 when unknown): not known here.
      if (body.previous_response_id !== undefined && body.previous_response_id !== null) return null;
      bound(validateResponsesRequest(body, { maxStopLength: opts.maxStopLength, history: [] }).chat, b);
    } else if (path === '/api/chat') {
      bound(validateOllamaChat(body, { maxStopLength: opts.maxStopLength }).chat, b);
    } else if (path === '/api/generate') {
      bound(validateOllamaGenerate(body, { maxStopLength: opts.maxStopLength, vocabSize: Number.MAX_SAFE_INTEGER }).request, b);
    } else if (path === '/v1/embeddings') {
      const r = validateEmbeddingsRequest(body, DEFAULT_EMBEDDINGS_LIMITS);
      if (b && named(r.model, b) && r.input.kind === 'text' && (r.dimensions === null || r.dimensions <= b.hiddenSize)) {
        boundEmbeddingTexts(r.input.texts, b.contextLength, DEFAULT_EMBEDDINGS_LIMITS.maxTotalTokens, r.truncate);
      }
    }
    return null;
  } catch (err) {
    return err instanceof ApiError ? err : null; // anything else: let the route meet it as before
  }
}
