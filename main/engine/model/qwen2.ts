// Qwen2 / Qwen2.5: the Llama block with q/k/v biases (always present; config.json has no flag).
import type { FamilySpec } from './family.ts';
import { qwenLayerWindows } from './sliding-window.ts';

export const qwen2: FamilySpec = {
  name: 'qwen2',
  modelTypes: ['qwen2'],
  defaultRopeTheta: 1000000,
  defaultTied: false,
  qkvBias: () => true,
  oBias: () => false,
  qkNorm: false,
  configure: qwenLayerWindows,
};
