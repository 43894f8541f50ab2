// Llama 1/2/3.x (incl. Llama 3.1/3.2 `rope_scaling` type llama3, handled by the shared rope).
import type { FamilySpec } from './family.ts';

export const llama: FamilySpec = {
  name: 'llama',
  modelTypes: ['llama'],
  defaultRopeTheta: 10000,
  defaultTied: false,
  // HF LlamaAttention: attention_bias puts a bias on q, k, v and o.
  qkvBias: (raw) => raw.attention_bias === true,
  oBias: (raw) => raw.attention_bias === true,
  qkNorm: false,
};
