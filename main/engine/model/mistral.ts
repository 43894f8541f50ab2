// Mistral: the Llama block (GQA, SwiGLU, rope) with sliding-window attention on every layer when
// config.json sets `sliding_window` (Mistral-7B-v0.1: 4096; later versions: null).
import type { FamilySpec } from './family.ts';
import { everyLayerWindow } from './sliding-window.ts';

export const mistral: FamilySpec = {
  name: 'mistral',
  modelTypes: ['mistral'],
  defaultRopeTheta: 10000,
  defaultTied: false,
  qkvBias: () => false,
  oBias: () => false,
  qkNorm: false,
  configure: everyLayerWindow,
};
