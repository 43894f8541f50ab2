// Public surface of the MLX model layer (loaded only inside the engine process).
export { loadModel, generateTokens, generateAll, ModelError, DEFAULT_PREFILL_CHUNK } from './generator.ts';
export type { LoadedModel, LoadOptions, TokenRequest, PrefillProgress, GenerationSummary, GenerateHooks } from './generator.ts';
export { PrefixCache, exportEntry, importEntry } from './prefix-cache.ts';
export type { PrefixCacheEntry, PrefixLookup, PrefixCacheOptions, ExportedPrefixEntry, ImportablePrefixEntry } from './prefix-cache.ts';
export { KVCache, kvCacheFor, KV_STEP } from './kv-cache.ts';
export { KVBufferPool, DEFAULT_KV_POOL_BYTES, type KVPoolStats } from './kv-pool.ts';
export type { KVLayout, KVCacheOptions } from './kv-cache.ts';
export { Sampler, processLogits, applyPenalties } from './sampling.ts';
export { parseModelConfig, ModelConfigError } from './config.ts';
export type { ModelConfig } from './config.ts';
export { supportedModelTypes, UnsupportedArchitectureError } from './registry.ts';
export { cpuFloat32Policy, defaultDtypePolicy } from './dtype-policy.ts';
export type { DtypePolicy } from './dtype-policy.ts';
export { forward } from './base.ts';
export { getGc, afterDecodeStep, afterLargeStep } from './memory.ts';
export { NgramCache, NgramIndex, DraftPolicy } from './lookup.ts';
