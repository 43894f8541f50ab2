// Tokenizer of a Hugging Face model folder (tokenizer.json + tokenizer_config.json) on
// @huggingface/tokenizers, which gives ids identical to the Python reference (measured in
// shared/reference/engine-findings.md §4). Adds what the library leaves out: special-token
// bookkeeping, BOS/EOS strings from the config (plain strings or AddedToken objects), safe decoding
// of ids the vocab does not know (random-weight models emit embedding-padding ids), and EOS collection.
import { Tokenizer } from '@huggingface/tokenizers';

export class TextPipelineError extends Error {
  readonly code: 'tokenizer_missing' | 'tokenizer_invalid' | 'template_invalid';
  constructor(code: TextPipelineError['code'], message: string) {
    super(message);
    this.name = 'TextPipelineError';
    this.code = code;
  }
}

export interface EncodeOptions {
  /** HF semantics, default true: let the post-processor add BOS/EOS where the model wants them. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special added tokens (`<|im_end|>`, `<s>` …). Default false (HF default). */
  skipSpecialTokens?: boolean;
  /**
   * HF's legacy " ." → "." / " n't" → "n't" clean-up. Default false: it corrupts code
   * (`x .y`, `a , b`) and would make streamed text differ from what the model wrote.
   */
  cleanUpTokenizationSpaces?: boolean;
  /** Special tokens to keep even when skipSpecialTokens is set (e.g. tool-call markers). */
  keepTokenIds?: ReadonlySet<number>;
}

export interface AddedTokenInfo {
  id: number;
  content: string;
  special: boolean;
}

/** Config token fields are strings, null, or `{"__type":"AddedToken","content":…}` objects. */
export function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

/** Known end-of-turn / end-of-text tokens of the supported families; used when present in the vocab. */
export const KNOWN_END_TOKENS = [
  '<|im_end|>', // ChatML: Qwen2/2.5/3, Hermes
  '<|endoftext|>', // Qwen base/pad (generation_config of Qwen3 lists it as EOS)
  '<|eot_id|>', // Llama 3 end of turn
  '<|eom_id|>', // Llama 3.1 end of message (after a tool call with builtin tools)
  '<|end_of_text|>', // Llama 3 end of text
  '</s>', // Llama 2 / Mistral SentencePiece
  '<end_of_turn>', // Gemma
];

function toIdList(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0);
  return [];
}

export class TextTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  /** model_max_length from tokenizer_config (null when absent or the HF "very large" sentinel). */
  readonly modelMaxLength: number | null;
  /** Added tokens by content (special and non-special), from tokenizer.json. */
  readonly addedTokens: ReadonlyMap<string, AddedTokenInfo>;
  /** Ids of special tokens: added tokens flagged special + config additional_special_tokens. */
  readonly specialTokenIds: ReadonlySet<number>;
  /** Largest known id + 1 (base vocab and added tokens). */
  readonly vocabSize: number;
  private readonly lib: Tokenizer;
  private readonly idToTokenArr: (string | undefined)[];

  constructor(tokenizerJson: unknown, tokenizerConfig: unknown) {
    if (!tokenizerJson || typeof tokenizerJson !== 'object' || !('model' in tokenizerJson)) {
      throw new TextPipelineError('tokenizer_invalid', 'tokenizer.json is not a Hugging Face tokenizer (no "model")');
    }
    const config = (tokenizerConfig && typeof tokenizerConfig === 'object' ? tokenizerConfig : {}) as Record<string, unknown>;
    const tj = tokenizerJson as { added_tokens?: unknown };
    if (!Array.isArray(tj.added_tokens)) (tokenizerJson as unknown as { added_tokens: unknown[] }).added_tokens = [];
    // The library's decode() reads clean_up_tokenization_spaces from this config; we pass the option
    // explicitly on every call, so the config value only matters for callers of `lib` directly.
    const libConfig = { ...config };
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
      if (k in libConfig) libConfig[k] = tokenString(libConfig[k]) ?? undefined;
    }
    if (Array.isArray(libConfig.additional_special_tokens)) {
      libConfig.additional_special_tokens = (libConfig.additional_special_tokens as unknown[])
        .map(tokenString)
        .filter((s): s is string => s !== null);
    }
    try {
      this.lib = new Tokenizer(tokenizerJson as object, libConfig);
    } catch (err) {
      throw new TextPipelineError('tokenizer_invalid', `tokenizer.json could not be loaded: ${errorText(err)}`);
    }

    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.padToken = tokenString(config.pad_token);
    this.unkToken = tokenString(config.unk_token);
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === 'number' && Number.isFinite(mml) && mml > 0 && mml < 1e12 ? mml : null;

    const added = new Map<string, AddedTokenInfo>();
    const special = new Set<number>();
    for (const raw of (tokenizerJson as unknown as { added_tokens: unknown[] }).added_tokens) {
      const t = raw as { id?: unknown; content?: unknown; special?: unknown };
      if (typeof t.id !== 'number' || typeof t.content !== 'string') continue;
      const info = { id: t.id, content: t.content, special: t.special === true };
      added.set(t.content, info);
      if (info.special) special.add(t.id);
    }
    for (const s of (Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : []).map(tokenString)) {
      const id = s === null ? undefined : this.lib.token_to_id(s);
      if (id !== undefined) special.add(id);
    }
    // BOS/EOS/PAD/UNK are special in HF even when tokenizer.json forgot the flag.
    for (const s of [this.bosToken, this.eosToken, this.padToken, this.unkToken]) {
      const id = s === null ? undefined : this.lib.token_to_id(s);
      if (id !== undefined) special.add(id);
    }
    this.addedTokens = added;
    this.specialTokenIds = special;
    const vocab = (this.lib.model as unknown as { vocab: (string | undefined)[] }).vocab;
    this.idToTokenArr = vocab;
    this.vocabSize = vocab.length;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError('encode() expects a string');
    if (text.length === 0) {
      // The post-processor may still add BOS for an empty prompt.
      if (opts.addSpecialTokens === false) return [];
    }
    return this.lib.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const keep = opts.keepTokenIds;
    const filtered: number[] = [];
    for (const id of ids) {
      // Ids outside the vocab (embedding padding rows) decode to nothing rather than "undefined".
      if (!Number.isInteger(id) || id < 0 || this.idToTokenArr[id] === undefined) continue;
      if (opts.skipSpecialTokens && this.specialTokenIds.has(id) && !keep?.has(id)) continue;
      filtered.push(id);
    }
    if (filtered.length === 0) return '';
    // We filtered special tokens ourselves (so keepTokenIds works); the library must not re-filter.
    return this.lib.decode(filtered, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.idToTokenArr[id];
  }

  isSpecial(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  /**
   * Every id that ends generation: config.json `eos_token_id` (int or list), generation_config.json
   * `eos_token_id`, the tokenizer's eos_token, and known end tokens present as added tokens. Sorted, unique.
   */
  eosTokenIds(config?: unknown, generationConfig?: unknown): number[] {
    const ids = new Set<number>();
    for (const src of [config, generationConfig]) {
      if (src && typeof src === 'object') for (const id of toIdList((src as { eos_token_id?: unknown }).eos_token_id)) ids.add(id);
    }
    if (this.eosToken !== null) {
      const id = this.tokenToId(this.eosToken);
      if (id !== undefined) ids.add(id);
    }
    for (const s of KNOWN_END_TOKENS) {
      const info = this.addedTokens.get(s);
      if (info) ids.add(info.id);
    }
    return [...ids].sort((a, b) => a - b);
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : 'unknown error';
}
