// Which error envelope a path answers with. Every error is an ApiError (stable code, sanitized
// message); each API only chooses how it is wrapped, so clients' SDKs parse our errors as they parse
// their provider's: OpenAI `{"error":{message,type,param,code}}` by default, Anthropic's
// `{"type":"error","error":{type,message}}` for /v1/messages*. Gate errors (key, Host, Origin, body
// limits) use the same choice. Add an API here (path prefix + body) to give its routes its shape.
import type { ApiError } from '../common/errors.ts';
import { anthropicErrorBody } from './anthropic/errors.ts';
import { ollamaErrorBody } from './ollama/output.ts';

interface ErrorShape {
  matches(path: string): boolean;
  body(err: ApiError, requestId: string): unknown;
}

const under = (prefix: string) => (path: string) => path === prefix || path.startsWith(`${prefix}/`);

const SHAPES: ErrorShape[] = [
  { matches: under('/v1/messages'), body: (err, id) => anthropicErrorBody(err, id) },
  // Ollama: `{"error": "<message>"}` (the ollama clients read `.error`).
  { matches: under('/api'), body: (err) => ollamaErrorBody(err) },
];

export function errorBodyFor(path: string, err: ApiError, requestId: string): unknown {
  for (const s of SHAPES) if (s.matches(path)) return s.body(err, requestId);
  return err.toJSON();
}
