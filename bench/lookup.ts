// Lookup decoding: greedy decode tok/s with and without n-gram drafts on the same requests,
// interleaved, in this process (the generator the engine runs), checking the text is identical:
//  - copy-heavy: an "edit" prompt that contains the model's own earlier answer, then asks again (on a
//    copy-prone variant of the same shape, see below: random weights never copy);
//  - repeated: the same request twice, the second drafted from the cross-request n-gram cache;
//  - miss-heavy: fresh random prompts whose drafts (if any) do not match (the adaptive policy's
//    overhead; goal ≤ 3%).
// Besides tok/s (noisy on a shared box) it prints forward passes per generated token, which does
// not depend on load.   --lookup-shape qwen3_0_6b (default, the shape; tiny in --quick)  --lookup-tokens 64  --reps 3
import os from 'node:os';
import { DEFAULT_SAMPLING } from '../main/engine/types.ts';
import { ensureCheckpoint, promptIds, type ShapeName } from './engine.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function runLookup(opts: BenchOptions): Promise<BenchResult> {
  const shape = (typeof opts.args['lookup-shape'] === 'string' ? opts.args['lookup-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
  const n = Number(opts.args['lookup-tokens'] ?? (opts.quick ? 32 : 64));
  const reps = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 3)));
  const dir = await ensureCheckpoint(shape, 'f32', opts.log);
  // Random weights never copy text from their prompt, which is what real models do on an edit request
  // (the answer repeats most of the file). The copy-heavy workload therefore runs on the same shape
  // with the residual branches scaled down and an untied lm_head: each token has a fixed successor,
  // so the model re-writes an answer it gave before. Same weights' size and compute per token.
  const residualScale = 0.0002;
  const copyDir = await ensureCheckpoint(shape, 'f32', opts.log, { suffix: `copy${residualScale}`, spec: { residualScale, tied: false } });
  const { loadModel, generateAll, NgramCache } = await import('../main/engine/model/index.ts');
  const plainLm = await loadModel(dir);
  const copyLm = await loadModel(copyDir);
  type Lm = typeof plainLm;
  const limit = Math.min(plainLm.config.vocabSize, 30_000);
  const sampling = { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: n };
  let lm: Lm = plainLm;
  const gen = (ids: number[], cache: InstanceType<typeof NgramCache> | null, lookup: boolean) =>
    generateAll(lm, null, { promptIds: ids, sampling, eosTokenIds: [], cachePrompt: false, ...(lookup ? { lookup: { cache } } : {}) });
  for (const m of [plainLm, copyLm]) {
    lm = m;
    await gen(promptIds(8, 1, limit), null, false);
  }

  type Row = { workload: string; tokensPerPass: number; plainTokPerS: number; lookupTokPerS: number; speedup: number; identical: boolean; accepted: number; drafted: number; tokens: number; load1: number };
  const rows: Row[] = [];
  for (let r = 0; r < reps; r++) {
    const p = promptIds(64, 300 + r, limit);
    lm = copyLm;
    const answer = (await gen(p, null, false)).tokens;
    const workloads: [string, Lm, number[], () => InstanceType<typeof NgramCache> | null, boolean][] = [
      // "Here is the file … (its earlier version) … here it is again, redo it": drafts come from the prompt.
      ['copy_heavy', copyLm, [...p, ...answer, ...p], () => null, false],
      ['repeated', plainLm, promptIds(64, 400 + r, limit), () => new NgramCache(), true],
      ['miss_heavy', plainLm, promptIds(256, 500 + r, limit), () => new NgramCache(), false],
    ];
    for (const [name, model, ids, mkCache, primeFirst] of workloads) {
      lm = model;
      const cache = mkCache();
      if (primeFirst) await gen(ids, cache, true); // the earlier identical request
      const first = r % 2 === 0;
      const a = first ? await gen(ids, null, false) : null;
      const b = await gen(ids, cache, true);
      const plain = a ?? (await gen(ids, null, false));
      const tps = (s: typeof b.summary) => (s.completionTokens - 1) / ((s.decodeMs - (s.ttftMs - s.prefillMs)) / 1000);
      const row: Row = {
        workload: name,
        // Each accepted draft saves one forward pass (load-independent; the first token comes from prefill).
        tokensPerPass: round((b.summary.completionTokens - 1) / Math.max(1, b.summary.completionTokens - 1 - (b.summary.acceptedDrafts ?? 0)), 2),
        plainTokPerS: round(tps(plain.summary), 2),
        lookupTokPerS: round(tps(b.summary), 2),
        speedup: round(tps(b.summary) / tps(plain.summary), 2),
        identical: plain.tokens.join(',') === b.tokens.join(','),
        accepted: b.summary.acceptedDrafts ?? 0,
        drafted: b.summary.draftTokens ?? 0,
        tokens: b.summary.completionTokens,
        load1: round(os.loadavg()[0], 2),
      };
      rows.push(row);
      opts.log(`${name}: plain ${row.plainTokPerS} tok/s, lookup ${row.lookupTokPerS} tok/s (x${row.speedup}), ${row.tokensPerPass} tokens/pass, accepted ${row.accepted}/${row.drafted}, identical ${row.identical}, load ${row.load1}`);
    }
  }
  const ratios: Record<string, number | null> = {};
  for (const w of ['copy_heavy', 'repeated', 'miss_heavy']) {
    const xs = rows.filter((x) => x.workload === w).map((x) => x.speedup).sort((a, b) => a - b);
    ratios[`speedup_${w}`] = xs[Math.floor((xs.length - 1) / 2)] ?? null;
    const tp = rows.filter((x) => x.workload === w).map((x) => x.tokensPerPass).sort((a, b) => a - b);
    ratios[`tokens_per_pass_${w}`] = tp[Math.floor((tp.length - 1) / 2)] ?? null;
  }
  ratios.all_identical = rows.every((x) => x.identical) ? 1 : 0;
  return { result: { shape, decodeTokens: n, rows }, ratios };
}

export const lookupSection: BenchSection = {
  name: 'lookup',
  description: 'lookup decoding vs plain greedy decode (copy-heavy, repeated, miss-heavy), identical text checked',
  run: runLookup,
};
