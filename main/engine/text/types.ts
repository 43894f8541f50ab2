// OpenAI-style chat types shared by the server (request validation, responses) and the text
// pipeline (chat template rendering, tool-call parsing). No runtime code, no MLX imports.

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

/** One part of an array-form `content`. Only text parts are supported (no images/audio). */
export interface TextContentPart {
  type: 'text';
  text: string;
}

/** `content` as OpenAI accepts it: a string, an array of text parts, or null (assistant with tool_calls). */
export type ChatContent = string | TextContentPart[] | null;

/** A tool call as OpenAI returns it (and as clients send it back in assistant history). */
export interface ToolCall {
  id: string;
  type: 'function';
  function: {
    name: string;
    /** JSON text of the arguments object (OpenAI sends a string, not an object). */
    arguments: string;
  };
}

export interface ChatMessage {
  role: ChatRole;
  content?: ChatContent;
  /** Optional participant name (passed to the template as-is). */
  name?: string;
  /** assistant only. */
  tool_calls?: ToolCall[];
  /** tool only: which call this result answers. */
  tool_call_id?: string;
  /** assistant only, non-standard (DeepSeek/Qwen style): earlier reasoning, some templates use it. */
  reasoning_content?: string | null;
}

/** A tool definition as in the OpenAI request `tools` array. */
export interface ToolDefinition {
  type: 'function';
  function: {
    name: string;
    description?: string;
    /** JSON Schema of the arguments object. */
    parameters?: Record<string, unknown>;
    strict?: boolean;
  };
}

/**
 * How the loaded model writes tool calls, chosen from its chat template text:
 * - `hermes`: `<tool_call>{"name":…,"arguments":{…}}</tool_call>` (Qwen2.5, Qwen3, Hermes, the fallback ChatML template)
 * - `llama3_json`: `{"name":…,"parameters":{…}}`, optionally after `<|python_tag|>`, several joined by `;` (Llama 3.1+)
 * - `mistral`: `[TOOL_CALLS][{"name":…,"arguments":{…}}, …]` (v0.3) or `[TOOL_CALLS]name[ARGS]{…}` (newer tekken)
 * - `none`: the template has no tool support; tool calls are never parsed.
 */
export type ToolCallFormat = 'hermes' | 'llama3_json' | 'mistral' | 'none';

/** Events of the streaming tool-call parser, in output order. */
export type ToolParserEvent =
  /** Plain assistant text (never contains tool-call markup that was parsed as a call). */
  | { type: 'content'; text: string }
  /** A new tool call begins: first OpenAI fragment `{index, id, type:'function', function:{name, arguments:''}}`. */
  | { type: 'tool_call'; index: number; id: string; name: string }
  /** Argument text of call `index`: OpenAI fragment `{index, function:{arguments: argumentsDelta}}`. */
  | { type: 'tool_call_arguments'; index: number; argumentsDelta: string };
