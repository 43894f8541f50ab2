// Writes a random-weight model folder in the real Hugging Face / mlx-community layout:
// config.json, model.safetensors (or shards + model.safetensors.index.json), tokenizer files and
// generation_config.json. Used by the test fixtures and by the app's clearly labelled DEMO model
// (random weights produce gibberish; the point is exercising the real loading and compute path).
import { core as mx } from '@frost-beta/mlx';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type ModelFamilyName = 'llama' | 'mistral' | 'qwen2' | 'qwen3';
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
  ropeScaling?: 'llama3' | null;
  shards?: number;
  seed?: number;
  maxPositionEmbeddings?: number;
  /** Defaults to 151,936 (covers the Qwen3 tokenizer). */
  vocabSize?: number;
}

/** Qwen3 tokenizer special ids (the fixture tokenizer is the real Qwen3 one). */
export const QWEN3_IM_END = 151645;
export const QWEN3_ENDOFTEXT = 151643;
export const QWEN3_VOCAB = 151936;

/** Fills in defaults so equal specs hash equally and the writer sees every field. */
export function normalizeSpec(spec: ModelWriteSpec): Required<Omit<ModelWriteSpec, 'quant' | 'ropeScaling'>> & {
  quant: { bits: 4 | 8; groupSize: 32 | 64 } | null;
  ropeScaling: 'llama3' | null;
} {
  const quant = spec.quant ?? null;
  // mx.quantize needs in-dims >= 256 (4-bit) / >= 128 (8-bit), so quantized fixtures are wider.
  const hidden = spec.hidden ?? (quant ? 256 : 64);
  const heads = spec.heads ?? 4;
  const headDim = spec.headDim ?? (spec.family === 'qwen3' ? (quant ? 64 : 32) : hidden / heads);
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
    shards: spec.shards ?? 1,
    seed: spec.seed ?? 0,
    maxPositionEmbeddings: spec.maxPositionEmbeddings ?? 4096,
    vocabSize: spec.vocabSize ?? QWEN3_VOCAB,
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

export function buildConfig(s: ReturnType<typeof normalizeSpec>): Record<string, unknown> {
  const base: Record<string, unknown> = {
    architectures: [
      { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[
        s.family
      ],
    ],
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
  switch (s.family) {
    case 'llama':
      Object.assign(base, {
        rms_norm_eps: 1e-5,
        rope_theta: s.ropeScaling === 'llama3' ? 500000 : 10000,
        rope_scaling:
          s.ropeScaling === 'llama3'
            ? { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' }
            : null,
        attention_bias: false,
        mlp_bias: false,
        head_dim: s.headDim,
      });
      break;
    case 'mistral':
      Object.assign(base, { rms_norm_eps: 1e-5, rope_theta: 1000000, sliding_window: null, head_dim: s.headDim });
      break;
    case 'qwen2':
      // Qwen2 always has q/k/v biases; its real config.json has no attention_bias field.
      Object.assign(base, { rms_norm_eps: 1e-6, rope_theta: 1000000, use_sliding_window: false, sliding_window: null });
      break;
    case 'qwen3':
      Object.assign(base, { rms_norm_eps: 1e-6, rope_theta: 1000000, head_dim: s.headDim, attention_bias: false });
      break;
  }
  if (s.ropeScaling === 'llama3' && s.family !== 'llama') throw new Error('llama3 rope scaling is only written for llama');
  if (s.quant) {
    base.quantization = { group_size: s.quant.groupSize, bits: s.quant.bits };
    base.quantization_config = { group_size: s.quant.groupSize, bits: s.quant.bits };
  }
  return base;
}

/** Random float32 tensors with HF names; deterministic for a given seed (MLX threefry keys). */
function randomTensors(s: ReturnType<typeof normalizeSpec>): Array<[string, mx.array, 'linear' | 'embed' | 'plain']> {
  const out: Array<[string, mx.array, 'linear' | 'embed' | 'plain']> = [];
  const normal = (name: string, shape: number[], std: number, mean = 0) =>
    mx.random.normal(shape, mx.float32, mean, std, mx.random.key(fnv1a(`${s.seed}:${name}`)));
  const lin = (name: string, outD: number, inD: number) =>
    out.push([name, normal(name, [outD, inD], 1 / Math.sqrt(inD)), 'linear']);
  const vec = (name: string, n: number, std: number, mean: number) => out.push([name, normal(name, [n], std, mean), 'plain']);
  // Embedding std 2/sqrt(hidden) keeps tied logits at a realistic scale (std ~2).
  out.push(['model.embed_tokens.weight', normal('embed', [s.vocabSize, s.hidden], 2 / Math.sqrt(s.hidden)), 'embed']);
  const qDim = s.heads * s.headDim;
  const kvDim = s.kvHeads * s.headDim;
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    vec(`${p}.input_layernorm.weight`, s.hidden, 0.1, 1);
    vec(`${p}.post_attention_layernorm.weight`, s.hidden, 0.1, 1);
    lin(`${p}.self_attn.q_proj.weight`, qDim, s.hidden);
    lin(`${p}.self_attn.k_proj.weight`, kvDim, s.hidden);
    lin(`${p}.self_attn.v_proj.weight`, kvDim, s.hidden);
    lin(`${p}.self_attn.o_proj.weight`, s.hidden, qDim);
    if (s.family === 'qwen2') {
      vec(`${p}.self_attn.q_proj.bias`, qDim, 0.2, 0);
      vec(`${p}.self_attn.k_proj.bias`, kvDim, 0.2, 0);
      vec(`${p}.self_attn.v_proj.bias`, kvDim, 0.2, 0);
    }
    if (s.family === 'qwen3') {
      vec(`${p}.self_attn.q_norm.weight`, s.headDim, 0.1, 1);
      vec(`${p}.self_attn.k_norm.weight`, s.headDim, 0.1, 1);
    }
    lin(`${p}.mlp.gate_proj.weight`, s.intermediate, s.hidden);
    lin(`${p}.mlp.up_proj.weight`, s.intermediate, s.hidden);
    lin(`${p}.mlp.down_proj.weight`, s.hidden, s.intermediate);
  }
  vec('model.norm.weight', s.hidden, 0.1, 1);
  if (!s.tied) lin('lm_head.weight', s.vocabSize, s.hidden);
  return out;
}

/** Converts to the checkpoint layout: storage dtype, quantized linear/embedding weights. */
function toCheckpoint(s: ReturnType<typeof normalizeSpec>): Record<string, mx.array> {
  const dt = dtypeOf(s.dtype);
  const tensors: Record<string, mx.array> = {};
  for (const [name, value, kind] of randomTensors(s)) {
    if (s.quant && kind !== 'plain') {
      const inDim = value.shape[1];
      const min = s.quant.bits === 4 ? 256 : 128;
      if (inDim < min || inDim % s.quant.groupSize !== 0) {
        throw new Error(`quantized fixture needs in-dims >= ${min} and divisible by the group size (got ${inDim} for ${name})`);
      }
      const [w, scales, biases] = mx.quantize(value, s.quant.groupSize, s.quant.bits) as unknown as mx.array[];
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
