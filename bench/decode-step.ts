// `decode` section (#16 item 3, #15 per-step overhead): where one float32 decode step's time goes,
// and what the layout choices give, in this process on the bench's Qwen3-0.6B-shaped checkpoint
// (`--decode-shape tiny|small|qwen3_0_6b`; tiny in --quick). All A/B pairs are interleaved in the
// same run, so load from other processes hits both sides alike. Records the load averages.
//  1. fused q/k/v + gate/up matrices (the load default) vs separate ones: decode tok/s. Same weights
//     in memory: the separate side is the same model with the fused matrices hidden (its q/k/v/gate/up
//     are row views of them).
//  2. one step split by stage (an eval barrier after each; the barriers add a little): projections,
//     attention, lm_head, elementwise — what dominates.
//  3. the lm_head matrix-vector product (vocab × hidden) in the layouts MLX's CPU matmul can take:
//     x·Wᵀ (what we do), W·xᵀ, x·(Wᵀ stored contiguous), and K split into 256-column blocks chained
//     with addmm — GB/s of each.
//  4. the step's JS side: MLX calls issued per step and graph-build vs eval time; mx.compile on
//     the step's element-wise part (SwiGLU) — on this CPU build `compile` JIT-builds C++ with the
//     system g++ at run time, so it is measured, not used.
import { core as mx } from '@frost-beta/mlx';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { forward } from '../main/engine/model/base.ts';
import { generateAll, loadModel, type LoadedModel } from '../main/engine/model/generator.ts';
import { KVCache } from '../main/engine/model/kv-cache.ts';
import { afterDecodeStep, afterLargeStep } from '../main/engine/model/memory.ts';
import { DEFAULT_SAMPLING } from '../main/engine/types.ts';
import { ensureCheckpoint, promptIds, type ShapeName } from './engine.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
const load = () => os.loadavg().map((x) => round(x, 2));

/** The same loaded model with the fused matrices hidden: q/k/v/gate/up (row views) are used. */
function withoutFusion(lm: LoadedModel): LoadedModel {
  const w = lm.model.weights;
  return { ...lm, model: { ...lm.model, weights: { ...w, layers: w.layers.map((l) => ({ ...l, qkv: null, gateUp: null })) } } };
}

async function decodeTps(lm: LoadedModel, seed: number, steps: number): Promise<number> {
  const limit = Math.min(lm.config.vocabSize, 150_000);
  const r = await generateAll(lm, null, {
    promptIds: promptIds(128, seed, limit),
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: steps + 1 },
    eosTokenIds: [],
    cachePrompt: false,
  });
  await afterLargeStep();
  return (r.tokens.length - 1) / (r.summary.decodeMs / 1000);
}

type Dense = { weight: mx.array };
const dense = (w: unknown): mx.array => (w as Dense).weight;

/** One decode step by stage, after a `ctx`-token prompt (dense float32 weights, fused or not). */
async function stageProfile(lm: LoadedModel, ctx: number, steps: number): Promise<{ stepMs: number; stages: Record<string, { ms: number; share: number }> }> {
  const m = lm.model;
  const c = lm.config;
  const W = m.weights;
  const cache = new KVCache(c.numLayers);
  const limit = Math.min(c.vocabSize, 150_000);
  const ids = promptIds(ctx, 3, limit);
  for (let p = 0; p < ctx; p += 256) {
    mx.eval(forward(m, ids.slice(p, p + 256), cache), ...cache.arrays());
    await afterLargeStep();
  }
  const T: Record<string, number> = {};
  let t = 0;
  const mark = (name: string, ...a: mx.array[]) => {
    mx.eval(...a);
    const n = performance.now();
    T[name] = (T[name] ?? 0) + n - t;
    t = n;
  };
  const plain: number[] = [];
  const q0 = c.numHeads * c.headDim;
  const kv0 = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  for (let s = 0; s < steps; s++) {
    // The real step (no barriers), then the same step by stage on the same cache position.
    const t0 = performance.now();
    mx.eval(mx.argmax(forward(m, [200 + s], cache), -1), ...cache.arrays());
    plain.push(performance.now() - t0);
    cache.trim(1);
    await afterDecodeStep();
    // The stage replica keeps the KV write out (the cache API is the generator's business).
    const keysOf = (i: number) => cache.layer(i);
    t = performance.now();
    let x = mx.take(dense(W.embed), mx.array([300 + s], mx.int32), 0).reshape(1, 1, c.hiddenSize);
    mark('embed', x);
    for (let i = 0; i < c.numLayers; i++) {
      const lw = W.layers[i];
      const h = mx.fast.rmsNorm(x, lw.inputNorm, c.rmsNormEps);
      mark('norms + residual', h);
      let q: mx.array, k: mx.array, v: mx.array;
      if (lw.qkv) {
        const y = mx.matmul(h, dense(lw.qkv).T);
        mark('q/k/v projection', y);
        const cols = (a: number, b: number) => y.index(mx.Slice(), mx.Slice(), mx.Slice(a, b));
        [q, k, v] = [cols(0, q0), cols(q0, q0 + kv0), cols(q0 + kv0, q0 + 2 * kv0)];
      } else {
        [q, k, v] = [mx.matmul(h, dense(lw.q).T), mx.matmul(h, dense(lw.k).T), mx.matmul(h, dense(lw.v).T)];
        mark('q/k/v projection', q, k, v);
      }
      q = q.reshape(1, 1, c.numHeads, c.headDim);
      k = k.reshape(1, 1, c.numKvHeads, c.headDim);
      if (lw.qNorm) q = mx.fast.rmsNorm(q, lw.qNorm, c.rmsNormEps);
      if (lw.kNorm) k = mx.fast.rmsNorm(k, lw.kNorm, c.rmsNormEps);
      q = mx.fast.rope(q.transpose(0, 2, 1, 3), c.headDim, false, m.ropes[i].base, 1, cache.offset);
      k = mx.fast.rope(k.transpose(0, 2, 1, 3), c.headDim, false, m.ropes[i].base, 1, cache.offset);
      mark('q/k norm + rope', q, k, v);
      const { keys, values } = keysOf(i);
      const K = mx.concatenate([keys!, k], 2);
      const V = mx.concatenate([values!, v.reshape(1, 1, c.numKvHeads, c.headDim).transpose(0, 2, 1, 3)], 2);
      mark('kv append (replica)', K, V);
      const o = mx.fast.scaledDotProductAttention(q, K, V, c.attnScale);
      mark('attention (sdpa)', o);
      const a = mx.matmul(o.transpose(0, 2, 1, 3).reshape(1, 1, -1), dense(lw.o).T);
      mark('o projection', a);
      x = mx.add(x, a);
      const h2 = mx.fast.rmsNorm(x, lw.postNorm, c.rmsNormEps);
      mark('norms + residual', h2);
      let g: mx.array, u: mx.array;
      if (lw.gateUp) {
        const y = mx.matmul(h2, dense(lw.gateUp).T);
        mark('gate/up projection', y);
        [g, u] = [y.index(mx.Slice(), mx.Slice(), mx.Slice(0, I)), y.index(mx.Slice(), mx.Slice(), mx.Slice(I, 2 * I))];
      } else {
        [g, u] = [mx.matmul(h2, dense(lw.gate).T), mx.matmul(h2, dense(lw.up).T)];
        mark('gate/up projection', g, u);
      }
      const act = mx.multiply(mx.multiply(g, mx.sigmoid(g)), u);
      mark('swiglu', act);
      const d = mx.matmul(act, dense(lw.down).T);
      mark('down projection', d);
      x = mx.add(x, d);
      mark('norms + residual', x);
    }
    const xn = mx.fast.rmsNorm(x, W.norm, c.rmsNormEps);
    mark('norms + residual', xn);
    const logits = mx.matmul(xn, dense(W.lmHead).T);
    mark('lm_head', logits);
    mark('argmax', mx.argmax(logits.reshape(1, -1), -1));
    await afterDecodeStep();
  }
  const total = Object.values(T).reduce((a, b) => a + b, 0);
  const stages: Record<string, { ms: number; share: number }> = {};
  for (const [k, v] of Object.entries(T)) stages[k] = { ms: round(v / steps), share: round(v / total, 3) };
  plain.sort((a, b) => a - b);
  return { stepMs: round(plain[Math.floor(plain.length / 2)]), stages };
}

/** GB/s of one vocab×hidden matrix-vector product in each layout (best of `reps`, interleaved). */
async function lmHeadLayouts(W: mx.array, reps: number): Promise<Record<string, { gbPerS: number; maxAbsDiff: number }>> {
  const [N, K] = W.shape;
  const contig = (a: mx.array) => {
    const c = mx.add(a, mx.array(0, mx.float32));
    mx.eval(c);
    return c;
  };
  const x = contig(mx.random.normal([1, K]));
  const xt = contig(x.T);
  const WT = contig(W.T);
  const kb = 256;
  const blocks = K % kb === 0 && K > kb ? Array.from({ length: K / kb }, (_, j) => contig(W.index(mx.Slice(), mx.Slice(j * kb, (j + 1) * kb)))) : [];
  const variants: Record<string, () => mx.array> = {
    'x·Wᵀ (ours)': () => mx.matmul(x, W.T),
    'W·xᵀ': () => mx.matmul(W, xt),
    'x·(Wᵀ contiguous)': () => mx.matmul(x, WT),
  };
  if (blocks.length) {
    variants[`K blocks of ${kb}, addmm chain`] = () => {
      let y = mx.matmul(x.index(mx.Slice(), mx.Slice(0, kb)), blocks[0].T);
      for (let j = 1; j < blocks.length; j++) y = mx.addmm(y, x.index(mx.Slice(), mx.Slice(j * kb, (j + 1) * kb)), blocks[j].T);
      return y;
    };
  }
  const ref = mx.matmul(x, W.T);
  const best: Record<string, number> = {};
  const diff: Record<string, number> = {};
  for (const [name, f] of Object.entries(variants)) diff[name] = mx.max(mx.abs(mx.subtract(mx.flatten(f()), mx.flatten(ref)))).item() as number;
  for (let r = 0; r < reps + 1; r++) {
    for (const [name, f] of Object.entries(variants)) {
      const t = performance.now();
      mx.eval(f());
      const dt = performance.now() - t;
      if (r > 0) best[name] = Math.min(best[name] ?? Infinity, dt);
      await afterDecodeStep();
    }
  }
  const out: Record<string, { gbPerS: number; maxAbsDiff: number }> = {};
  for (const name of Object.keys(variants)) out[name] = { gbPerS: round((N * K * 4) / best[name] / 1e6, 1), maxAbsDiff: diff[name] };
  return out;
}

/** MLX calls per decode step and graph-build vs eval time (calls counted by wrapping the binding). */
function jsOverhead(lm: LoadedModel, steps: number): { callsPerStep: number; buildMs: number; evalMs: number } {
  let n = 0;
  const undo: (() => void)[] = [];
  const wrapAll = (obj: Record<string, unknown>) => {
    for (const key of Object.getOwnPropertyNames(obj)) {
      const d = Object.getOwnPropertyDescriptor(obj, key);
      if (!d || !('value' in d) || !d.writable || typeof d.value !== 'function' || key === 'constructor' || /^[A-Z]/.test(key)) continue;
      const f = d.value as (...a: unknown[]) => unknown;
      obj[key] = function (this: unknown, ...a: unknown[]) {
        n++;
        return f.apply(this, a);
      };
      undo.push(() => (obj[key] = f));
    }
  };
  const cache = new KVCache(lm.config.numLayers);
  mx.eval(forward(lm.model, promptIds(64, 5, 1000), cache), ...cache.arrays());
  let build = 0;
  let ev = 0;
  let calls = 0;
  for (let i = 0; i < steps; i++) {
    wrapAll(mx as unknown as Record<string, unknown>);
    wrapAll(mx.fast as unknown as Record<string, unknown>);
    wrapAll(Object.getPrototypeOf(mx.array([1])) as Record<string, unknown>);
    n = 0;
    const t0 = performance.now();
    const tok = mx.argmax(forward(lm.model, [100 + i], cache), -1);
    const t1 = performance.now();
    calls += n;
    undo.splice(0).forEach((u) => u());
    mx.eval(tok, ...cache.arrays());
    if (i > 0) {
      build += t1 - t0;
      ev += performance.now() - t1;
    }
  }
  return { callsPerStep: Math.round(calls / steps), buildMs: round(build / (steps - 1)), evalMs: round(ev / (steps - 1)) };
}

export const decodeStepSection: BenchSection = {
  name: 'decode',
  description: 'float32 decode step (in-process): fused vs separate q/k/v + gate/up (interleaved), step time by stage, lm_head matrix-vector layouts (GB/s), MLX calls and JS build time per step',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const shape = (typeof opts.args['decode-shape'] === 'string' ? opts.args['decode-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
    const rounds = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 3)));
    const steps = shape === 'qwen3_0_6b' ? 24 : 64;
    const dir = await ensureCheckpoint(shape, 'f32', opts.log);
    const loadStart = load();
    const fused = await loadModel(dir);
    await afterLargeStep();
    const separate = withoutFusion(fused);
    await decodeTps(fused, 1, 4); // warm-up: BLAS threads, first-use paths, page-in
    const tps: Record<'fused' | 'separate', number[]> = { fused: [], separate: [] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['fused', 'separate'] as const) : (['separate', 'fused'] as const);
      for (const k of order) {
        tps[k].push(round(await decodeTps(k === 'fused' ? fused : separate, 10 + r, steps)));
        opts.log(`${k}: ${tps[k].at(-1)} tok/s (load ${load()[0]})`);
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const profile = await stageProfile(fused, 128, opts.quick ? 2 : 4);
    opts.log(`step ${profile.stepMs} ms by stage: ${Object.entries(profile.stages).map(([k, v]) => `${k} ${v.ms}`).join(', ')}`);
    const lmHead = await lmHeadLayouts(dense(fused.model.weights.lmHead), opts.quick ? 3 : 7);
    opts.log(`lm_head layouts (GB/s): ${Object.entries(lmHead).map(([k, v]) => `${k} ${v.gbPerS}`).join(', ')}`);
    const overhead = jsOverhead(fused, opts.quick ? 4 : 8);
    const result = {
      shape,
      decodeSteps: steps,
      promptTokens: 128,
      decodeTokPerS: { fused: tps.fused, separate: tps.separate },
      stepByStage: profile,
      lmHeadGbPerS: lmHead,
      jsPerStep: overhead,
      openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
      loadavg: { start: loadStart, end: load() },
      notes: [
        'fused = the load default (weights.ts fuseRows); separate = the same weights used as q/k/v/gate/up row views',
        'stage times have an eval barrier after each stage; "kv append (replica)" concatenates instead of the in-place write',
      ],
    };
    return {
      result,
      ratios: {
        fused_over_separate_decode: round(median(tps.fused) / median(tps.separate), 3),
        lm_head_share_of_step: profile.stages.lm_head?.share ?? null,
        js_build_share_of_step: round(overhead.buildMs / (overhead.buildMs + overhead.evalMs), 3),
      },
    };
  },
};
