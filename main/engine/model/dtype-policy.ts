// The ONE place that decides which dtype the engine computes in and what happens to half-precision
// and quantized checkpoint weights.
//
// Why a policy: on this CPU build of @frost-beta/mlx 0.0.7 a float16/bfloat16 matmul or attention
// aborts the whole process (uncatchable), and the native 4-bit quantizedMatmul runs at ~2 GFLOP/s
// (20-80x slower prefill). So the CPU policy computes in float32 and expands bf16/f16 and 4/8-bit
// weights at load. Builds whose capability probe (main/engine/probe) verified more get the native
// policy (policyFromChoice): packed 4/8-bit weights and, where proven, half-precision compute.
import { core as mx } from '@frost-beta/mlx';
import { computeDtypeFor, type PolicyChoice } from '../probe/policy-choice.ts';

/** A linear layer's weight as the forward pass uses it. */
export type LinearWeight = PreparedLinear | KBlockLinear;

/** What a policy makes of a checkpoint module: a dense matrix or packed 4/8-bit weights. */
export type PreparedLinear =
  | { kind: 'dense'; weight: mx.array; bias: mx.array | null }
  | {
      kind: 'quantized';
      weight: mx.array;
      scales: mx.array;
      biases: mx.array;
      groupSize: number;
      bits: number;
      bias: mx.array | null;
    };

/**
 * A dense [outDim, inDim] float32 matrix stored as inDim/width contiguous column blocks `blocks`
 * [inDim/width, outDim, width] (block j = columns [j·width, (j+1)·width)); the product is a chain
 * of addmm over the blocks (linear.ts). On the CPU build OpenBLAS's small-M sgemm reads a matrix
 * split this way faster than the whole one (see CPU_KBLOCK_PLAN).
 */
export interface KBlockLinear {
  kind: 'kblocks';
  blocks: mx.array;
  /** blocks[j]ᵀ ([width, outDim] views, made and evaluated once at load: no per-step slicing). */
  parts: mx.array[];
  width: number;
  bias: mx.array | null;
}

/** Matrices that may be stored as K-blocks, by role. */
export type KBlockRole = 'lm_head' | 'qkv' | 'o' | 'gate_up' | 'down';

/**
 * Block width (columns per block) per role; absent = kept as one dense matrix. Only dense float32
 * weights on the CPU device are ever blocked: packed weights keep quantizedMatmul, and Metal's
 * matrix-vector kernels read a whole matrix at full speed already.
 */
export type KBlockPlan = Partial<Record<KBlockRole, number>>;

/**
 * The CPU float32 plan, chosen from the bench (`npm run -s bench -- --only decode`: matrix layouts
 * per role; Qwen3-0.6B shape, OpenBLAS 0.3.21, load ~2): 128-column blocks read the lm_head at
 * 16.6 GB/s vs 12.1 whole (1 row; 4 rows 9.2 vs 7.3) and the fused gate/up matrices 50 vs 59 ms
 * per step for all 28 layers (4 rows 61 vs 74); q/k/v neutral; o and down (K = 2,048 / 3,072,
 * 1,024 outputs) ran ~2x slower blocked at 128/256 and ~15% slower at 512 — kept whole.
 * gate/up is kept whole too: the blocks serve every step, and a 256-row prefill chunk runs an
 * addmm chain of K = 128 products, which OpenBLAS does far worse than one K = 1,024 product —
 * in-process A/B (lead, load ~1.9, 3 interleaved reps, 512-token prompt): prefill 59–102 tok/s
 * with gate/up blocked vs 97–111 lm_head only, decode 6.72–6.85 vs 6.46–6.69 tok/s (+3%). Prefill
 * is most of an agent's wait. The lm_head runs on one row per sequence in prefill too (last only).
 */
export const CPU_KBLOCK_PLAN: KBlockPlan = { lm_head: 128 };

/** Whether MLX computes on the CPU here (the CPU build, or a Mac with the CPU as default device). */
export function computesOnCpu(): boolean {
  try {
    return mx.defaultDevice().type === mx.cpu;
  } catch {
    return false;
  }
}

/** Raw tensors of one checkpoint module (`<name>.weight` and optional quantization parts). */
export interface RawModuleTensors {
  weight: mx.array;
  scales?: mx.array;
  biases?: mx.array;
  bias?: mx.array;
}

export interface DtypePolicy {
  readonly name: string;
  readonly computeDtype: mx.Dtype;
  /** Converts a linear (or embedding-as-linear) module for compute. */
  prepareLinear(t: RawModuleTensors, quant: { groupSize: number; bits: number } | null): PreparedLinear;
  /** Converts a plain float tensor (norm weights, biases) for compute. */
  prepareDense(a: mx.array): mx.array;
  /** Guards compute: throws (instead of letting the native code abort the process). */
  assertCompute(x: mx.array, what: string): void;
  /** Which dense float32 matrices are stored as K-blocks (weights.ts); absent or {} = none. */
  readonly kBlocks?: KBlockPlan;
}

export function dtypeName(d: mx.Dtype): string {
  return String(d);
}

export class DtypePolicyError extends Error {
  override name = 'DtypePolicyError';
}

/** Dequantizes an mlx-community quantized tensor to float32 (scales/biases upcast first: faster). */
export function dequantizeToF32(t: RawModuleTensors, quant: { groupSize: number; bits: number }): mx.array {
  if (!t.scales || !t.biases) throw new DtypePolicyError('quantized tensor without scales/biases');
  if (t.weight.dtype !== mx.uint32) throw new DtypePolicyError('quantized weight must be uint32-packed');
  return mx.dequantize(t.weight, t.scales.astype(mx.float32), t.biases.astype(mx.float32), quant.groupSize, quant.bits);
}

/**
 * CPU policy: float32 everywhere. `keepQuantized` is the low-RAM mode (packed weights through
 * quantizedMatmul in float32: ~2x slower decode, very slow prefill); off by default.
 */
export function cpuFloat32Policy(opts: { keepQuantized?: boolean } = {}): DtypePolicy {
  const f32 = mx.float32;
  return {
    name: opts.keepQuantized ? 'cpu-f32-qmm' : 'cpu-f32',
    computeDtype: f32,
    kBlocks: computesOnCpu() ? CPU_KBLOCK_PLAN : {},
    prepareLinear(t, quant) {
      const bias = t.bias ? t.bias.astype(f32) : null;
      if (t.scales) {
        if (!quant) throw new DtypePolicyError('checkpoint has quantized tensors but config.json has no "quantization"');
        if (opts.keepQuantized) {
          return {
            kind: 'quantized',
            weight: t.weight,
            scales: t.scales.astype(f32),
            biases: (t.biases ?? mx.zerosLike(t.scales)).astype(f32),
            groupSize: quant.groupSize,
            bits: quant.bits,
            bias,
          };
        }
        return { kind: 'dense', weight: dequantizeToF32(t, quant), bias };
      }
      return { kind: 'dense', weight: t.weight.dtype === f32 ? t.weight : t.weight.astype(f32), bias };
    },
    prepareDense(a) {
      return a.dtype === f32 ? a : a.astype(f32);
    },
    assertCompute(x, what) {
      if (x.dtype !== f32) {
        throw new DtypePolicyError(`${what}: refusing ${dtypeName(x.dtype)} compute on the CPU build (only float32 is safe)`);
      }
    },
  };
}

/**
 * The policy a PolicyChoice (probe + setting, see main/engine/probe/policy-choice.ts) asks for, for a
 * checkpoint whose float dtype is `checkpointFloatDtype` (bf16/f16/f32; a quantized checkpoint's
 * scales dtype). As mlx-lm: packed 4/8-bit weights stay packed (scales/biases in the compute dtype),
 * float weights are held in the compute dtype, which is the checkpoint's half dtype only when the
 * probe verified it on this build — `assertCompute` refuses every other non-float32 dtype, so an
 * op the build cannot run is never reached.
 */
export function policyFromChoice(choice: PolicyChoice, checkpointFloatDtype: string | null): DtypePolicy {
  const want = computeDtypeFor(choice, checkpointFloatDtype);
  if (want === 'float32') {
    const p = cpuFloat32Policy({ keepQuantized: choice.keepQuantized });
    return { ...p, name: choice.keepQuantized ? 'native-f32-packed' : 'cpu-f32' };
  }
  const dt = want === 'float16' ? mx.float16 : mx.bfloat16;
  const f32 = mx.float32;
  const allowed = new Set<mx.Dtype>([f32, dt]);
  const to = (a: mx.array) => (a.dtype === dt ? a : a.astype(dt));
  return {
    name: `native-${want}${choice.keepQuantized ? '-packed' : ''}`,
    computeDtype: dt,
    prepareLinear(t, quant) {
      const bias = t.bias ? to(t.bias) : null;
      if (t.scales) {
        if (!quant) throw new DtypePolicyError('checkpoint has quantized tensors but config.json has no "quantization"');
        if (choice.keepQuantized) {
          return {
            kind: 'quantized',
            weight: t.weight,
            scales: to(t.scales),
            biases: to(t.biases ?? mx.zerosLike(t.scales)),
            groupSize: quant.groupSize,
            bits: quant.bits,
            bias,
          };
        }
        return { kind: 'dense', weight: to(dequantizeToF32(t, quant)), bias };
      }
      return { kind: 'dense', weight: to(t.weight), bias };
    },
    prepareDense: to,
    assertCompute(x, what) {
      if (!allowed.has(x.dtype)) {
        throw new DtypePolicyError(`${what}: refusing ${dtypeName(x.dtype)} compute (this build verified only float32 and ${want})`);
      }
    },
  };
}

/** The policy when the caller gives no choice: float32 (MLXBAR_KEEP_QUANTIZED=1 keeps packed weights). */
export function defaultDtypePolicy(): DtypePolicy {
  return cpuFloat32Policy({ keepQuantized: process.env.MLXBAR_KEEP_QUANTIZED === '1' });
}
