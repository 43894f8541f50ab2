// Which dtype policy the engine uses, decided from the capability probe and the user's setting
// (`dtypePolicy`: auto | native | float32; env MLXBAR_DTYPE_POLICY; flag --dtype-policy). Plain
// data, no MLX: the engine process builds the policy from it (model/dtype-policy.ts), and the
// memory-fit estimate (library/fit.ts) sizes models with it.
//
// As mlx-lm behaves on a Mac: 4/8-bit weights stay packed (quantizedMatmul, quantized embedding
// lookup) and compute runs in the checkpoint's float dtype. Each half is taken only where the probe
// proved it on this build; everything else is float32.
import type { HalfDtype, MlxCapabilities } from './capabilities.ts';
import { HALF_DTYPES } from './capabilities.ts';

export type DtypePolicySetting = 'auto' | 'native' | 'float32';
export const DTYPE_POLICY_SETTINGS: readonly DtypePolicySetting[] = ['auto', 'native', 'float32'];

export interface PolicyChoice {
  /** float32 = today's CPU policy (everything expanded to float32); native = packed and/or half. */
  mode: 'float32' | 'native';
  /** Keep 4/8-bit weights packed (quantizedMatmul) instead of expanding them at load. */
  keepQuantized: boolean;
  /**
   * Half dtypes the compute may use (the checkpoint's own float dtype, if listed). Only dtypes whose
   * every op passed the probe can appear here: the guard that keeps aborting ops unreachable.
   */
  halfDtypes: HalfDtype[];
  setting: DtypePolicySetting;
  /** Why, one reason per line, for `mlx-bar check` and the logs. */
  reasons: string[];
}

export function isDtypePolicySetting(v: unknown): v is DtypePolicySetting {
  return typeof v === 'string' && (DTYPE_POLICY_SETTINGS as readonly string[]).includes(v);
}

/** The safe policy when nothing is known: the CPU build's float32. */
export const FLOAT32_CHOICE: PolicyChoice = {
  mode: 'float32',
  keepQuantized: false,
  halfDtypes: [],
  setting: 'float32',
  reasons: ['float32 compute, quantized and half-precision weights expanded at load'],
};

export function choosePolicy(setting: DtypePolicySetting, caps: MlxCapabilities | null): PolicyChoice {
  const reasons: string[] = [];
  const verified = caps ? HALF_DTYPES.filter((d) => caps.half[d].ok) : [];
  if (setting === 'float32') {
    return { ...FLOAT32_CHOICE, setting, reasons: ['dtypePolicy is "float32": every weight expanded to float32, float32 compute'] };
  }
  if (!caps) {
    reasons.push('no capability probe result for this MLX build: float32 (the only dtype known to be safe)');
    if (setting === 'native') reasons.push('"native" keeps 4/8-bit weights packed; compute stays float32');
    return { mode: setting === 'native' ? 'native' : 'float32', keepQuantized: setting === 'native', halfDtypes: [], setting, reasons };
  }
  for (const d of HALF_DTYPES) {
    reasons.push(caps.half[d].ok ? `${d} compute verified by the probe` : `no ${d} compute: ${caps.half[d].detail}`);
  }
  const q = caps.quantizedMatmul;
  if (setting === 'native') {
    reasons.push(`dtypePolicy is "native": 4/8-bit weights stay packed (quantizedMatmul${q.fast ? '' : `, slow on this build: ${q.detail}`})`);
    if (verified.length === 0) reasons.push('compute stays float32 (no half dtype passed the probe)');
    return { mode: 'native', keepQuantized: true, halfDtypes: verified, setting, reasons };
  }
  // auto: packed weights only where the packed kernel does not cost speed; half where proven.
  const keepQuantized = q.fast;
  reasons.push(keepQuantized ? `4/8-bit weights stay packed: ${q.detail}` : `4/8-bit weights expanded at load: quantizedMatmul is slow here (${q.detail})`);
  if (!caps.gpu.available) reasons.push(`no GPU: ${caps.gpu.detail}`);
  const mode = keepQuantized || verified.length > 0 ? 'native' : 'float32';
  reasons.push(
    mode === 'native'
      ? `native policy: ${keepQuantized ? 'packed weights' : 'expanded weights'}, compute in ${verified.length ? `the checkpoint's dtype when it is ${verified.join(' or ')}, else float32` : 'float32'}`
      : 'float32 policy: every weight expanded to float32, float32 compute',
  );
  return { mode, keepQuantized, halfDtypes: verified, setting, reasons };
}

/**
 * The compute dtype a model will run in under `choice`: the checkpoint's float dtype (bf16/f16,
 * the dtype of its scales for a quantized one) when the choice allows it, else float32.
 */
export function computeDtypeFor(choice: PolicyChoice, checkpointFloatDtype: string | null): 'float32' | HalfDtype {
  return checkpointFloatDtype && (choice.halfDtypes as string[]).includes(checkpointFloatDtype) ? (checkpointFloatDtype as HalfDtype) : 'float32';
}

/** Validates a PolicyChoice that crossed a process boundary (anything malformed → float32). */
export function parsePolicyChoice(v: unknown): PolicyChoice | null {
  const c = v as PolicyChoice;
  if (!c || typeof c !== 'object') return null;
  if (c.mode !== 'float32' && c.mode !== 'native') return null;
  if (typeof c.keepQuantized !== 'boolean' || !Array.isArray(c.halfDtypes) || !isDtypePolicySetting(c.setting)) return null;
  if (!c.halfDtypes.every((d) => (HALF_DTYPES as readonly string[]).includes(d as string))) return null;
  const reasons = Array.isArray(c.reasons) ? c.reasons.filter((r): r is string => typeof r === 'string').slice(0, 32) : [];
  return { mode: c.mode, keepQuantized: c.keepQuantized, halfDtypes: [...new Set(c.halfDtypes)], setting: c.setting, reasons };
}
