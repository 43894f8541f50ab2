// What one MLX build can do, as measured by the capability probe (probe-child.ts, run in short
// child processes because a half-precision op that the build does not support ABORTS the process).
// Plain data, no MLX import: the parent, the settings/fit code and tests use it without loading
// the native binding. Recorded Metal results live in test fixtures.

export type HalfDtype = 'float16' | 'bfloat16';
export const HALF_DTYPES: readonly HalfDtype[] = ['float16', 'bfloat16'];

/** One half-precision dtype: every op the native compute path needs, run and checked against float32. */
export interface HalfDtypeProbe {
  /** True only when every op below ran, matched float32 within tolerance, and was not slow. */
  ok: boolean;
  /** Ops that ran and matched (matmul, attention, quantizedMatmul, rmsNorm, rope). */
  passed: string[];
  /** The op that failed or aborted the probe process, if any. */
  failedOp: string | null;
  /** Why not ok (e.g. "matmul aborted the probe process (exit code 134)"), or a short success note. */
  detail: string;
}

export interface MlxCapabilities {
  /** Schema of this record (bump when the probe changes so old caches are re-probed). */
  schema: number;
  /** sha256 (hex, 16 chars) of the native module + package version: the cache key. */
  binaryKey: string;
  mlxVersion: string;
  platform: string;
  arch: string;
  /** ISO time of the probe. */
  probedAt: string;
  /** Wall time of the whole probe (all child processes). */
  probeMs: number;
  gpu: { available: boolean; detail: string };
  half: Record<HalfDtype, HalfDtypeProbe>;
  quantizedMatmul: {
    /** Packed 4-bit matmul at least as fast as the float32 one (decode- and prefill-shaped). */
    fast: boolean;
    /** ms per product, x[M,4096] · W[4096,4096]ᵀ; null when the op failed. */
    q4DecodeMs: number | null;
    f32DecodeMs: number | null;
    q4PrefillMs: number | null;
    f32PrefillMs: number | null;
    detail: string;
  };
  memoryCounters: { works: boolean; detail: string };
  /** metal.setMemoryLimit / setCacheLimit do something on this build (they return 0 as no-ops on CPU). */
  memoryLimits: { works: boolean; detail: string };
  compile: { available: boolean; works: boolean; detail: string };
}

export const CAPABILITIES_SCHEMA = 1;

/** One readable line per capability, for `mlx-bar check` and the logs. */
export function describeCapabilities(c: MlxCapabilities): string[] {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const q = c.quantizedMatmul;
  const ms = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(2)} ms`);
  return [
    `MLX ${c.mlxVersion} (${c.platform}-${c.arch}), probed ${c.probedAt} in ${Math.round(c.probeMs)} ms`,
    `GPU (Metal): ${yes(c.gpu.available)} — ${c.gpu.detail}`,
    ...HALF_DTYPES.map((d) => `${d} compute: ${yes(c.half[d].ok)} — ${c.half[d].detail}`),
    `4-bit quantizedMatmul fast: ${yes(q.fast)} — decode ${ms(q.q4DecodeMs)} vs float32 ${ms(q.f32DecodeMs)}, ` +
      `prefill ${ms(q.q4PrefillMs)} vs float32 ${ms(q.f32PrefillMs)}; ${q.detail}`,
    `memory counters: ${yes(c.memoryCounters.works)} — ${c.memoryCounters.detail}`,
    `memory/cache limits: ${yes(c.memoryLimits.works)} — ${c.memoryLimits.detail}`,
    `compile: ${yes(c.compile.works)} — ${c.compile.detail}`,
  ];
}

/** Structural check of a cached/recorded record (anything else is re-probed). */
export function isCapabilities(v: unknown): v is MlxCapabilities {
  const c = v as MlxCapabilities;
  return (
    !!c &&
    typeof c === 'object' &&
    c.schema === CAPABILITIES_SCHEMA &&
    typeof c.binaryKey === 'string' &&
    typeof c.gpu?.available === 'boolean' &&
    HALF_DTYPES.every((d) => typeof c.half?.[d]?.ok === 'boolean' && Array.isArray(c.half[d].passed)) &&
    typeof c.quantizedMatmul?.fast === 'boolean' &&
    typeof c.memoryCounters?.works === 'boolean' &&
    typeof c.memoryLimits?.works === 'boolean' &&
    typeof c.compile?.works === 'boolean'
  );
}
