// Writes a random-weight model folder in the real Hugging Face / mlx-community layout:
// config.json, model.safetensors (or shards + model.safetensors.index.json), tokenizer files and
// generation_config.json. Used by the test fixtures and by the app's clearly labelled DEMO model
// (random weights produce gibberish; the point is exercising the real loading and compute path).
import { core as mx } from '@frost-beta/mlx';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type ModelFamilyName = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'qwen3_moe' | 'gemma3_text' | 'gemma3' | 'phi3';
export type StorageDtype = 'float32' | 'bfloat16' | 'float16';

export interface ModelWriteSpec {
  family: ModelFamilyName;
  /** Storage dtype of float tensors (and of quantization scales/biases). Default float32. */
  dtype?: StorageDtype;
  /** mlx-community quantized layout (uint32 weight + scales + biases), embeddings included. */
  quant?: { bits: 4 | 8; groupSize: 32 | 64 } | null;
  tied?: boolean;
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  ropeScaling?: 'llama3' | 'yarn' | 'dynamic' | 'longrope' | null;
  /** qwen3_moe: experts, top-k, expert width, sparse step, dense-only layers, renormalised top-k. */
  moe?: {
    experts: number;
    topK: number;
    intermediate: number;
    normTopk?: boolean;
    sparseStep?: number;
    mlpOnlyLayers?: number[];
    /** Hugging Face per-expert tensors (experts.E.*) instead of mlx-lm's stacked switch_mlp. */
    perExpert?: boolean;
    /** Router kept at 8 bits in a quantized checkpoint (mlx-lm's qwen3_moe quant predicate). */
    router8bit?: boolean;
  } | null;
  /** Sliding attention window (gemma3: local layers; mistral/qwen2: every layer / layers >= maxWindowLayers). */
  slidingWindow?: number | null;
  /** gemma3: every Nth layer is global (sliding_window_pattern); written as layer_types when `layerTypes`. */
  slidingPattern?: number;
  layerTypes?: boolean;
  /** phi3: partial_rotary_factor. */
  partialRotary?: number;
  shards?: number;
  seed?: number;
  maxPositionEmbeddings?: number;
  /** Defaults to 151,936 (covers the Qwen3 tokenizer). */
  vocabSize?: number;
  /**
   * Scales the residual branches' output projections (o_proj, down_proj). Below 1 the next token
   * depends mostly on the current one (with an untied lm_head: a fixed random successor per token),
   * so greedy output re-reads like text seen before — the copying behaviour of real models that
   * random weights lack (bench: lookup decoding on copy-heavy prompts). Same compute per token. Default 1.
   */
  residualScale?: number;
}

/** Qwen3 tokenizer special ids (the fixture tokenizer is the real Qwen3 one). */
export const QWEN3_IM_END = 151645;
export const QWEN3_ENDOFTEXT = 151643;
export const QWEN3_VOCAB = 151936;

/** Fills in defaults so equal specs hash equally and the writer sees every field. */
export function normalizeSpec(spec: ModelWriteSpec): Required<Omit<ModelWriteSpec, 'quant' | 'ropeScaling' | 'moe' | 'slidingWindow'>> & {
  quant: { bits: 4 | 8; groupSize: 32 | 64 } | null;
  ropeScaling: NonNullable<ModelWriteSpec['ropeScaling']> | null;
  moe: NonNullable<ModelWriteSpec['moe']> | null;
  slidingWindow: number | null;
} {
  const quant = spec.quant ?? null;
  // mx.quantize needs in-dims >= 256 (4-bit) / >= 128 (8-bit), so quantized fixtures are wider.
  const hidden = spec.hidden ?? (quant ? 256 : 64);
  const heads = spec.heads ?? 4;
  const explicitHeadDim = spec.family === 'qwen3' || spec.family === 'qwen3_moe' || spec.family.startsWith('gemma3');
  const headDim = spec.headDim ?? (explicitHeadDim ? (quant ? 64 : 32) : hidden / heads);
  return {
    family: spec.family,
    dtype: spec.dtype ?? 'float32',
    quant,
    tied: spec.tied ?? true,
    layers: spec.layers ?? 2,
    hidden,
    heads,
    kvHeads: spec.kvHeads ?? 2,
    headDim,
    intermediate: spec.intermediate ?? (quant ? 512 : 128),
    ropeScaling: spec.ropeScaling ?? null,
    moe: spec.moe ?? null,
    slidingWindow: spec.slidingWindow ?? null,
    slidingPattern: spec.slidingPattern ?? 6,
    layerTypes: spec.layerTypes ?? false,
    partialRotary: spec.partialRotary ?? 1,
    shards: spec.shards ?? 1,
    seed: spec.seed ?? 0,
    maxPositionEmbeddings: spec.maxPositionEmbeddings ?? 4096,
    vocabSize: spec.vocabSize ?? QWEN3_VOCAB,
    residualScale: spec.residualScale ?? 1,
  };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}

function dtypeOf(name: StorageDtype): mx.Dtype {
  return name === 'bfloat16' ? mx.bfloat16 : name === 'float16' ? mx.float16 : mx.float32;
}

const ARCHITECTURES: Record<ModelFamilyName, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  qwen3_moe: 'Qwen3MoeForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
  gemma3: 'Gemma3ForConditionalGeneration',
  phi3: 'Phi3ForCausalLM',
};

function ropeScalingConfig(s: ReturnType<typeof normalizeSpec>): Record<string, unknown> | null {
  const half = (s.headDim * s.partialRotary) / 2;
  switch (s.ropeScaling) {
    case 'llama3':
      return { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' };
    case 'yarn':
      // Qwen3's published long-context recipe; a tiny original context so the ramp matters.
      return { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 };
    case 'dynamic':
      return { type: 'dynamic', factor: 2 };
    case 'longrope':
      return {
        type: 'longrope',
        short_factor: Array.from({ length: half }, (_, i) => 1 + 0.05 * i),
        long_factor: Array.from({ length: half }, (_, i) => 1 + 0.5 * i),
      };
    default:
      return null;
  }
}

export function buildConfig(s: ReturnType<typeof normalizeSpec>): Record<string, unknown> {
  const base: Record<string, unknown> = {
    architectures: [ARCHITECTURES[s.family]],
    model_type: s.family,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    max_position_embeddings: s.maxPositionEmbeddings,
    vocab_size: s.vocabSize,
    tie_word_embeddings: s.tied,
    hidden_act: 'silu',
    torch_dtype: s.dtype,
    bos_token_id: QWEN3_ENDOFTEXT,
    eos_token_id: QWEN3_IM_END,
  };
  const rs = ropeScalingConfig(s);
  if (s.ropeScaling === 'llama3' && s.family !== 'llama') throw new Error('llama3 rope scaling is only written for llama');
  switch (s.family) {
    case 'llama':
      Object.assign(base, {
        rms_norm_eps: 1e-5,
        rope_theta: s.ropeScaling === 'llama3' ? 500000 : 10000,
        rope_scaling: rs,
        attention_bias: false,
        mlp_bias: false,
        head_dim: s.headDim,
      });
      break;
    case 'mistral':
      Object.assign(base, { rms_norm_eps: 1e-5, rope_theta: 1000000, sliding_window: s.slidingWindow, head_dim: s.headDim, rope_scaling: rs });
      break;
    case 'qwen2':
      // Qwen2 always has q/k/v biases; its real config.json has no attention_bias field.
      Object.assign(base, {
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        use_sliding_window: s.slidingWindow !== null,
        sliding_window: s.slidingWindow,
        max_window_layers: s.slidingWindow !== null ? 1 : s.layers,
        rope_scaling: rs,
      });
      break;
    case 'qwen3':
      Object.assign(base, { rms_norm_eps: 1e-6, rope_theta: 1000000, head_dim: s.headDim, attention_bias: false, rope_scaling: rs });
      break;
    case 'qwen3_moe': {
      const m = s.moe ?? { experts: 8, topK: 2, intermediate: 64 };
      Object.assign(base, {
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        head_dim: s.headDim,
        attention_bias: false,
        rope_scaling: rs,
        num_experts: m.experts,
        num_experts_per_tok: m.topK,
        moe_intermediate_size: m.intermediate,
        norm_topk_prob: m.normTopk ?? true,
        decoder_sparse_step: m.sparseStep ?? 1,
        mlp_only_layers: m.mlpOnlyLayers ?? [],
        output_router_logits: false,
        router_aux_loss_coef: 0.001,
      });
      break;
    }
    case 'phi3':
      Object.assign(base, {
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        rope_scaling: rs,
        partial_rotary_factor: s.partialRotary,
        original_max_position_embeddings: s.ropeScaling === 'longrope' ? 64 : s.maxPositionEmbeddings,
        sliding_window: null,
        attention_bias: false,
        resid_pdrop: 0,
      });
      break;
    case 'gemma3_text':
    case 'gemma3': {
      const text: Record<string, unknown> = {
        model_type: 'gemma3_text',
        hidden_size: s.hidden,
        intermediate_size: s.intermediate,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        num_key_value_heads: s.kvHeads,
        head_dim: s.headDim,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        rope_local_base_freq: 10000,
        // Gemma 3 4B+ scale the global layers' rope (linear 8); local layers never are.
        rope_scaling: { rope_type: 'linear', factor: 8 },
        query_pre_attn_scalar: s.headDim + 16,
        sliding_window: s.slidingWindow ?? 8,
        hidden_activation: 'gelu_pytorch_tanh',
        max_position_embeddings: s.maxPositionEmbeddings,
        vocab_size: s.vocabSize,
        final_logit_softcapping: null,
        attn_logit_softcapping: null,
      };
      if (s.layerTypes) {
        text.layer_types = Array.from({ length: s.layers }, (_, i) => ((i + 1) % s.slidingPattern === 0 ? 'full_attention' : 'sliding_attention'));
      } else text.sliding_window_pattern = s.slidingPattern;
      delete base.hidden_act;
      delete base.tie_word_embeddings; // Gemma has no lm_head tensor: tied by absence
      if (s.family === 'gemma3_text') Object.assign(base, text);
      else {
        for (const k of Object.keys(base)) if (!['architectures', 'model_type', 'torch_dtype', 'bos_token_id', 'eos_token_id'].includes(k)) delete base[k];
        Object.assign(base, {
          text_config: text,
          vision_config: { model_type: 'siglip_vision_model', hidden_size: 16, num_hidden_layers: 1, patch_size: 14 },
          mm_tokens_per_image: 256,
          vocab_size: s.vocabSize,
        });
      }
      break;
    }
  }
  if (s.quant) {
    const q: Record<string, unknown> = { group_size: s.quant.groupSize, bits: s.quant.bits };
    if (s.family === 'qwen3_moe' && s.moe?.router8bit) {
      for (let l = 0; l < s.layers; l++) q[`model.layers.${l}.mlp.gate`] = { group_size: 64, bits: 8 };
    }
    base.quantization = q;
    base.quantization_config = q;
  }
  return base;
}

/** Random float32 tensors with HF names; deterministic for a given seed (MLX threefry keys). */
function randomTensors(s: ReturnType<typeof normalizeSpec>): Array<[string, mx.array, 'linear' | 'embed' | 'plain']> {
  const out: Array<[string, mx.array, 'linear' | 'embed' | 'plain']> = [];
  const normal = (name: string, shape: number[], std: number, mean = 0) =>
    mx.random.normal(shape, mx.float32, mean, std, mx.random.key(fnv1a(`${s.seed}:${name}`)));
  const lin = (name: string, outD: number, inD: number, experts = 0) => {
    const residual = /\.(o_proj|down_proj)\.weight$/.test(name) ? s.residualScale : 1;
    out.push([name, normal(name, experts ? [experts, outD, inD] : [outD, inD], residual / Math.sqrt(inD)), 'linear']);
  };
  const vec = (name: string, n: number, std: number, mean: number) => out.push([name, normal(name, [n], std, mean), 'plain']);
  const gemma = s.family === 'gemma3' || s.family === 'gemma3_text';
  // Gemma stores RMSNorm weights as w - 1 (applied as 1 + w).
  const normW = (name: string, n: number) => vec(name, n, 0.1, gemma ? 0 : 1);
  const P = s.family === 'gemma3' ? 'language_model.' : '';
  // Embedding std 2/sqrt(hidden) keeps tied logits at a realistic scale (std ~2); Gemma multiplies
  // embeddings by sqrt(hidden), so its table is stored smaller.
  const embStd = gemma ? 2 / s.hidden : 2 / Math.sqrt(s.hidden);
  out.push([`${P}model.embed_tokens.weight`, normal('embed', [s.vocabSize, s.hidden], embStd), 'embed']);
  const qDim = s.heads * s.headDim;
  const kvDim = s.kvHeads * s.headDim;
  for (let l = 0; l < s.layers; l++) {
    const p = `${P}model.layers.${l}`;
    normW(`${p}.input_layernorm.weight`, s.hidden);
    normW(`${p}.post_attention_layernorm.weight`, s.hidden);
    if (gemma) {
      normW(`${p}.pre_feedforward_layernorm.weight`, s.hidden);
      normW(`${p}.post_feedforward_layernorm.weight`, s.hidden);
    }
    if (s.family === 'phi3') lin(`${p}.self_attn.qkv_proj.weight`, qDim + 2 * kvDim, s.hidden);
    else {
      lin(`${p}.self_attn.q_proj.weight`, qDim, s.hidden);
      lin(`${p}.self_attn.k_proj.weight`, kvDim, s.hidden);
      lin(`${p}.self_attn.v_proj.weight`, kvDim, s.hidden);
    }
    lin(`${p}.self_attn.o_proj.weight`, s.hidden, qDim);
    if (s.family === 'qwen2') {
      vec(`${p}.self_attn.q_proj.bias`, qDim, 0.2, 0);
      vec(`${p}.self_attn.k_proj.bias`, kvDim, 0.2, 0);
      vec(`${p}.self_attn.v_proj.bias`, kvDim, 0.2, 0);
    }
    if (s.family === 'qwen3' || s.family === 'qwen3_moe' || gemma) {
      normW(`${p}.self_attn.q_norm.weight`, s.headDim);
      normW(`${p}.self_attn.k_norm.weight`, s.headDim);
    }
    const m = s.moe;
    const sparse = s.family === 'qwen3_moe' && m && !(m.mlpOnlyLayers ?? []).includes(l) && (l + 1) % (m.sparseStep ?? 1) === 0;
    if (sparse && m) {
      // Router with a larger scale so routing is decisive (clear top-k margins).
      out.push([`${p}.mlp.gate.weight`, normal(`${p}.mlp.gate.weight`, [m.experts, s.hidden], 3 / Math.sqrt(s.hidden)), 'linear']);
      if (m.perExpert) {
        for (let e = 0; e < m.experts; e++) {
          lin(`${p}.mlp.experts.${e}.gate_proj.weight`, m.intermediate, s.hidden);
          lin(`${p}.mlp.experts.${e}.up_proj.weight`, m.intermediate, s.hidden);
          lin(`${p}.mlp.experts.${e}.down_proj.weight`, s.hidden, m.intermediate);
        }
      } else {
        lin(`${p}.mlp.switch_mlp.gate_proj.weight`, m.intermediate, s.hidden, m.experts);
        lin(`${p}.mlp.switch_mlp.up_proj.weight`, m.intermediate, s.hidden, m.experts);
        lin(`${p}.mlp.switch_mlp.down_proj.weight`, s.hidden, m.intermediate, m.experts);
      }
    } else if (s.family === 'phi3') {
      lin(`${p}.mlp.gate_up_proj.weight`, 2 * s.intermediate, s.hidden);
      lin(`${p}.mlp.down_proj.weight`, s.hidden, s.intermediate);
    } else {
      lin(`${p}.mlp.gate_proj.weight`, s.intermediate, s.hidden);
      lin(`${p}.mlp.up_proj.weight`, s.intermediate, s.hidden);
      lin(`${p}.mlp.down_proj.weight`, s.hidden, s.intermediate);
    }
  }
  normW(`${P}model.norm.weight`, s.hidden);
  if (!s.tied && !gemma) lin('lm_head.weight', s.vocabSize, s.hidden);
  if (s.family === 'gemma3') {
    // The multimodal checkpoint's vision side: present in the file, never read by the text engine.
    out.push(['vision_tower.vision_model.embeddings.patch_embedding.weight', normal('vision', [16, 14, 14, 3], 0.02), 'plain']);
    out.push(['multi_modal_projector.mm_input_projection_weight', normal('mmproj', [16, s.hidden], 0.02), 'plain']);
  }
  return out;
}

/** Converts to the checkpoint layout: storage dtype, quantized linear/embedding weights. */
function toCheckpoint(s: ReturnType<typeof normalizeSpec>): Record<string, mx.array> {
  const dt = dtypeOf(s.dtype);
  const tensors: Record<string, mx.array> = {};
  for (const [name, value, kind] of randomTensors(s)) {
    if (s.quant && kind !== 'plain') {
      // mlx-lm's qwen3_moe quant predicate keeps the router at 8 bits, group 64.
      const router8 = s.moe?.router8bit && name.endsWith('.mlp.gate.weight');
      const bits = router8 ? 8 : s.quant.bits;
      const groupSize = router8 ? 64 : s.quant.groupSize;
      const inDim = value.shape[value.ndim - 1];
      const min = bits === 4 ? 256 : 128;
      if (inDim < min || inDim % groupSize !== 0) {
        throw new Error(`quantized fixture needs in-dims >= ${min} and divisible by the group size (got ${inDim} for ${name})`);
      }
      const [w, scales, biases] = mx.quantize(value, groupSize, bits) as unknown as mx.array[];
      const stem = name.slice(0, -'.weight'.length);
      tensors[`${stem}.weight`] = w;
      tensors[`${stem}.scales`] = scales.astype(dt);
      tensors[`${stem}.biases`] = biases.astype(dt);
    } else {
      tensors[name] = value.astype(dt);
    }
  }
  mx.eval(...Object.values(tensors));
  return tensors;
}

/**
 * Writes the model folder into `dir` (which must exist or is created). `tokenizerDir` holds the
 * tokenizer.json + tokenizer_config.json to copy (the real Qwen3 files in tests and demo).
 */
export function writeModelFolder(spec: ModelWriteSpec, dir: string, tokenizerDir: string): void {
  const s = normalizeSpec(spec);
  if (s.hidden % 1 !== 0 || s.headDim % 1 !== 0 || s.heads % s.kvHeads !== 0) throw new Error('inconsistent model dims');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(buildConfig(s), null, 2));
  writeFileSync(
    path.join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: QWEN3_ENDOFTEXT, eos_token_id: [QWEN3_IM_END, QWEN3_ENDOFTEXT], do_sample: false }, null, 2),
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(tokenizerDir, f), path.join(dir, f));

  const tensors = toCheckpoint(s);
  const names = Object.keys(tensors);
  const metadata = { format: 'mlx' };
  if (s.shards <= 1) {
    mx.saveSafetensors(path.join(dir, 'model.safetensors'), tensors, metadata);
    return;
  }
  const n = s.shards;
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const per = Math.ceil(names.length / n);
  for (let i = 0; i < n; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    const part: Record<string, mx.array> = {};
    for (const name of names.slice(i * per, (i + 1) * per)) {
      part[name] = tensors[name];
      weightMap[name] = file;
      totalSize += tensors[name].nbytes ?? 0;
    }
    mx.saveSafetensors(path.join(dir, file), part, metadata);
  }
  writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2),
  );
}

/** Shape of the in-app DEMO model: small enough to load in a second, real Qwen3 layout. */
export const DEMO_MODEL_SPEC: ModelWriteSpec = {
  family: 'qwen3',
  dtype: 'bfloat16',
  layers: 4,
  hidden: 256,
  heads: 4,
  kvHeads: 2,
  headDim: 64,
  intermediate: 768,
  tied: true,
  seed: 7,
  maxPositionEmbeddings: 8192,
};

/**
 * Builds the clearly labelled random-weight DEMO model into `dir`. Its output is gibberish by
 * design; it exists so the app works end to end before the user has downloaded a model.
 */
export function buildDemoModel(dir: string, tokenizerDir: string): string {
  writeModelFolder(DEMO_MODEL_SPEC, dir, tokenizerDir);
  writeFileSync(
    path.join(dir, 'README.md'),
    '# MLX Bar DEMO model\n\nRandom weights (Qwen3 layout, real Qwen3 tokenizer). It produces gibberish by design.\n',
  );
  return dir;
}
