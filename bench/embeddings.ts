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
import { performance } from 'node:perf_hooks';
import { createEngineClient } from '../main/engine/process/engine-client.ts';
import { DEFAULT_SAMPLING } from '../main/engine/types.ts';
import { ensureCheckpoint, promptIds, SHAPES, type ShapeName } from './engine.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

/** f32 checkpoints of the engine section's shapes (the 0.6B one = Qwen3-Embedding-0.6B shapes). */
const ensureF32 = (shape: ShapeName, log: (s: string) => void) => ensureCheckpoint(shape, 'f32', log);
const ids = promptIds;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
const mib = (b: number) => Math.round(b / 2 ** 20);

async function benchShape(shape: ShapeName, opts: BenchOptions): Promise<Record<string, unknown>> {
  const dir = await ensureF32(shape, opts.log);
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
