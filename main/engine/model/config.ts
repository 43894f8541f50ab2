// Parses a Hugging Face / mlx-community config.json into a typed, validated ModelConfig.
// Family-specific defaults (e.g. Qwen2's implicit q/k/v bias) come from the registry so this
// file never needs to know about individual families beyond asking the registry.
import { getFamily } from './registry.ts';

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
export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

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
}

export class ModelConfigError extends Error {
  override name = 'ModelConfigError';
}

function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError(`config.json is missing "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelConfigError(`config.json "${key}" must be a number`);
  return v;
}

function posInt(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = num(raw, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ModelConfigError(`config.json "${key}" must be a positive integer`);
  return v;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

function parseRopeScaling(raw: unknown): RopeScaling | null {
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
  throw new ModelConfigError(`unsupported rope_scaling type "${type}" (supported: llama3, linear)`);
}

/** Validates and normalizes a parsed config.json object. */
export function parseModelConfig(raw: unknown): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelConfigError('config.json must be a JSON object');
  const r = raw as Record<string, unknown>;
  const modelType = r.model_type;
  if (typeof modelType !== 'string') throw new ModelConfigError('config.json is missing "model_type"');
  const family = getFamily(modelType); // throws for unsupported architectures

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

  const q = (r.quantization ?? r.quantization_config) as Record<string, unknown> | undefined | null;
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

  const cfg: ModelConfig = {
    modelType,
    hiddenSize,
    intermediateSize: posInt(r, 'intermediate_size'),
    numLayers: posInt(r, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(r, 'vocab_size'),
    rmsNormEps: num(r, 'rms_norm_eps', 1e-6),
    ropeTheta: num(r, 'rope_theta', family.defaultRopeTheta),
    ropeScaling: parseRopeScaling(r.rope_scaling),
    ropeTraditional: r.rope_traditional === true,
    tieWordEmbeddings: r.tie_word_embeddings === undefined ? family.defaultTied : r.tie_word_embeddings === true,
    maxPositionEmbeddings: posInt(r, 'max_position_embeddings', 4096),
    qkvBias: family.qkvBias(r),
    oBias: family.oBias(r),
    mlpBias: r.mlp_bias === true,
    qkNorm: family.qkNorm,
    eosTokenIds: idList(r.eos_token_id),
    quantization,
    quantizationOverrides,
  };
  if (r.hidden_act !== undefined && r.hidden_act !== 'silu') {
    throw new ModelConfigError(`unsupported hidden_act "${String(r.hidden_act)}" (supported: silu)`);
  }
  return cfg;
}
