// Validates a POST /v1/embeddings body (OpenAI shape) into a normalized request. Every rejection is a
// 400 ApiError naming `param`. `input` may be a string, an array of strings, an array of token ids
// or an array of token-id arrays; empty inputs are refused (OpenAI does too). `truncate` is our
// extension (Ollama's name): cut inputs longer than the context instead of answering 400.
import { ApiError } from '../common/errors.ts';

type Obj = Record<string, unknown>;
const present = (v: unknown) => v !== undefined && v !== null;
const wellFormed = (s: string): string => (s as unknown as { toWellFormed(): string }).toWellFormed();
const bad = (param: string, message: string) => new ApiError('invalid_value', message, { param });

export type EmbeddingsInput = { kind: 'text'; texts: string[] } | { kind: 'tokens'; ids: number[][] };

export interface EmbeddingsRequest {
  model: string | null;
  input: EmbeddingsInput;
  encodingFormat: 'float' | 'base64';
  /** Matryoshka truncation (then renormalized); null = the model's hidden size. */
  dimensions: number | null;
  /** Extension: keep the first context-length tokens of a longer input (default false = 400). */
  truncate: boolean;
}

export interface EmbeddingsLimits {
  /** Inputs per request (OpenAI: 2048). */
  maxInputs: number;
  /** Tokens summed over all inputs of one request (checked after tokenization). */
  maxTotalTokens: number;
}

export const DEFAULT_EMBEDDINGS_LIMITS: EmbeddingsLimits = { maxInputs: 2048, maxTotalTokens: 65_536 };

const isTokenId = (t: unknown): t is number => typeof t === 'number' && Number.isInteger(t) && t >= 0 && t <= 0x7fffffff;

function parseInput(v: unknown, maxInputs: number): EmbeddingsInput {
  if (!present(v)) throw new ApiError('missing_required_parameter', "Missing required parameter: 'input'", { param: 'input' });
  if (typeof v === 'string') {
    if (v.length === 0) throw bad('input', "'input' must not be an empty string");
    return { kind: 'text', texts: [wellFormed(v)] };
  }
  if (!Array.isArray(v)) throw bad('input', "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays");
  if (v.length === 0) throw bad('input', "'input' must not be an empty array");
  // A flat number array is ONE tokenized input: the item cap does not apply to it.
  if (typeof v[0] !== 'number' && v.length > maxInputs) throw bad('input', `'input' has ${v.length} items; at most ${maxInputs} are allowed per request`);
  if (typeof v[0] === 'string') {
    const texts: string[] = [];
    for (let i = 0; i < v.length; i++) {
      const s = v[i];
      if (typeof s !== 'string') throw bad('input', `'input[${i}]' must be a string like the other items`);
      if (s.length === 0) throw bad('input', `'input[${i}]' must not be an empty string`);
      texts.push(wellFormed(s));
    }
    return { kind: 'text', texts };
  }
  if (typeof v[0] === 'number') {
    // One tokenized input. (Its length is bounded by the body limit and checked against the context later.)
    for (let i = 0; i < v.length; i++) if (!isTokenId(v[i])) throw bad('input', `'input[${i}]' must be a non-negative integer token id`);
    return { kind: 'tokens', ids: [v as number[]] };
  }
  if (Array.isArray(v[0])) {
    const ids: number[][] = [];
    for (let i = 0; i < v.length; i++) {
      const a = v[i];
      if (!Array.isArray(a)) throw bad('input', `'input[${i}]' must be an array of token ids like the other items`);
      if (a.length === 0) throw bad('input', `'input[${i}]' must not be an empty array`);
      for (const t of a) if (!isTokenId(t)) throw bad('input', `'input[${i}]' must hold non-negative integer token ids`);
      ids.push(a as number[]);
    }
    return { kind: 'tokens', ids };
  }
  throw bad('input', "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays");
}

export function validateEmbeddingsRequest(body: Obj, limits: EmbeddingsLimits = DEFAULT_EMBEDDINGS_LIMITS): EmbeddingsRequest {
  let model: string | null = null;
  if (present(body.model)) {
    if (typeof body.model !== 'string') throw bad('model', "'model' must be a string");
    model = body.model;
  }
  const input = parseInput(body.input, limits.maxInputs);
  let encodingFormat: 'float' | 'base64' = 'float';
  if (present(body.encoding_format)) {
    if (body.encoding_format !== 'float' && body.encoding_format !== 'base64') {
      throw bad('encoding_format', "'encoding_format' must be 'float' or 'base64'");
    }
    encodingFormat = body.encoding_format;
  }
  let dimensions: number | null = null;
  if (present(body.dimensions)) {
    const d = body.dimensions;
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) throw bad('dimensions', "'dimensions' must be a positive integer");
    dimensions = d;
  }
  let truncate = false;
  if (present(body.truncate)) {
    if (typeof body.truncate !== 'boolean') throw bad('truncate', "'truncate' must be a boolean");
    truncate = body.truncate;
  }
  if (present(body.user) && typeof body.user !== 'string') throw bad('user', "'user' must be a string");
  return { model, input, encodingFormat, dimensions, truncate };
}
