// Parses a Hugging Face / mlx-community config.json into a typed, validated ModelConfig.
// Family-specific defaults (e.g. Qwen2's implicit q/k/v bias) come from the registry so this
// file never needs to know about individual families beyond asking the registry.
import { findFamily, getFamily } from './registry.ts';
import { ModelConfigError, num, posInt } from './config-fields.ts';

export { ModelConfigError, configInt, configNum } from './config-fields.ts';

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}
export interface LinearRopeScaling {
  type: 'linear';
  factor: number;
}
/** YaRN (Qwen3 long-context configs, DeepSeek distills): per-frequency blend + attention scale. */
export interface YarnRopeScaling {
  type: 'yarn';
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
  /** Explicit attention_factor (overrides the mscale ratio). */
  attentionFactor: number | null;
}
/** Dynamic NTK: the rope base grows with the sequence length once it exceeds max_position_embeddings. */
export interface DynamicRopeScaling {
  type: 'dynamic';
  factor: number;
}
/** Phi-3/4 "longrope" (alias "su"): per-frequency factors (short / long) + attention scale. */
export interface LongRopeScaling {
  type: 'longrope';
  shortFactor: number[];
  longFactor: number[];
  originalMaxPositionEmbeddings: number;
  /** Explicit attention_factor, else sqrt(1 + ln(max/orig) / ln(orig)). */
  attentionFactor: number | null;
}
export type RopeScaling = Llama3RopeScaling | LinearRopeScaling | YarnRopeScaling | DynamicRopeScaling | LongRopeScaling;

/** Sparse MoE MLP (Qwen3-MoE): router + stacked experts on the layers `sparseLayers` marks. */
export interface MoeConfig {
  numExperts: number;
  topK: number;
  /** Renormalise the top-k router probabilities to sum to 1. */
  normTopkProb: boolean;
  moeIntermediateSize: number;
  /** Per layer: true = sparse MoE block, false = dense MLP of intermediate_size. */
  sparseLayers: boolean[];
}

export interface ModelConfig {
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** GPT-NeoX style (rotate-half) rope is what every supported family uses: traditional=false. */
  ropeTraditional: boolean;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  /** Longest sequence the engine serves: max_position_embeddings (× factor for dynamic NTK rope). */
  contextLength: number;
  /** q/k/v projections carry a bias (Qwen2 always; others when attention_bias is true). */
  qkvBias: boolean;
  /** o_proj carries a bias (llama attention_bias=true). */
  oBias: boolean;
  mlpBias: boolean;
  /** Per-head RMSNorm on q and k before rope (Qwen3). */
  qkNorm: boolean;
  eosTokenIds: number[];
  quantization: { groupSize: number; bits: number } | null;
  /**
   * Per-module overrides of mixed-precision mlx-community checkpoints: config.json "quantization"
   * may map a module path (e.g. "model.layers.0.mlp.down_proj") to its own {group_size, bits},
   * or to false for a module kept in float.
   */
  quantizationOverrides: Record<string, { groupSize: number; bits: number } | false>;

  // ---- Family switches beyond the Llama block (set by a family's `configure`) -----------------
  /** MLP activation: SwiGLU (silu) or GeGLU with tanh-approximated GELU (Gemma). */
  hiddenAct: 'silu' | 'gelu_tanh';
  /** Number of leading head dims that get rope (Phi-4-mini partial_rotary_factor); = headDim normally. */
  ropeDims: number;
  /** Attention softmax scale (1/sqrt(headDim); Gemma: query_pre_attn_scalar^-0.5). */
  attnScale: number;
  /** Embeddings multiplied by this (Gemma: sqrt(hidden) rounded to bfloat16), else null. */
  embedScale: number | null;
  /** RMSNorm weights are stored as w - 1 and applied as (1 + w) (Gemma); added at load. */
  normPlusOne: boolean;
  /** Gemma's extra norms on the attention and MLP outputs (pre/post feed-forward layernorms). */
  sandwichNorms: boolean;
  /** Phi-3 fused projections: qkv_proj (q, k, v rows in that order) and gate_up_proj (gate, up). */
  fusedQkv: boolean;
  fusedGateUp: boolean;
  /** Per layer: the sliding attention window (each query sees itself and window-1 earlier keys), or null. */
  layerWindows: (number | null)[];
  /** Per layer rope base (Gemma's sliding layers use rope_local_base_freq and no scaling). */
  layerRopeTheta: number[];
  /** Per layer: whether rope_scaling applies (false on Gemma's local layers). */
  layerRopeScaled: boolean[];
  moe: MoeConfig | null;
  /** Tensor-name prefix of the text model ('' or 'language_model.' in a multimodal checkpoint). */
  weightPrefix: string;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

function parseRopeScaling(raw: unknown, fallbackMaxPos: number, fallbackOrigMaxPos?: number): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object') throw new ModelConfigError('config.json "rope_scaling" must be an object');
  const r = raw as Record<string, unknown>;
  const type = String(r.rope_type ?? r.type ?? 'default');
  if (type === 'default') return null;
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: num(r, 'factor'),
      lowFreqFactor: num(r, 'low_freq_factor', 1),
      highFreqFactor: num(r, 'high_freq_factor', 4),
      originalMaxPositionEmbeddings: num(r, 'original_max_position_embeddings', 8192),
    };
  }
  if (type === 'linear') return { type: 'linear', factor: num(r, 'factor') };
  if (type === 'yarn') {
    return {
      type: 'yarn',
      factor: num(r, 'factor'),
      originalMaxPositionEmbeddings: num(r, 'original_max_position_embeddings', fallbackMaxPos),
      betaFast: num(r, 'beta_fast', 32),
      betaSlow: num(r, 'beta_slow', 1),
      mscale: num(r, 'mscale', 1),
      mscaleAllDim: num(r, 'mscale_all_dim', 0),
      attentionFactor: typeof r.attention_factor === 'number' ? r.attention_factor : null,
    };
  }
  if (type === 'dynamic') return { type: 'dynamic', factor: num(r, 'factor') };
  if (type === 'longrope' || type === 'su') {
    const list = (k: string) => {
      const v = r[k];
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && x > 0)) {
        throw new ModelConfigError(`config.json rope_scaling "${k}" must be a list of positive numbers`);
      }
      return v as number[];
    };
    return {
      type: 'longrope',
      shortFactor: list('short_factor'),
      longFactor: list('long_factor'),
      originalMaxPositionEmbeddings: num(r, 'original_max_position_embeddings', fallbackOrigMaxPos ?? fallbackMaxPos),
      attentionFactor: typeof r.attention_factor === 'number' ? r.attention_factor : null,
    };
  }
  throw new ModelConfigError(`unsupported rope_scaling type "${type}" (supported: llama3, linear, yarn, dynamic, longrope)`);
}

/** Validates and normalizes a parsed config.json object. */
export function parseModelConfig(raw: unknown): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelConfigError('config.json must be a JSON object');
  const outer = raw as Record<string, unknown>;
  const modelType = outer.model_type;
  if (typeof modelType !== 'string') throw new ModelConfigError('config.json is missing "model_type"');
  const family = getFamily(modelType); // throws for unsupported architectures
  // A multimodal checkpoint's text model: its fields (and tensor-name prefix) come from the family.
  const text = family.textConfig ? family.textConfig(outer) : { raw: outer, weightPrefix: '' };
  const r = text.raw;

  const hiddenSize = posInt(r, 'hidden_size');
  const numHeads = posInt(r, 'num_attention_heads');
  const numKvHeads = posInt(r, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError('num_attention_heads must be a multiple of num_key_value_heads');
  }
  const explicitHeadDim = r.head_dim;
  const headDim =
    explicitHeadDim === undefined || explicitHeadDim === null ? hiddenSize / numHeads : posInt(r, 'head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new ModelConfigError('head dimension must be an even integer');

  const q = (outer.quantization ?? outer.quantization_config) as Record<string, unknown> | undefined | null;
  let quantization: ModelConfig['quantization'] = null;
  const quantizationOverrides: ModelConfig['quantizationOverrides'] = {};
  const parseQuant = (o: Record<string, unknown>) => {
    const bits = num(o, 'bits');
    const groupSize = num(o, 'group_size', 64);
    // mx.dequantize/quantizedMatmul of @frost-beta/mlx 0.0.7 only know 2, 4 and 8 bits (3/5/6-bit
    // mlx-community checkpoints need a newer MLX).
    if (![2, 4, 8].includes(bits)) {
      throw new ModelConfigError(`unsupported quantization bits ${bits} (this MLX build supports 2, 4 and 8)`);
    }
    if (![32, 64, 128].includes(groupSize)) throw new ModelConfigError(`unsupported quantization group size ${groupSize}`);
    return { bits, groupSize };
  };
  if (q && typeof q === 'object' && q.bits !== undefined) {
    quantization = parseQuant(q);
    for (const [k, v] of Object.entries(q)) {
      if (v === false) quantizationOverrides[k] = false;
      else if (v && typeof v === 'object' && (v as Record<string, unknown>).bits !== undefined) {
        quantizationOverrides[k] = parseQuant(v as Record<string, unknown>);
      }
    }
  }

  const numLayers = posInt(r, 'num_hidden_layers');
  const maxPositionEmbeddings = posInt(r, 'max_position_embeddings', 4096);
  const ropeTheta = num(r, 'rope_theta', family.defaultRopeTheta);
  const act = r.hidden_activation ?? r.hidden_act;
  const hiddenAct = HIDDEN_ACTS[String(act ?? 'silu')];
  if (!hiddenAct) throw new ModelConfigError(`unsupported hidden_act "${String(act)}" (supported: silu, gelu_pytorch_tanh)`);
  const cfg: ModelConfig = {
    modelType,
    hiddenSize,
    intermediateSize: posInt(r, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(r, 'vocab_size'),
    rmsNormEps: num(r, 'rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling: parseRopeScaling(
      r.rope_scaling,
      maxPositionEmbeddings,
      typeof r.original_max_position_embeddings === 'number' ? r.original_max_position_embeddings : undefined,
    ),
    ropeTraditional: r.rope_traditional === true,
    tieWordEmbeddings: r.tie_word_embeddings === undefined ? family.defaultTied : r.tie_word_embeddings === true,
    maxPositionEmbeddings,
    contextLength: maxPositionEmbeddings,
    qkvBias: family.qkvBias(r),
    oBias: family.oBias(r),
    mlpBias: r.mlp_bias === true,
    qkNorm: family.qkNorm,
    eosTokenIds: idList(r.eos_token_id ?? outer.eos_token_id),
    quantization,
    quantizationOverrides,
    hiddenAct,
    ropeDims: headDim,
    attnScale: 1 / Math.sqrt(headDim),
    embedScale: null,
    normPlusOne: false,
    sandwichNorms: false,
    fusedQkv: false,
    fusedGateUp: false,
    layerWindows: layerTypesWindows(r, numLayers) ?? new Array(numLayers).fill(null),
    layerRopeTheta: new Array(numLayers).fill(ropeTheta),
    layerRopeScaled: new Array(numLayers).fill(true),
    moe: null,
    weightPrefix: text.weightPrefix,
  };
  family.configure?.(r, cfg);
  // Dynamic NTK exists to run past the trained context: its base grows with the length.
  if (cfg.ropeScaling?.type === 'dynamic') cfg.contextLength = Math.floor(maxPositionEmbeddings * cfg.ropeScaling.factor);
  if (cfg.ropeDims % 2 !== 0 || cfg.ropeDims > headDim) throw new ModelConfigError('rotary dimension must be even and at most head_dim');
  return cfg;
}

const HIDDEN_ACTS: Record<string, ModelConfig['hiddenAct']> = {
  silu: 'silu',
  swish: 'silu',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
};

/**
 * Per-layer windows from the newer Hugging Face `layer_types` list ("sliding_attention" /
 * "full_attention") with `sliding_window`; null when the config has no such list.
 */
export function layerTypesWindows(r: Record<string, unknown>, numLayers: number): (number | null)[] | null {
  const types = r.layer_types;
  if (!Array.isArray(types)) return null;
  if (types.length !== numLayers) throw new ModelConfigError('config.json "layer_types" must list every layer');
  const anySliding = types.some((t) => t === 'sliding_attention');
  const w = anySliding ? posInt(r, 'sliding_window') : null;
  return types.map((t) => (t === 'sliding_attention' ? w : null));
}

/**
 * What the library shows without loading a model: the family that runs `raw` (config.json), its
 * parsed config (null when unsupported or invalid) and, for MoE, the parameters active per token.
 */
export function describeModel(
  raw: Record<string, unknown>,
  totalParameters: number | null,
): { family: string | null; config: ModelConfig | null; activeParameters: number | null } {
  const mt = raw.model_type;
  const family = typeof mt === 'string' ? findFamily(mt) : undefined;
  if (!family) return { family: null, config: null, activeParameters: null };
  let config: ModelConfig | null = null;
  try {
    config = parseModelConfig(raw);
  } catch {
    return { family: family.name, config: null, activeParameters: null };
  }
  let activeParameters: number | null = null;
  if (config.moe && totalParameters !== null) {
    // Every sparse layer runs top-k of its experts (gate, up and down projections each).
    const m = config.moe;
    const perExpert = 3 * config.hiddenSize * m.moeIntermediateSize;
    const sparse = m.sparseLayers.filter(Boolean).length;
    activeParameters = totalParameters - sparse * (m.numExperts - m.topK) * perExpert;
  }
  return { family: family.name, config, activeParameters };
}
