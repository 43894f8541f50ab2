// Memory-fit estimate before loading a model, so a model that cannot fit is refused with a reason
// instead of aborting the engine (LM Studio's "guardrails"; Ollama's refusal, but as a 4xx).
// Sized per dtype policy (main/engine/probe/policy-choice.ts), as the engine will hold the model:
//  - float32 policy (the CPU build): 4 bytes per parameter whatever the checkpoint stores
//    (engine-findings: 4-bit and bf16 checkpoints are expanded at load), float32 KV cache;
//  - native policy: 4/8-bit weights stay packed (their stored uint32 bytes + scales/biases in the
//    compute dtype), other weights and the KV cache in the compute dtype (the checkpoint's half
//    dtype where the probe verified it, else float32).
import { readSystemMemory } from '../hardening/memory.ts';
import { computeDtypeFor, FLOAT32_CHOICE, type PolicyChoice } from '../engine/probe/policy-choice.ts';
import { formatBytes } from './format.ts';
import type { FolderShape } from '../engine/model-folder/index.ts';
import { kvBytesFor, kvSlidingOf, tokensForBytes } from '../engine/model/kv-size.ts';

export const COMPUTE_DTYPE = 'float32';
export const COMPUTE_BYTES = 4;
/** Engine process baseline (Node + MLX runtime + tokenizer + activations at prefill chunk 512). */
export const DEFAULT_OVERHEAD_BYTES = 384 * 1024 * 1024;
export const DEFAULT_CONTEXT_TOKENS = 4096;
/** With contextLength "auto", a model fits when at least this much context (or its whole limit) fits. */
export const MIN_AUTO_CONTEXT_TOKENS = 2048;

/** The shape the estimate needs, as the model-folder inspector reads it. */
export type ModelShape = FolderShape;

export interface FitEstimate {
  fits: boolean;
  needBytes: number;
  availableBytes: number;
  weightsBytes: number;
  kvBytes: number;
  overheadBytes: number;
  contextTokens: number;
  /** dtype the estimate assumed for compute and the KV cache. */
  computeDtype: string;
  /** Whether 4/8-bit weights were sized packed (native policy) or expanded. */
  packed: boolean;
  /** One sentence a user can read: why it fits or not. */
  reason: string;
}

export interface FitOptions {
  /**
   * Context the server is configured for (clamped to the model's maximum). Default 4096. 'auto' (the
   * contextLength setting's default): the model's maximum, capped by what fits next to the weights.
   */
  contextTokens?: number | 'auto';
  /** Memory the model may use; default: what the OS reports as available. */
  availableBytes?: number;
  overheadBytes?: number;
  /** The dtype policy the engine will use (default: float32, the CPU build's). */
  policy?: PolicyChoice;
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** Bytes the weights take in memory under `policy`. */
export function weightBytesFor(shape: ModelShape, policy: PolicyChoice): { bytes: number; computeDtype: string; packed: boolean } {
  const computeDtype = computeDtypeFor(policy, shape.floatDtype ?? null);
  const cb = DTYPE_BYTES[computeDtype];
  const params = shape.parameters ?? NaN;
  const q = shape.quantized;
  if (policy.mode === 'native' && policy.keepQuantized && q && q.parameters > 0) {
    // Packed weights as stored, scales/biases held in the compute dtype, the rest in the compute dtype.
    return { bytes: q.packedBytes + q.scaleElements * cb + (params - q.parameters) * cb, computeDtype, packed: true };
  }
  return { bytes: params * cb, computeDtype, packed: false };
}

/** Memory we may count on. Linux: MemAvailable (cgroup-aware); elsewhere 75 % of RAM. */
export function availableMemoryBytes(): number {
  const m = readSystemMemory();
  return m.availableBytes ?? Math.floor(m.totalBytes * 0.75);
}

export function estimateFit(shape: ModelShape, opts: FitOptions = {}): FitEstimate {
  const overheadBytes = opts.overheadBytes ?? DEFAULT_OVERHEAD_BYTES;
  const auto = opts.contextTokens === 'auto';
  const wanted = opts.contextTokens === 'auto' ? (shape.maxContext ?? DEFAULT_CONTEXT_TOKENS) : (opts.contextTokens ?? DEFAULT_CONTEXT_TOKENS);
  let contextTokens = shape.maxContext && shape.maxContext > 0 ? Math.min(wanted, shape.maxContext) : wanted;
  const availableBytes = opts.availableBytes ?? availableMemoryBytes();
  const { parameters, numLayers, numKvHeads, headDim } = shape;
  const known = [parameters, numLayers, numKvHeads, headDim].every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0);
  if (!known) {
    // Fail safe (LM Studio #1038 showed NaN estimates for unusual architectures): unknown → refuse.
    return {
      fits: false,
      needBytes: NaN,
      availableBytes,
      weightsBytes: NaN,
      kvBytes: NaN,
      overheadBytes,
      contextTokens,
      computeDtype: COMPUTE_DTYPE,
      packed: false,
      reason: 'The memory need could not be estimated (unreadable config or weights)',
    };
  }
  const w = weightBytesFor(shape, opts.policy ?? FLOAT32_CHOICE);
  const weightsBytes = w.bytes;
  const layerKv = 2 * numKvHeads! * headDim! * DTYPE_BYTES[w.computeDtype];
  const kvPerToken = numLayers! * layerKv;
  // Sliding-window layers (Gemma 3's local layers…) hold a ring bounded by the window.
  const sliding = shape.layerWindows ? kvSlidingOf(shape.layerWindows, layerKv) : null;
  let minimum = contextTokens;
  if (auto) {
    // "auto": as much of the model's context as fits next to the weights (and at least a useful minimum).
    const room = tokensForBytes(kvPerToken, sliding, availableBytes - weightsBytes - overheadBytes);
    minimum = Math.min(contextTokens, MIN_AUTO_CONTEXT_TOKENS);
    contextTokens = Math.max(minimum, Math.min(contextTokens, room));
  }
  const kvBytes = kvBytesFor(kvPerToken, sliding, contextTokens);
  const needBytes = weightsBytes + kvBytes + overheadBytes;
  const fits = needBytes <= availableBytes;
  const held = w.packed ? `packed ${shape.quantized ? 'quantized' : ''}, ${w.computeDtype} compute`.replace(/ +/g, ' ') : `in ${w.computeDtype}`;
  const detail =
    `needs about ${formatBytes(needBytes)} (weights ${formatBytes(weightsBytes)} ${held} + ` +
    `KV cache ${formatBytes(kvBytes)} for ${contextTokens} tokens + ${formatBytes(overheadBytes)} runtime)`;
  return {
    fits,
    needBytes,
    availableBytes,
    weightsBytes,
    kvBytes,
    overheadBytes,
    contextTokens,
    computeDtype: w.computeDtype,
    packed: w.packed,
    reason: fits
      ? `Fits: ${detail}; ${formatBytes(availableBytes)} available${auto && contextTokens < wanted ? ` (context capped from the model's ${wanted} tokens to what fits)` : ''}`
      : `Too large: ${detail}, but only ${formatBytes(availableBytes)} is available`,
  };
}
