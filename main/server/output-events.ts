// The end-of-generation summary each API dialect reports (usage, finish reason, timings), next to
// the OutputEvent stream of output-split.ts (reasoning / content / tool calls).
export type { OutputEvent } from './output-split.ts';

export interface OutputDone {
  /** `tool_calls` when at least one tool call was parsed and the generation was not cut. */
  finishReason: 'stop' | 'length' | 'tool_calls';
  promptTokens: number;
  /** Prompt tokens served from the prefix cache (or all of them on a response-cache hit). */
  cachedTokens: number;
  completionTokens: number;
  /** Engine timings (ms), 0 on a response-cache hit. */
  prefillMs: number;
  decodeMs: number;
  /** ms from the request's arrival to its end (server side), for APIs that report durations. */
  totalMs: number;
}
