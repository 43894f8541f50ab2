// Qwen3 (dense): per-head RMSNorm on q and k before rope, explicit head_dim, optional attention_bias.
import type { FamilySpec } from './family.ts';
import { qwenLayerWindows } from './sliding-window.ts';

export const qwen3: FamilySpec = {
  name: 'qwen3',
  modelTypes: ['qwen3'],
  defaultRopeTheta: 1000000,
  defaultTied: true,
  qkvBias: (raw) => raw.attention_bias === true,
  oBias: (raw) => raw.attention_bias === true,
  qkNorm: true,
  configure: qwenLayerWindows,
};
