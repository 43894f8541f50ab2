// Whether a JSON Schema compiles for constrained decoding — decided once, possibly in another
// thread. Request validation compiles every schema it will enforce (response_format, forced tool
// calls) so that what cannot be enforced is a 400 naming the field; compiling 128 tools × 600
// properties, or one tool of 60,000, holds the thread for a long time. A large body is parsed in a
// prompt worker (prompt-pool.ts `parseJson`), which also compiles the schemas validation will
// check (`precheckSchemas`) and sends back one small verdict per schema (by its path); the main
// thread attaches each verdict to the schema object at that path in its own parse of the body
// (`applySchemaVerdicts`), and validation's checkSchema uses it instead of compiling again. Same
// verdict, same 400 message, either way.
import { compileSchema, SchemaError } from '../engine/constrain/index.ts';

/** `message`: the SchemaError's (names the keyword); null = not a valid JSON Schema at all. */
export type SchemaVerdict = { ok: true } | { ok: false; message: string | null };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Verdicts decided in a worker, by schema object (the main thread's clone of it). */
const known = new WeakMap<object, SchemaVerdict>();

/** Compiles `schema` the way the engine will. */
export function schemaVerdict(schema: unknown): SchemaVerdict {
  if (isObj(schema)) {
    const v = known.get(schema);
    if (v) return v;
  }
  try {
    compileSchema(schema);
    return { ok: true };
  } catch (err) {
    return { ok: false, message: err instanceof SchemaError ? err.message : null };
  }
}

/** Where in a body the schemas are that some API's validation compiles. */
const RESPONSE_SCHEMA_PATHS: readonly (readonly string[])[] = [
  ['response_format', 'schema'], // OpenAI json_object + schema (llama-server)
  ['response_format', 'json_schema', 'schema'], // OpenAI
  ['output_config', 'format', 'schema'], // Anthropic
  ['text', 'format', 'schema'], // Responses API
  ['format'], // Ollama
];
/** A tool's parameter schema in each API's tool shape. */
const TOOL_SCHEMA_PATHS: readonly (readonly string[])[] = [['function', 'parameters'], ['input_schema'], ['parameters']];

function at(v: unknown, path: readonly (string | number)[]): unknown {
  let x = v;
  for (const k of path) {
    if (typeof x !== 'object' || x === null) return undefined;
    x = (x as Record<string | number, unknown>)[k];
  }
  return x;
}

/** Whether `tool_choice` may force a call (then validation compiles the tools' schemas). Errs on "yes". */
function mayForce(tc: unknown): boolean {
  if (tc === undefined || tc === null || tc === 'auto' || tc === 'none') return false;
  return !(isObj(tc) && (tc.type === 'auto' || tc.type === 'none'));
}

export type SchemaVerdicts = { path: (string | number)[]; verdict: SchemaVerdict }[];

/** Compiles the schemas of `body` that validation would compile (worker side). */
export function precheckSchemas(body: Obj): SchemaVerdicts {
  const paths: (string | number)[][] = RESPONSE_SCHEMA_PATHS.map((p) => [...p]);
  if (mayForce(body.tool_choice) && Array.isArray(body.tools)) {
    body.tools.forEach((_, i) => {
      for (const p of TOOL_SCHEMA_PATHS) paths.push(['tools', i, ...p]);
    });
  }
  const out: SchemaVerdicts = [];
  for (const path of paths) {
    const schema = at(body, path);
    if (!isObj(schema)) continue;
    const verdict = schemaVerdict(schema);
    known.set(schema, verdict); // validation in this thread (early-refusal.ts) does not compile it again
    out.push({ path, verdict });
  }
  return out;
}

/** Attaches verdicts decided elsewhere to the schema objects of `body` (main-thread side). */
export function applySchemaVerdicts(body: Obj, verdicts: SchemaVerdicts): void {
  for (const { path, verdict } of verdicts) {
    const schema = at(body, path);
    if (isObj(schema)) known.set(schema, verdict);
  }
}
