// Phi-3 / Phi-3.5 / Phi-4-mini (`phi3`): the Llama block with fused projections — `qkv_proj`
// (rows q, k, v) and `gate_up_proj` (rows gate, up), split into views at load — partial rotary
// dims (`partial_rotary_factor`, Phi-4-mini 0.75), longrope ("su") scaling for the 128k variants
// (rope.ts), and `sliding_window` when set below the context (Phi-3-mini-4k: 2047).
import { configNum } from './config-fields.ts';
import type { FamilySpec } from './family.ts';
import { everyLayerWindow } from './sliding-window.ts';

export const phi3: FamilySpec = {
  name: 'phi3',
  modelTypes: ['phi3'],
  defaultRopeTheta: 10000,
  defaultTied: false,
  qkvBias: () => false,
  oBias: () => false,
  qkNorm: false,
  configure(raw, cfg) {
    cfg.fusedQkv = true;
    cfg.fusedGateUp = true;
    const f = configNum(raw, 'partial_rotary_factor', 1);
    cfg.ropeDims = Math.floor((cfg.headDim * f) / 2) * 2;
    everyLayerWindow(raw, cfg);
  },
};
