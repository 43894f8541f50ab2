// Prefill: the engine process (exactly the server's path: createEngineClient with the server's engine
// options, its warm-up, chunking, KV reservation, GC/event-loop policy and IPC) against the same
// token generator run in this process, on the same prompts, interleaved (engine, in-process,
// in-process, engine, …) so load from other processes hits both alike. Per run: tok/s, the
// per-chunk wall times (from the `prefill` progress events / onPrefill, same instrumentation on
// both sides) and the CPU seconds the computing process used (engine: /proc/<pid>/stat; in-process:
// process.cpuUsage) — CPU ≪ wall × threads means the process was waiting for a core.
//   --prefill-shape qwen3_0_6b (default; tiny/small too)   --prefill-lens 512,2048   --reps 3
//   --blocked-ab N: N in-process pairs (default 2) of attention in query-row blocks vs whole, longest length
//   --pool-ab N: N in-process pairs (default 2) per length of KV buffers from the pool vs fresh ones
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { createEngineClient } from '../main/engine/process/engine-client.ts';
import { DEFAULT_SAMPLING, type EngineEvent, type GenerateRequest } from '../main/engine/types.ts';
import { ensureCheckpoint, promptIds, type ShapeName } from './engine.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
/** The server's engine option (main/core/serve.ts passes the prefix-cache budget; this is its default). */
const PREFIX_CACHE_BYTES = 1024 * 2 ** 20;
const load1 = (): number => round(os.loadavg()[0], 2);

interface ProcTimes {
  userS: number;
  sysS: number;
  minorFaults: number;
}

/** CPU seconds (user, system) and minor page faults of a process (Linux /proc/<pid>/stat), or NaNs. */
function procTimes(pid: number | undefined): ProcTimes {
  if (!pid || process.platform !== 'linux') return { userS: NaN, sysS: NaN, minorFaults: NaN };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "(comm) ": minflt is field 10, utime/stime fields 14/15 (1-based) → indexes 7, 11, 12.
    return { userS: Number(f[11]) / 100, sysS: Number(f[12]) / 100, minorFaults: Number(f[7]) };
  } catch {
    return { userS: NaN, sysS: NaN, minorFaults: NaN };
  }
}

function timesSince(pid: number | undefined, a: ProcTimes): { cpuS: number; sysS: number; minorFaults: number } {
  const b = procTimes(pid);
  return { cpuS: round(b.userS + b.sysS - a.userS - a.sysS, 1), sysS: round(b.sysS - a.sysS, 1), minorFaults: b.minorFaults - a.minorFaults };
}

interface PrefillRun {
  mode: 'engine' | 'inproc';
  tokens: number;
  ms: number;
  tokPerS: number;
  cpuS: number;
  sysS: number;
  minorFaults: number;
  chunkMs: number[];
  load1: number;
}

export interface Spread {
  runs: number[];
  median: number;
  best: number;
  spread: number;
}

export function summarize(values: number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { runs: values.map((v) => round(v, 1)), median: round(median, 1), best: round(s[s.length - 1], 1), spread: round(s[s.length - 1] / s[0], 2) };
}

/** Chunk durations from cumulative timestamps. */
const deltas = (stamps: number[], t0: number): number[] => stamps.map((t, i) => round(t - (i === 0 ? t0 : stamps[i - 1]), 0));

async function runPrefill(opts: BenchOptions): Promise<BenchResult> {
  const shape = (typeof opts.args['prefill-shape'] === 'string' ? opts.args['prefill-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
  const lens = typeof opts.args['prefill-lens'] === 'string' ? opts.args['prefill-lens'].split(',').map(Number) : opts.quick ? [256] : [512, 2048];
  const reps = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 3)));
  const dir = await ensureCheckpoint(shape, 'f32', opts.log);

  // In-process side: the same generator the engine runs (model/index.ts), same chunk size, same
  // memory policy, and a prefix cache with the server's budget (every prompt is new, but entries
  // keep their KV buffers until evicted, which decides when the KV pool has buffers to hand out).
  const { loadModel, generateAll, PrefixCache, DEFAULT_PREFILL_CHUNK } = await import('../main/engine/model/index.ts');
  const lm = await loadModel(dir);
  const prefixCache = new PrefixCache({ budgetBytes: PREFIX_CACHE_BYTES });
  const warm = { promptIds: promptIds(8, 1, 1000), sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 2 }, eosTokenIds: [], cachePrompt: false };
  await generateAll(lm, null, warm);

  /** One prefill of a new prompt in this process (the chunk timestamps from onPrefill); stored in `pc` like the engine does. */
  const inprocRun = async (ids: number[], pc: InstanceType<typeof PrefixCache> | null = prefixCache): Promise<PrefillRun> => {
    const stamps: number[] = [];
    const cpu0 = procTimes(process.pid);
    const t0 = performance.now();
    const { summary } = await generateAll(
      lm,
      pc,
      { promptIds: ids, sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 1 }, eosTokenIds: [], cachePrompt: pc !== null, prefillChunk: DEFAULT_PREFILL_CHUNK },
      { onPrefill: () => stamps.push(performance.now()) },
    );
    const times = timesSince(process.pid, cpu0);
    return { mode: 'inproc', tokens: ids.length, ms: round(summary.prefillMs, 0), tokPerS: round(ids.length / (summary.prefillMs / 1000), 1), ...times, chunkMs: deltas(stamps, t0), load1: load1() };
  };

  const logs: string[] = [];
  // The server's engine options (main/cli/serve.ts passes only the prefix-cache budget).
  const client = createEngineClient({ log: (l) => logs.push(l), engine: { prefixCacheBytes: PREFIX_CACHE_BYTES } });
  const runs: PrefillRun[] = [];
  let reqN = 0;
  try {
    const info = await client.start(dir);
    const limit = Math.min(info.vocabSize, 150_000);
    const engineRun = async (ids: number[]): Promise<PrefillRun> => {
      const req: GenerateRequest = {
        requestId: `prefill-${++reqN}`,
        promptIds: ids,
        sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 1 },
        cachePrompt: true,
      };
      const stamps: number[] = [];
      const cpu0 = procTimes(client.pid);
      const t0 = performance.now();
      let done: Extract<EngineEvent, { type: 'done' }> | null = null;
      for await (const e of client.generate(req)) {
        if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
        if (e.type === 'prefill') stamps.push(performance.now());
        if (e.type === 'done') done = e;
      }
      if (!done) throw new Error('no done event');
      const times = timesSince(client.pid, cpu0);
      return { mode: 'engine', tokens: ids.length, ms: round(done.prefillMs, 0), tokPerS: round(ids.length / (done.prefillMs / 1000), 1), ...times, chunkMs: deltas(stamps, t0), load1: load1() };
    };
    for (let r = 0; r < reps; r++) {
      for (const len of lens) {
        // Fresh ids per run (nothing cached), the same prompt for both sides of one pair.
        const ids = promptIds(len, 7000 + r * 31 + len, limit);
        const order = r % 2 === 0 ? [engineRun, inprocRun] : [inprocRun, engineRun];
        for (const f of order) {
          const run = await f(ids);
          runs.push(run);
          opts.log(`${run.mode} ${len} tokens: ${run.tokPerS} tok/s (${run.ms} ms, cpu ${run.cpuS} s, sys ${run.sysS} s, faults ${run.minorFaults}, chunks ${run.chunkMs.join('/')}, load ${run.load1})`);
        }
      }
    }
  } finally {
    await client.stop();
  }
  // Attention in query-row blocks (base.ts attentionLimits: no score array above 16 MiB, so none is
  // served by a fresh mmap) vs one block per step, in-process on the longest prompt, interleaved.
  // `--blocked-ab 0` skips it.
  const blockedAb: { blocked: PrefillRun[]; whole: PrefillRun[] } = { blocked: [], whole: [] };
  const abLen = Math.max(...lens);
  const abReps = Number(opts.args['blocked-ab'] ?? (opts.quick ? 1 : 2));
  if (abReps > 0) {
    const { attentionLimits } = await import('../main/engine/model/base.ts');
    const saved = attentionLimits.scoreBytes;
    const limit = Math.min(lm.config.vocabSize, 150_000);
    try {
      for (let r = 0; r < abReps; r++) {
        const ids = promptIds(abLen, 9100 + r, limit);
        for (const side of r % 2 === 0 ? (['whole', 'blocked'] as const) : (['blocked', 'whole'] as const)) {
          attentionLimits.scoreBytes = side === 'whole' ? Number.MAX_SAFE_INTEGER : saved;
          const run = await inprocRun(ids, null);
          blockedAb[side].push(run);
          opts.log(`attention ${side} ${abLen} tokens: ${run.tokPerS} tok/s (sys ${run.sysS} s, faults ${run.minorFaults}, chunks ${run.chunkMs.join('/')}, load ${run.load1})`);
        }
      }
    } finally {
      attentionLimits.scoreBytes = saved;
    }
  }
  // KV buffers from the pool (kv-pool.ts) vs fresh zero-filled ones, in-process without a prefix
  // cache (every finished sequence's buffers go straight back to the pool, as in steady state once
  // the server's prefix cache is full and each new entry evicts an old one), interleaved, per
  // length. The first run of a length fills the pool and is not counted. `--pool-ab 0` skips it.
  const poolAb: { pool: PrefillRun[]; fresh: PrefillRun[] } = { pool: [], fresh: [] };
  const poolReps = Number(opts.args['pool-ab'] ?? (opts.quick ? 1 : 2));
  if (poolReps > 0 && lm.kvPool) {
    const pool = lm.kvPool;
    const limit = Math.min(lm.config.vocabSize, 150_000);
    try {
      for (const len of lens) {
        await inprocRun(promptIds(len, 9200, limit), null); // fills the pool with this length's buffers
        for (let r = 0; r < poolReps; r++) {
          const ids = promptIds(len, 9300 + r, limit);
          for (const side of r % 2 === 0 ? (['fresh', 'pool'] as const) : (['pool', 'fresh'] as const)) {
            lm.kvPool = side === 'pool' ? pool : null;
            const run = await inprocRun(ids, null);
            poolAb[side].push(run);
            opts.log(`kv ${side} ${len} tokens: ${run.tokPerS} tok/s (sys ${run.sysS} s, faults ${run.minorFaults}, chunks ${run.chunkMs.join('/')}, load ${run.load1})`);
          }
        }
      }
    } finally {
      lm.kvPool = pool;
    }
  }
  const result: Record<string, unknown> = { shape, reps, chunk: DEFAULT_PREFILL_CHUNK, openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null, runs, attentionBlocksAb: blockedAb, kvPoolAb: poolAb, kvPool: lm.kvPool?.stats() ?? null };
  const ratios: Record<string, number | null> = {};
  for (const len of lens) {
    const e = summarize(runs.filter((x) => x.mode === 'engine' && x.tokens === len).map((x) => x.tokPerS));
    const i = summarize(runs.filter((x) => x.mode === 'inproc' && x.tokens === len).map((x) => x.tokPerS));
    result[`tokens_${len}`] = { engine: e, inproc: i };
    ratios[`engine_vs_inproc_${len}`] = round(e.median / i.median, 2);
    ratios[`engine_spread_${len}`] = e.spread;
    ratios[`inproc_spread_${len}`] = i.spread;
    ratios[`engine_tok_per_s_${len}`] = e.median;
  }
  for (const len of lens) {
    const side = (k: 'pool' | 'fresh') => poolAb[k].filter((x) => x.tokens === len);
    if (!side('pool').length || !side('fresh').length) continue;
    const med = (r: PrefillRun[], f: (x: PrefillRun) => number) => summarize(r.map(f)).median;
    ratios[`kv_pool_over_fresh_${len}`] = round(med(side('pool'), (x) => x.tokPerS) / med(side('fresh'), (x) => x.tokPerS), 2);
    ratios[`kv_pool_faults_over_fresh_${len}`] = round(med(side('pool'), (x) => x.minorFaults) / Math.max(1, med(side('fresh'), (x) => x.minorFaults)), 3);
  }
  if (blockedAb.blocked.length && blockedAb.whole.length) {
    const med = (r: PrefillRun[]) => summarize(r.map((x) => x.tokPerS)).median;
    ratios[`blocked_over_whole_attention_${abLen}`] = round(med(blockedAb.blocked) / med(blockedAb.whole), 2);
  }
  return { result, ratios };
}

export const prefillSection: BenchSection = {
  name: 'prefill',
  description: 'prefill through the engine process vs the same generator in-process (same prompts, interleaved), with spread and per-chunk times',
  run: runPrefill,
};
