// One line per benchmark section; add yours here (see bench/registry.ts for the contract).
import type { BenchSection } from './registry.ts';
import { engineSection } from './engine.ts';
import { serverSection } from './server.ts';
import { cacheHttpSection } from './cache-http.ts';
import { prefixRestartSection } from './prefix-restart.ts';
import { metricsSection } from './metrics.ts';
import { cachesSection } from './caches.ts';
import { embeddingsSection } from './embeddings.ts';
import { constrainSection } from './constrain.ts';
import { prefillSection } from './prefill.ts';
import { llamaSection } from './llama.ts';
import { nativeSection } from './native.ts';
import { moeSection } from './moe.ts';
import { remoteSection } from './remote.ts';
import { dialectsSection } from './dialects.ts';
import { healthUnderLoadSection } from './health-under-load.ts';
import { lookupSection } from './lookup.ts';
import { decodeStepSection } from './decode-step.ts';
import { slidingKvSection } from './sliding-kv.ts';
import { batchingSection } from './batching.ts';

export const SECTIONS: BenchSection[] = [engineSection, serverSection, cacheHttpSection, prefixRestartSection, cachesSection, metricsSection, embeddingsSection, constrainSection, prefillSection, llamaSection, nativeSection, moeSection, remoteSection, dialectsSection, healthUnderLoadSection, lookupSection, slidingKvSection, batchingSection, decodeStepSection];
