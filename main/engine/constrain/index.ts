// Constrained decoding: JSON Schema → byte-level recognizer → token mask. Pure TS (no MLX): the
// server uses compileConstraint() to refuse what cannot be enforced and toolCallConstraint() to
// build forced tool calls; the engine process builds a TokenConstraint per request.
import type { GenerationConstraint } from '../types.ts';
import type { ToolCallFormat, ToolDefinition } from '../text/types.ts';
import { ANY_OBJECT_NODE, compileSchema, SchemaError, type ValueNode } from './schema.ts';
import { TokenConstraint, TriggeredTokenConstraint } from './token-constraint.ts';
import type { TokenTable } from './token-table.ts';

export { ANY, ANY_OBJECT_NODE, compileSchema, SchemaError } from './schema.ts';
export type { Alt, ValueNode } from './schema.ts';
export { advanceByte, advanceBytes, advanceText, canEnd, initialState, isDone, MAX_WS, MAX_GENERIC_DEPTH } from './recognizer.ts';
export type { RecognizerState, InitialOptions } from './recognizer.ts';
export { allowedTokenIds, buildTokenTable, tokenMask } from './token-table.ts';
export type { TokenMask, TokenTable, VocabSource } from './token-table.ts';
export { TokenConstraint, TriggeredTokenConstraint } from './token-constraint.ts';
export type { ConstraintStats } from './token-constraint.ts';

export interface CompiledConstraint {
  node: ValueNode;
  prefix: string;
  suffix: string;
  /** Lazy mode: enforced only after this text; `prefix` is then what follows it. */
  trigger: string | null;
}

/** Compiles a request's constraint; throws SchemaError when the schema cannot be enforced. */
export function compileConstraint(c: GenerationConstraint): CompiledConstraint {
  const prefix = c.prefix ?? '';
  if (c.trigger !== undefined && (c.trigger === '' || !prefix.startsWith(c.trigger))) {
    throw new SchemaError('a trigger must be non-empty and start the prefix', 'trigger');
  }
  return {
    node: c.schema === null ? ANY_OBJECT_NODE : compileSchema(c.schema),
    prefix: c.trigger !== undefined ? prefix.slice(c.trigger.length) : prefix,
    suffix: c.suffix ?? '',
    trigger: c.trigger ?? null,
  };
}

/** A TokenConstraint, or a TriggeredTokenConstraint for a lazy one. */
export function createTokenConstraint(table: TokenTable, c: CompiledConstraint, eos: ReadonlySet<number>): TokenConstraint | TriggeredTokenConstraint {
  const opts = { prefix: c.prefix, suffix: c.suffix };
  return c.trigger !== null ? new TriggeredTokenConstraint(table, c.node, eos, c.trigger, opts) : new TokenConstraint(table, c.node, eos, opts);
}

/** A tool whose call cannot be constrained; `index` is its position in the request's tools. */
export class ToolSchemaError extends Error {
  override name = 'ToolSchemaError';
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
  }
}

/**
 * The constraint that forces exactly one tool call in the model's own tool-call format, with the
 * name restricted to `tools` and the arguments valid for that tool's `parameters` (an object of
 * any shape when a tool has none). Formats (main/engine/text/tool-calls.ts parses them back):
 * - hermes (Qwen): `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`
 * - llama3_json: `{"name": …, "parameters": {…}}`
 * - mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}]`
 * Returns null for `none` (the template has no tool-call format).
 */
export function toolCallConstraint(format: ToolCallFormat, tools: readonly ToolDefinition[]): GenerationConstraint | null {
  if (format === 'none' || tools.length === 0) return null;
  const argsKey = format === 'llama3_json' ? 'parameters' : 'arguments';
  const branches = tools.map((t, i) => {
    const params = t.function.parameters ?? { type: 'object' };
    try {
      compileSchema(params);
    } catch (err) {
      throw new ToolSchemaError(err instanceof SchemaError ? err.message : 'invalid parameters schema', i);
    }
    const ps = params as Record<string, unknown>;
    // '#' would mean our combined schema once the parameters sit inside it.
    if (/"\$ref":"#"/.test(JSON.stringify(ps))) throw new ToolSchemaError("'$ref: \"#\"' in tool parameters is not supported; put the recursive part in $defs", i);
    // The arguments of a call are always an object (OpenAI's `arguments` is JSON object text).
    if (ps.type !== undefined && ps.type !== 'object') throw new ToolSchemaError("'parameters' must describe an object (type: 'object')", i);
    return {
      type: 'object',
      properties: { name: { const: t.function.name }, [argsKey]: { ...ps, type: 'object' } },
      required: ['name', argsKey],
      additionalProperties: false,
    };
  });
  // Hoist the tools' $defs: a $ref inside a tool points at its own document root's $defs, which
  // becomes ours. Tools with conflicting $defs names are refused rather than mixed up.
  const defs: Record<string, unknown> = {};
  tools.forEach((t, i) => {
    for (const key of ['$defs', 'definitions'] as const) {
      const d = (t.function.parameters as Record<string, unknown> | undefined)?.[key];
      if (!d || typeof d !== 'object') continue;
      for (const [name, sub] of Object.entries(d as Record<string, unknown>)) {
        const id = `${key}/${name}`;
        if (id in defs && JSON.stringify(defs[id]) !== JSON.stringify(sub)) {
          throw new ToolSchemaError(`'${key}/${name.slice(0, 40)}' is defined differently by two tools`, i);
        }
        defs[id] = sub;
      }
    }
  });
  const schema: Record<string, unknown> = branches.length === 1 ? branches[0]! : { anyOf: branches };
  for (const [id, sub] of Object.entries(defs)) {
    const [key, name] = id.split(/\/(.*)/s) as [string, string];
    ((schema[key] ??= {}) as Record<string, unknown>)[name] = sub;
  }
  switch (format) {
    case 'hermes':
      return { schema, prefix: '<tool_call>\n', suffix: '\n</tool_call>' };
    case 'llama3_json':
      return { schema, prefix: '', suffix: '' };
    case 'mistral':
      return { schema, prefix: '[TOOL_CALLS][', suffix: ']' };
  }
}

/**
 * tool_choice "auto": the same call shape as toolCallConstraint, enforced lazily — only once the
 * model starts a call by writing the format's marker (`<tool_call>` for hermes, `[TOOL_CALLS]` for
 * mistral), as llama-server's lazy grammars do. Llama 3 JSON calls have no marker that is not
 * also ordinary content (`{`), so they stay unconstrained (null), as do tools whose parameters
 * cannot be enforced: "auto" never refuses a request that worked before.
 */
export function lazyToolCallConstraint(format: ToolCallFormat, tools: readonly ToolDefinition[]): GenerationConstraint | null {
  if (format !== 'hermes' && format !== 'mistral') return null;
  let c: GenerationConstraint | null;
  try {
    c = toolCallConstraint(format, tools);
  } catch {
    return null;
  }
  if (!c) return null;
  return { ...c, trigger: format === 'hermes' ? '<tool_call>' : '[TOOL_CALLS]' };
}
