// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B): the Qwen3 block (q/k norm) with a sparse MoE
// MLP on the layers `decoder_sparse_step` / `mlp_only_layers` select (moe.ts); the other layers
// keep a dense MLP of intermediate_size.
import { configInt, ModelConfigError } from './config-fields.ts';
import type { FamilySpec } from './family.ts';
import { qwenLayerWindows } from './sliding-window.ts';

export const qwen3Moe: FamilySpec = {
  name: 'qwen3_moe',
  modelTypes: ['qwen3_moe'],
  defaultRopeTheta: 1000000,
  defaultTied: false,
  qkvBias: (raw) => raw.attention_bias === true,
  oBias: (raw) => raw.attention_bias === true,
  qkNorm: true,
  configure(raw, cfg) {
    qwenLayerWindows(raw, cfg);
    const numExperts = configInt(raw, 'num_experts');
    const topK = configInt(raw, 'num_experts_per_tok');
    if (topK > numExperts) throw new ModelConfigError('num_experts_per_tok must not exceed num_experts');
    const step = configInt(raw, 'decoder_sparse_step', 1);
    const only = Array.isArray(raw.mlp_only_layers) ? raw.mlp_only_layers.filter((x): x is number => Number.isInteger(x)) : [];
    cfg.moe = {
      numExperts,
      topK,
      // HF Qwen3MoeConfig defaults norm_topk_prob to false; the released checkpoints set true.
      normTopkProb: raw.norm_topk_prob === true,
      moeIntermediateSize: configInt(raw, 'moe_intermediate_size'),
      sparseLayers: Array.from({ length: cfg.numLayers }, (_, i) => !only.includes(i) && (i + 1) % step === 0),
    };
  },
};
