// The text side of a model folder in one object: tokenizer, chat template, EOS ids, streaming
// detokenizer, stop strings and tool-call parsing. Pure JS: the server loads it to render and
// count prompts before any engine work; the engine process loads it to stream text.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { ChatTemplate, ChatTemplateError, type RenderChatOptions } from './chat-template.ts';
import { StreamingDetokenizer, type IncrementalDetokenizer } from './detokenizer.ts';
import { StopStringMatcher } from './stop-strings.ts';
import {
  createToolCallParser,
  detectToolCallFormat,
  parseToolCalls,
  type ParsedToolCalls,
  type ToolCallStreamParser,
} from './tool-calls.ts';
import { TextPipelineError, TextTokenizer, errorText, type DecodeOptions, type EncodeOptions } from './tokenizer.ts';
import type { ChatMessage, ToolCallFormat } from './types.ts';

export * from './types.ts';
export { ChatTemplate, ChatTemplateError, FALLBACK_CHATML_TEMPLATE, mistralToolCallId, prepareMessages, strftime } from './chat-template.ts';
export type { RenderChatOptions, SpecialTokenVars, TemplateSources } from './chat-template.ts';
export { StreamingDetokenizer } from './detokenizer.ts';
export type { DetokenizerOptions as StreamingDetokenizerOptions, IncrementalDetokenizer } from './detokenizer.ts';
export { StopStringMatcher, firstStopMatch } from './stop-strings.ts';
export type { StopPushResult } from './stop-strings.ts';
export { createToolCallParser, detectToolCallFormat, jsonValueEnd, newToolCallId, parseToolCalls } from './tool-calls.ts';
export type { ParsedToolCalls, ToolCallParserOptions, ToolCallStreamParser } from './tool-calls.ts';
export { KNOWN_END_TOKENS, TextPipelineError, TextTokenizer, tokenString } from './tokenizer.ts';
export type { AddedTokenInfo, DecodeOptions, EncodeOptions } from './tokenizer.ts';

/** Special tokens that carry tool-call markup: kept in streamed text so the parser can see them. */
export const TOOL_MARKER_TOKENS = ['<tool_call>', '</tool_call>', '<|python_tag|>', '[TOOL_CALLS]', '[ARGS]', '[CALL_ID]'];

export interface DetokenizerOptions {
  /** Default true: special tokens produce no text. */
  skipSpecialTokens?: boolean;
  /** Default true: tool-call marker tokens (TOOL_MARKER_TOKENS) are kept even when special. */
  keepToolMarkers?: boolean;
}

export interface TextPipeline {
  readonly tokenizer: TextTokenizer;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  renderChat(messages: ChatMessage[], opts?: RenderChatOptions): string;
  encodeChat(messages: ChatMessage[], opts?: RenderChatOptions): { text: string; ids: number[] };
  /** True when the chat template's source mentions this variable (e.g. `enable_thinking`). */
  templateUses(variable: string): boolean;
  countChatTokens(messages: ChatMessage[], opts?: RenderChatOptions): number;
  readonly eosTokenIds: number[];
  readonly modelMaxLength: number | null;
  createDetokenizer(opts?: DetokenizerOptions): IncrementalDetokenizer;
  createStopMatcher(stops: readonly string[]): StopStringMatcher;
  readonly toolCallFormat: ToolCallFormat;
  createToolCallParser(): ToolCallStreamParser;
  parseToolCalls(text: string): ParsedToolCalls;
  readonly templateFingerprint: string;
  readonly tokenizerFingerprint: string;
  readonly hasChatTemplate: boolean;
  /**
   * The model folder this pipeline was loaded from (loadTextPipeline), so another thread can load
   * the same one (the server's prompt workers check the fingerprints match); null when it was
   * built from file contents.
   */
  readonly origin?: { modelDir: string } | null;
}

/** The parsed contents of a model folder's text files (for building a pipeline without disk I/O). */
export interface TextPipelineFiles {
  tokenizerJson: string;
  tokenizerConfigJson?: string | null;
  chatTemplateJinja?: string | null;
  chatTemplateJson?: string | null;
  configJson?: string | null;
  generationConfigJson?: string | null;
}

/** Loads the text pipeline of a Hugging Face / mlx-community model folder. */
export async function loadTextPipeline(modelDir: string): Promise<TextPipeline> {
  if (typeof modelDir !== 'string' || modelDir === '') throw new TextPipelineError('tokenizer_missing', 'no model folder given');
  const read = async (name: string): Promise<string | null> => {
    try {
      return await readFile(path.join(modelDir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // Message without the path (it would leak into API errors).
      throw new TextPipelineError('tokenizer_invalid', `${name} could not be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const [tokenizerJson, tokenizerConfigJson, chatTemplateJinja, chatTemplateJson, configJson, generationConfigJson] = await Promise.all([
    read('tokenizer.json'),
    read('tokenizer_config.json'),
    read('chat_template.jinja'),
    read('chat_template.json'),
    read('config.json'),
    read('generation_config.json'),
  ]);
  if (tokenizerJson === null) throw new TextPipelineError('tokenizer_missing', 'the model folder has no tokenizer.json');
  const pipeline = createTextPipeline({ tokenizerJson, tokenizerConfigJson, chatTemplateJinja, chatTemplateJson, configJson, generationConfigJson }) as Pipeline;
  pipeline.origin = { modelDir: path.resolve(modelDir) };
  return pipeline;
}

export function createTextPipeline(files: TextPipelineFiles): TextPipeline {
  const tokenizerJson = parseJson(files.tokenizerJson, 'tokenizer.json', true);
  const tokenizerConfig = (parseJson(files.tokenizerConfigJson, 'tokenizer_config.json', true) ?? {}) as Record<string, unknown>;
  // config/generation_config problems belong to the model loader; here they only mean fewer EOS sources.
  const config = parseJson(files.configJson, 'config.json', false);
  const generationConfig = parseJson(files.generationConfigJson, 'generation_config.json', false);
  const chatTemplateJson = parseJson(files.chatTemplateJson, 'chat_template.json', false) as { chat_template?: unknown } | null;

  const tokenizer = new TextTokenizer(tokenizerJson, tokenizerConfig);
  let template: ChatTemplate;
  try {
    template = new ChatTemplate({
      jinjaFile: files.chatTemplateJinja,
      configValue: tokenizerConfig.chat_template ?? chatTemplateJson?.chat_template,
    });
  } catch (err) {
    throw new TextPipelineError('template_invalid', errorText(err));
  }
  const toolCallFormat: ToolCallFormat = template.isFallback ? 'hermes' : detectToolCallFormat(template.sourceText);
  const sha = (...parts: string[]) => {
    const h = createHash('sha256');
    for (const p of parts) h.update(p).update('\u0000');
    return h.digest('hex');
  };
  return new Pipeline(
    tokenizer,
    template,
    tokenizer.eosTokenIds(config, generationConfig),
    toolCallFormat,
    sha(template.sourceText),
    sha(files.tokenizerJson, files.tokenizerConfigJson ?? ''),
  );
}

class Pipeline implements TextPipeline {
  readonly modelMaxLength: number | null;
  readonly hasChatTemplate: boolean;
  origin: { modelDir: string } | null = null;
  private readonly toolMarkerIds: ReadonlySet<number>;
  /**
   * Rendered + tokenized prompts by request content. Rendering the Jinja template and BPE-encoding
   * the result is most of the CPU a response-cache hit costs (profiled: ~60% of a hit), and the
   * same conversation arrives again on retries, regenerate buttons and replayed requests. Bounded
   * by UTF-16 code units (key + text) plus 2 per token id.
   */
  private readonly encodeMemo = new LRUCache<string, { text: string; ids: readonly number[] }>({
    max: 512,
    maxSize: 16 * 1024 * 1024,
    sizeCalculation: (v, k) => k.length + v.text.length + 2 * v.ids.length + 64,
  });
  /** Templates that call strftime_now render differently over time: the clock joins the key. */
  private readonly usesClock: boolean;

  constructor(
    readonly tokenizer: TextTokenizer,
    private readonly template: ChatTemplate,
    readonly eosTokenIds: number[],
    readonly toolCallFormat: ToolCallFormat,
    readonly templateFingerprint: string,
    readonly tokenizerFingerprint: string,
  ) {
    this.modelMaxLength = tokenizer.modelMaxLength;
    this.hasChatTemplate = !template.isFallback;
    const ids = new Set<number>();
    for (const t of TOOL_MARKER_TOKENS) {
      const info = tokenizer.addedTokens.get(t);
      if (info) ids.add(info.id);
    }
    this.toolMarkerIds = ids;
    this.usesClock = template.sourceText.includes('strftime_now');
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    return this.tokenizer.encode(text, opts);
  }

  decode(ids: readonly number[], opts?: DecodeOptions): string {
    return this.tokenizer.decode(ids, opts);
  }

  renderChat(messages: ChatMessage[], opts: RenderChatOptions = {}): string {
    return this.template.render(
      messages,
      opts,
      {
        bos_token: this.tokenizer.bosToken,
        eos_token: this.tokenizer.eosToken,
        pad_token: this.tokenizer.padToken,
        unk_token: this.tokenizer.unkToken,
      },
      this.toolCallFormat,
    );
  }

  templateUses(variable: string): boolean {
    return this.template.sourceText.includes(variable);
  }

  encodeChat(messages: ChatMessage[], opts?: RenderChatOptions): { text: string; ids: number[] } {
    // The key is everything the rendering depends on (the format and specials are fixed per
    // pipeline); with a clock-using template, the current second too (strftime_now's finest unit).
    let key: string | null;
    try {
      key = JSON.stringify([
        messages,
        opts?.tools ?? null,
        opts?.addGenerationPrompt ?? true,
        opts?.templateKwargs ?? null,
        this.usesClock ? Math.floor(Date.now() / 1000) : 0,
      ]);
    } catch {
      key = null; // not JSON (cycles, BigInt): render uncached and let the template report it
    }
    const hit = key === null ? undefined : this.encodeMemo.get(key);
    // A copy: callers own the returned array.
    if (hit) return { text: hit.text, ids: hit.ids.slice() };
    const text = this.renderChat(messages, opts);
    // The template already wrote BOS and role markers; the post-processor must not add them again.
    const ids = this.tokenizer.encode(text, { addSpecialTokens: false });
    if (key !== null) this.encodeMemo.set(key, { text, ids: ids.slice() });
    return { text, ids };
  }

  countChatTokens(messages: ChatMessage[], opts?: RenderChatOptions): number {
    return this.encodeChat(messages, opts).ids.length;
  }

  createDetokenizer(opts: DetokenizerOptions = {}): IncrementalDetokenizer {
    return new StreamingDetokenizer(this.tokenizer, {
      skipSpecialTokens: opts.skipSpecialTokens ?? true,
      keepTokenIds: opts.keepToolMarkers === false ? undefined : this.toolMarkerIds,
    });
  }

  createStopMatcher(stops: readonly string[]): StopStringMatcher {
    return new StopStringMatcher(stops);
  }

  createToolCallParser(): ToolCallStreamParser {
    return createToolCallParser(this.toolCallFormat);
  }

  parseToolCalls(text: string): ParsedToolCalls {
    return parseToolCalls(text, this.toolCallFormat);
  }
}

function parseJson(text: string | null | undefined, name: string, strict: boolean): unknown {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    if (!strict) return null;
    throw new TextPipelineError('tokenizer_invalid', `${name} is not valid JSON: ${errorText(err)}`);
  }
}

