// Gemma 3 (`gemma3_text`; and `gemma3`, the multimodal checkpoint, whose text model is read from
// `text_config` and the `language_model.` tensors — the vision tower is ignored). Differences from
// the Llama block, per HF Gemma3 / mlx-lm gemma3_text.py:
//  - RMSNorm applies (1 + w) (weights.ts adds the 1 at load), also on q/k norms and the final norm;
//  - embeddings × sqrt(hidden_size), rounded to bfloat16 as the reference implementations do;
//  - GeGLU MLP (gelu_pytorch_tanh); norms before AND after attention and the MLP ("sandwich");
//  - attention scale query_pre_attn_scalar^-0.5;
//  - sliding-window layers (`layer_types`, or every layer but each `sliding_window_pattern`-th)
//    with rope base rope_local_base_freq and no rope scaling; global layers use rope_theta and
//    rope_scaling;
//  - tied embeddings (the checkpoint has no lm_head).
import { configInt, configNum, ModelConfigError } from './config-fields.ts';
import type { FamilySpec } from './family.ts';

/** Hugging Face Gemma3TextConfig defaults for fields a config.json may leave out. */
const TEXT_DEFAULTS: Record<string, unknown> = {
  vocab_size: 262208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_local_base_freq: 10000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  sliding_window_pattern: 6,
  max_position_embeddings: 131072,
  hidden_activation: 'gelu_pytorch_tanh',
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Round to the nearest bfloat16 (ties to even), as `torch.tensor(x, dtype=bfloat16)` does. */
export function roundToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

function withDefaults(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of Object.entries(TEXT_DEFAULTS)) if (out[k] === undefined || out[k] === null) out[k] = v;
  return out;
}

export const gemma3: FamilySpec = {
  name: 'gemma3',
  modelTypes: ['gemma3_text', 'gemma3'],
  defaultRopeTheta: 1000000,
  defaultTied: true,
  qkvBias: (raw) => raw.attention_bias === true,
  oBias: (raw) => raw.attention_bias === true,
  qkNorm: true,
  textConfig(raw) {
    if (raw.model_type !== 'gemma3') return { raw: withDefaults(raw), weightPrefix: '' };
    const tc = raw.text_config;
    if (!tc || typeof tc !== 'object' || Array.isArray(tc)) throw new ModelConfigError('config.json (gemma3) has no "text_config" object');
    // mlx-lm's gemma3 wrapper: the outer vocab_size wins.
    const merged = { ...(tc as Record<string, unknown>) };
    if (typeof raw.vocab_size === 'number') merged.vocab_size = raw.vocab_size;
    if (merged.eos_token_id === undefined) merged.eos_token_id = raw.eos_token_id;
    return { raw: withDefaults(merged), weightPrefix: 'language_model.' };
  },
  configure(raw, cfg) {
    for (const k of ['final_logit_softcapping', 'attn_logit_softcapping']) {
      if (raw[k] !== undefined && raw[k] !== null) throw new ModelConfigError(`config.json "${k}" is not supported (Gemma 2 style soft-capping)`);
    }
    cfg.hiddenAct = 'gelu_tanh';
    cfg.normPlusOne = true;
    cfg.sandwichNorms = true;
    cfg.attnScale = 1 / Math.sqrt(configNum(raw, 'query_pre_attn_scalar'));
    cfg.embedScale = roundToBf16(Math.sqrt(cfg.hiddenSize));
    if (!Array.isArray(raw.layer_types)) {
      const pattern = configInt(raw, 'sliding_window_pattern');
      const w = configInt(raw, 'sliding_window');
      cfg.layerWindows = cfg.layerWindows.map((_, i) => ((i + 1) % pattern === 0 ? null : w));
    }
    const local = configNum(raw, 'rope_local_base_freq');
    cfg.layerRopeTheta = cfg.layerWindows.map((w) => (w === null ? cfg.ropeTheta : local));
    cfg.layerRopeScaled = cfg.layerWindows.map((w) => w === null);
  },
};
