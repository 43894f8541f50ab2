// `decode` section (#16 item 3, #15 per-step overhead): where one float32 decode step's time goes,
// and what the layout choices give, in this process on the bench's Qwen3-0.6B-shaped checkpoint
// (`--decode-shape tiny|small|qwen3_0_6b`; tiny in --quick). All A/B pairs are interleaved in the
// same run, so load from other processes hits both sides alike. Records the load averages.
//  1. decode tok/s of the model as loaded with K-blocked matrices (the CPU plan of dtype-policy.ts,
//     or `--kblocks lm_head=256,down=256`) vs the same weights unblocked ("plain"); `--decode-variants
//     plain,blocked,separate` adds q/k/v + gate/up as separate matrices (row views of the fused ones).
//  2. one step split by stage (an eval barrier after each; the barriers add a little): projections,
//     attention, lm_head, elementwise — what dominates; plain and blocked.
//  3. matrix layouts: per role (lm_head, q/k/v, o, gate/up, down; all 28 layers' matrices in one
//     eval, as a step reads them) the product with 1 and 4 rows (decode, 4-stream batching) plain vs
//     K-blocks of 128/256/512 columns chained with addmm — ms, GB/s, and the 4-row/1-row cost.
//  4. the step's JS side: MLX calls issued per step and graph-build vs eval time.
import { core as mx } from '@frost-beta/mlx';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { forward } from '../main/engine/model/base.ts';
import { CPU_KBLOCK_PLAN, type KBlockPlan, type KBlockRole, type LinearWeight } from '../main/engine/model/dtype-policy.ts';
import { applyLinear, embedRows, kBlockWidth, toKBlocks } from '../main/engine/model/linear.ts';
import { generateAll, loadModel, type LoadedModel } from '../main/engine/model/generator.ts';
import { KVCache } from '../main/engine/model/kv-cache.ts';
import { afterDecodeStep, afterLargeStep } from '../main/engine/model/memory.ts';
import { gemvShimLoaded } from '../main/engine/process/blas.ts';
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

/** The same weights with the plan's matrices re-laid out as K-blocks (a copy of those matrices). */
function reblock(lm: LoadedModel, plan: KBlockPlan): LoadedModel {
  const b = (w: LinearWeight | null, role: KBlockRole): LinearWeight | null => {
    if (!w || w.kind !== 'dense' || !plan[role]) return w;
    const width = kBlockWidth(w.weight.shape[1], plan[role]);
    return width ? toKBlocks(w, width) : w;
  };
  const w = lm.model.weights;
  const lmHead = b(w.lmHead, 'lm_head')!;
  const embed = w.embed === w.lmHead ? lmHead : w.embed;
  const layers = w.layers.map((l) => ({ ...l, qkv: b(l.qkv, 'qkv'), o: b(l.o, 'o')!, gateUp: b(l.gateUp, 'gate_up'), down: b(l.down, 'down') }));
  return { ...lm, model: { ...lm.model, weights: { ...w, embed, lmHead, layers } } };
}

function parsePlan(v: unknown): KBlockPlan {
  if (typeof v !== 'string') return CPU_KBLOCK_PLAN;
  const plan: KBlockPlan = {};
  for (const kv of v.split(',').filter(Boolean)) {
    const [k, n] = kv.split('=');
    plan[k as KBlockRole] = Number(n);
  }
  return plan;
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

const dense = (w: LinearWeight): mx.array => {
  if (w.kind !== 'dense') throw new Error('expected a dense weight');
  return w.weight;
};

/** One decode step by stage, after a `ctx`-token prompt (float32 weights, fused or not, blocked or not). */
async function stageProfile(lm: LoadedModel, ctx: number, steps: number): Promise<{ stepMs: number; stages: Record<string, { ms: number; share: number }> }> {
  const m = lm.model;
  const c = lm.config;
  const W = m.weights;
  const lin = (x: mx.array, w: LinearWeight) => applyLinear(m.policy, x, w, 'bench');
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
    let x = embedRows(W.embed, mx.array([300 + s], mx.int32)).reshape(1, 1, c.hiddenSize);
    mark('embed', x);
    for (let i = 0; i < c.numLayers; i++) {
      const lw = W.layers[i];
      const h = mx.fast.rmsNorm(x, lw.inputNorm, c.rmsNormEps);
      mark('norms + residual', h);
      let q: mx.array, k: mx.array, v: mx.array;
      if (lw.qkv) {
        const y = lin(h, lw.qkv);
        mark('q/k/v projection', y);
        const cols = (a: number, b: number) => y.index(mx.Slice(), mx.Slice(), mx.Slice(a, b));
        [q, k, v] = [cols(0, q0), cols(q0, q0 + kv0), cols(q0 + kv0, q0 + 2 * kv0)];
      } else {
        [q, k, v] = [lin(h, lw.q), lin(h, lw.k), lin(h, lw.v)];
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
      const a = lin(o.transpose(0, 2, 1, 3).reshape(1, 1, -1), lw.o);
      mark('o projection', a);
      x = mx.add(x, a);
      const h2 = mx.fast.rmsNorm(x, lw.postNorm, c.rmsNormEps);
      mark('norms + residual', h2);
      let g: mx.array, u: mx.array;
      if (lw.gateUp) {
        const y = lin(h2, lw.gateUp);
        mark('gate/up projection', y);
        [g, u] = [y.index(mx.Slice(), mx.Slice(), mx.Slice(0, I)), y.index(mx.Slice(), mx.Slice(), mx.Slice(I, 2 * I))];
      } else {
        [g, u] = [lin(h2, lw.gate!), lin(h2, lw.up!)];
        mark('gate/up projection', g, u);
      }
      const act = mx.multiply(mx.multiply(g, mx.sigmoid(g)), u);
      mark('swiglu', act);
      const d = lin(act, lw.down!);
      mark('down projection', d);
      x = mx.add(x, d);
      mark('norms + residual', x);
    }
    const xn = mx.fast.rmsNorm(x, W.norm, c.rmsNormEps);
    mark('norms + residual', xn);
    const logits = lin(xn, W.lmHead);
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

type LayoutTimes = Record<string, { ms: number; gbPerS: number; maxAbsDiff: number }>;

/**
 * Per role and row count: the product over all of the model's matrices of that role (one eval, as a
 * step reads them — the set is far larger than the caches), plain vs K-blocks of each width
 * (median of `reps`, variants interleaved). Blocked copies are made per width and dropped after.
 */
async function matrixLayouts(lm: LoadedModel, rowsList: number[], widths: number[], reps: number, log: (l: string) => void): Promise<Record<string, Record<string, LayoutTimes>>> {
  const W = lm.model.weights;
  const policy = lm.model.policy;
  const roles: [KBlockRole, LinearWeight[]][] = [
    ['lm_head', [W.lmHead]],
    ['qkv', W.layers.map((l) => l.qkv ?? l.q)],
    ['o', W.layers.map((l) => l.o)],
    ['gate_up', W.layers.map((l) => l.gateUp ?? l.gate!)],
    ['down', W.layers.map((l) => l.down!)],
  ];
  const out: Record<string, Record<string, LayoutTimes>> = {};
  for (const [role, mats] of roles) {
    if (!mats.every((w) => w.kind === 'dense')) continue;
    const [N, K] = dense(mats[0]).shape;
    const bytes = mats.reduce((a, w) => a + dense(w).size * 4, 0);
    const variants: [string, LinearWeight[]][] = [['plain', mats]];
    for (const target of widths) {
      const w = kBlockWidth(K, target);
      if (w === target) variants.push([`kblocks ${w}`, mats.map((m) => toKBlocks(m, w))]);
    }
    for (const M of rowsList) {
      const x = mx.random.normal([1, M, K]);
      mx.eval(x);
      const run = (ws: LinearWeight[]) => ws.map((w) => applyLinear(policy, x, w, role));
      const ref = run(mats);
      mx.eval(...ref);
      const times: Record<string, number[]> = {};
      const diff: Record<string, number> = {};
      for (const [name, ws] of variants) {
        const y = run(ws);
        diff[name] = Math.max(...y.map((a, i) => mx.max(mx.abs(mx.subtract(a, ref[i]))).item() as number));
      }
      for (let r = 0; r <= reps; r++) {
        for (const [name, ws] of r % 2 ? [...variants].reverse() : variants) {
          const y = run(ws);
          const t = performance.now();
          mx.eval(...y);
          if (r > 0) (times[name] ??= []).push(performance.now() - t);
          await afterDecodeStep();
        }
      }
      const res: LayoutTimes = {};
      for (const [name] of variants) {
        const ms = [...times[name]].sort((a, b) => a - b)[times[name].length >> 1];
        res[name] = { ms: round(ms), gbPerS: round(bytes / ms / 1e6, 1), maxAbsDiff: diff[name] };
      }
      (out[role] ??= {})[`rows ${M}`] = res;
      log(`${role} [${N}x${K}]x${mats.length} rows ${M}: ${Object.entries(res).map(([k, v]) => `${k} ${v.ms} ms ${v.gbPerS} GB/s`).join(', ')} (load ${load()[0]})`);
    }
    await afterLargeStep();
  }
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
  description:
    'float32 decode step (in-process): K-blocked vs plain matrices (interleaved tok/s), step time by stage, matrix layouts per role with 1 and 4 rows (ms, GB/s), MLX calls and JS build time per step',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const shape = (typeof opts.args['decode-shape'] === 'string' ? opts.args['decode-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
    const rounds = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 3)));
    const steps = shape === 'qwen3_0_6b' ? 24 : 64;
    const plan = parsePlan(opts.args.kblocks);
    // sgemm = blocked with the one-row product shim switched off (MLXBAR_GEMV_SHIM=0, read per call).
    const shim = gemvShimLoaded();
    const names = (typeof opts.args['decode-variants'] === 'string' ? opts.args['decode-variants'] : shim ? 'plain,blocked,sgemm' : 'plain,blocked').split(',') as ('plain' | 'blocked' | 'separate' | 'sgemm')[];
    const dir = await ensureCheckpoint(shape, 'f32', opts.log);
    const loadStart = load();
    const plain = await loadModel(dir, { kBlocks: {} });
    await afterLargeStep();
    const blocked = reblock(plain, plan);
    await afterLargeStep();
    const models = { plain, blocked, separate: withoutFusion(plain), sgemm: blocked };
    await decodeTps(plain, 1, 4); // warm-up: BLAS threads, first-use paths, page-in
    await decodeTps(blocked, 1, 4);
    const tps: Record<string, number[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const k of r % 2 === 0 ? names : [...names].reverse()) {
        if (k === 'sgemm') process.env.MLXBAR_GEMV_SHIM = '0';
        try {
          (tps[k] ??= []).push(round(await decodeTps(models[k], 10 + r, steps)));
        } finally {
          if (k === 'sgemm') delete process.env.MLXBAR_GEMV_SHIM;
        }
        opts.log(`${k}: ${tps[k].at(-1)} tok/s (load ${load()[0]})`);
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const profiles: Record<string, Awaited<ReturnType<typeof stageProfile>>> = {};
    for (const k of ['plain', 'blocked'] as const) {
      profiles[k] = await stageProfile(models[k], 128, opts.quick ? 2 : 4);
      opts.log(`${k}: step ${profiles[k].stepMs} ms by stage: ${Object.entries(profiles[k].stages).map(([n, v]) => `${n} ${v.ms}`).join(', ')}`);
    }
    const layouts = opts.args['skip-layouts'] ? null : await matrixLayouts(plain, [1, 4], [128, 256, 512], opts.quick ? 3 : 7, opts.log);
    const overhead = jsOverhead(blocked, opts.quick ? 4 : 8);
    const result = {
      shape,
      decodeSteps: steps,
      promptTokens: 128,
      kBlockPlan: plan,
      decodeTokPerS: tps,
      stepByStage: profiles,
      matrixLayouts: layouts,
      jsPerStep: overhead,
      openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
      gemvShim: shim,
      loadavg: { start: loadStart, end: load() },
      notes: [
        'plain = every matrix whole (fused q/k/v and gate/up); blocked = the same weights with kBlockPlan\'s matrices as K-blocks (the engine\'s CPU default unless --kblocks); separate = q/k/v/gate/up as row views; sgemm = blocked with the one-row product shim off (MLXBAR_GEMV_SHIM=0)',
        'stage times have an eval barrier after each stage; "kv append (replica)" concatenates instead of the in-place write',
        'matrixLayouts: all matrices of a role in one eval; rows 4 = what a 4-stream batched decode step multiplies',
      ],
    };
    const ratio4 = (role: string, v: string) => {
      const r = layouts?.[role];
      return r?.['rows 4']?.[v] && r['rows 1']?.[v] ? round(r['rows 4'][v].ms / r['rows 1'][v].ms, 2) : null;
    };
    return {
      result,
      ratios: {
        blocked_over_plain_decode: tps.blocked && tps.plain ? round(median(tps.blocked) / median(tps.plain), 3) : null,
        ...(tps.separate ? { fused_over_separate_decode: round(median(tps.plain) / median(tps.separate), 3) } : {}),
        ...(tps.sgemm && tps.blocked ? { gemv_shim_over_sgemm_decode: round(median(tps.blocked) / median(tps.sgemm), 3) } : {}),
        lm_head_share_of_step_blocked: profiles.blocked.stages.lm_head?.share ?? null,
        lm_head_rows4_over_rows1_plain: ratio4('lm_head', 'plain'),
        lm_head_rows4_over_rows1_kblocks256: ratio4('lm_head', 'kblocks 256'),
        js_build_share_of_step: round(overhead.buildMs / (overhead.buildMs + overhead.evalMs), 3),
      },
    };
  },
};
