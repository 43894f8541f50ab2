// Mistral: the Llama block (GQA, SwiGLU, rope). Sliding-window attention only matters beyond
// `sliding_window` tokens; like mlx-lm we attend to the full (bounded) context.
import type { FamilySpec } from './family.ts';

export const mistral: FamilySpec = {
  name: 'mistral',
  modelTypes: ['mistral'],
  defaultRopeTheta: 10000,
  defaultTied: false,
  qkvBias: () => false,
  oBias: () => false,
  qkNorm: false,
};
