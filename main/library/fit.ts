// Memory-fit estimate before loading a model, so a model that cannot fit is refused with a reason
// instead of aborting the engine (LM Studio's "guardrails"; Ollama's refusal, but as a 4xx).
// The CPU build computes in float32, so weights take 4 bytes per parameter in RAM whatever the
// checkpoint stores (engine-findings: 4-bit and bf16 checkpoints are expanded at load).
import { readSystemMemory } from '../hardening/memory.ts';
import { formatBytes } from './format.ts';

export const COMPUTE_DTYPE = 'float32';
export const COMPUTE_BYTES = 4;
/** Engine process baseline (Node + MLX runtime + tokenizer + activations at prefill chunk 512). */
export const DEFAULT_OVERHEAD_BYTES = 384 * 1024 * 1024;
export const DEFAULT_CONTEXT_TOKENS = 4096;

export interface ModelShape {
  parameters: number | null;
  numLayers: number | null;
  numKvHeads: number | null;
  headDim: number | null;
  /** The model's own maximum context (max_position_embeddings). */
  maxContext: number | null;
}

export interface FitEstimate {
  fits: boolean;
  needBytes: number;
  availableBytes: number;
  weightsBytes: number;
  kvBytes: number;
  overheadBytes: number;
  contextTokens: number;
  /** One sentence a user can read: why it fits or not. */
  reason: string;
}

export interface FitOptions {
  /** Context the server is configured for (clamped to the model's maximum). Default 4096. */
  contextTokens?: number;
  /** Memory the model may use; default: what the OS reports as available. */
  availableBytes?: number;
  overheadBytes?: number;
}

/** Memory we may count on. Linux: MemAvailable (cgroup-aware); elsewhere 75 % of RAM. */
export function availableMemoryBytes(): number {
  const m = readSystemMemory();
  return m.availableBytes ?? Math.floor(m.totalBytes * 0.75);
}

export function estimateFit(shape: ModelShape, opts: FitOptions = {}): FitEstimate {
  const overheadBytes = opts.overheadBytes ?? DEFAULT_OVERHEAD_BYTES;
  const wanted = opts.contextTokens ?? DEFAULT_CONTEXT_TOKENS;
  const contextTokens = shape.maxContext && shape.maxContext > 0 ? Math.min(wanted, shape.maxContext) : wanted;
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
      reason: 'The memory need could not be estimated (unreadable config or weights)',
    };
  }
  const weightsBytes = parameters! * COMPUTE_BYTES;
  const kvBytes = 2 * numLayers! * numKvHeads! * headDim! * COMPUTE_BYTES * contextTokens;
  const needBytes = weightsBytes + kvBytes + overheadBytes;
  const fits = needBytes <= availableBytes;
  const detail =
    `needs about ${formatBytes(needBytes)} (weights ${formatBytes(weightsBytes)} in ${COMPUTE_DTYPE} + ` +
    `KV cache ${formatBytes(kvBytes)} for ${contextTokens} tokens + ${formatBytes(overheadBytes)} runtime)`;
  return {
    fits,
    needBytes,
    availableBytes,
    weightsBytes,
    kvBytes,
    overheadBytes,
    contextTokens,
    reason: fits
      ? `Fits: ${detail}; ${formatBytes(availableBytes)} available`
      : `Too large: ${detail}, but only ${formatBytes(availableBytes)} is available`,
  };
}
