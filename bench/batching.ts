// Continuous batching: the same 4 greedy requests run one at a time and all at once on ONE real
// engine process (maxBatch 4), interleaved round by round, on the Qwen3-0.6B shape (tiny in --quick).
// Reports aggregate tok/s (all completion tokens / wall time from the first send to the last done,
// prefill included), the decode-phase aggregate (once every stream has its first token), per-stream TTFT p95 (engine-side, queueing included) and the decode-only rate,
// checks that the concurrent text equals the sequential text, and the ratio 4-streams / 1-stream.
// Lookup decoding and the prefix cache are off (fresh random prompts; the ratio is batching's alone).
// Then `join`: streams-1 requests decode while a newcomer with a long prompt (--join-prompt, default
// 512 tokens) joins; its prompt is prefilled in small chunks between their tokens. Reported: the
// running streams' inter-token gaps before it joined and while it prefilled (max and p50), and the
// max gap over the time of one prefill step (the newcomer's prefill time / its busy chunks): <= ~1
// means no running stream waited longer than one chunk.
//   --batching-shape qwen3_0_6b|small|tiny  --batching-tokens 32  --batching-prompt 64  --reps 2  --streams 4  --join-prompt 512
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { DEFAULT_SAMPLING, type EngineEvent, type GenerateRequest } from '../main/engine/types.ts';
import type { SupervisedEngineClient } from '../main/engine/process/engine-client.ts';
import { summarize } from '../main/common/percentiles.ts';
import { DEFAULT_BUSY_PREFILL_CHUNK } from '../main/engine/model/batch.ts';
import { ensureCheckpoint, promptIds, type ShapeName } from './engine.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
type Done = Extract<EngineEvent, { type: 'done' }>;

let counter = 0;
interface Run {
  done: Done;
  text: string;
  /** performance.now() of the first text and of the end; tokens that arrived after `after`. */
  firstAt: number;
  endAt: number;
  deltas: { at: number; tokens: number }[];
}

async function run(client: SupervisedEngineClient, ids: number[], maxTokens: number): Promise<Run> {
  const req: GenerateRequest = {
    requestId: `batch-${++counter}`,
    promptIds: ids,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens },
    cachePrompt: false,
  };
  let text = '';
  const deltas: { at: number; tokens: number }[] = [];
  for await (const e of client.generate(req)) {
    if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
    if (e.type === 'delta') {
      text += e.text;
      deltas.push({ at: performance.now(), tokens: e.tokens });
    }
    if (e.type === 'done') return { done: e, text, firstAt: deltas[0]?.at ?? performance.now(), endAt: performance.now(), deltas };
  }
  throw new Error('stream ended without done');
}

interface Round {
  mode: 'sequential' | 'concurrent';
  wallMs: number;
  tokens: number;
  aggregateTokPerS: number;
  ttftMs: number[];
  /**
   * Decode phase only (prefill work is the same in both modes and dilutes the ratio): tokens that
   * arrived once every stream had its first token, over that time. Sequential: each request's
   * tokens after its first, over the sum of those spans.
   */
  decodeTokens: number;
  decodeMs: number;
  load1: number;
}

interface JoinResult {
  runningStreams: number;
  newcomerPromptTokens: number;
  /** Newcomer: send → first token (its whole chunked prefill while the others decode). */
  newcomerTtftMs: number;
  /** Prefill steps the newcomer needed at the busy chunk size. */
  busyChunks: number;
  gapBeforeP50Ms: number;
  gapBeforeMaxMs: number;
  gapDuringP50Ms: number;
  gapDuringMaxMs: number;
  /** gapDuringMax / (newcomer prefill time / busyChunks): ≤ ~1 = no stream waited more than one chunk. */
  maxGapVsChunkStep: number;
  load1: number;
}

/** Running streams' inter-token gaps while a newcomer with a long prompt prefills. */
async function joinGaps(client: SupervisedEngineClient, limit: number, running: number, newcomerPrompt: number, log: (s: string) => void): Promise<JoinResult> {
  const streams: { deltas: { at: number; tokens: number }[] }[] = [];
  const firsts: Promise<void>[] = [];
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < running; i++) {
    const s = { deltas: [] as { at: number; tokens: number }[] };
    streams.push(s);
    let first!: () => void;
    firsts.push(new Promise<void>((r) => (first = r)));
    const req: GenerateRequest = {
      requestId: `join-${++counter}`,
      promptIds: promptIds(32, 7000 + i, limit),
      // Aborted once the newcomer has its first token; long enough never to end before.
      sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 2048 },
      cachePrompt: false,
    };
    const ac = new AbortController();
    runs.push(
      (async () => {
        for await (const e of client.generate(req, ac.signal)) {
          if (e.type === 'delta') {
            s.deltas.push({ at: performance.now(), tokens: e.tokens });
            first();
          }
          if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
        }
      })(),
    );
    (s as { abort?: () => void }).abort = () => ac.abort();
  }
  await Promise.all(firsts);
  // A few decode steps of the running streams alone (the "before" gaps).
  await new Promise<void>((r) => {
    const check = () => (streams.every((s) => s.deltas.length >= 8) ? r() : setTimeout(check, 5));
    check();
  });
  const tJoin = performance.now();
  const newcomer = await run(client, promptIds(newcomerPrompt, 8000, limit), 2);
  const tFirst = newcomer.firstAt;
  for (const s of streams) (s as { abort?: () => void }).abort?.();
  await Promise.allSettled(runs);
  const gaps = (from: number, to: number) =>
    streams.flatMap((s) => {
      const xs = s.deltas.filter((d) => d.at >= from && d.at <= to).map((d) => d.at);
      return xs.slice(1).map((x, i) => x - xs[i]);
    });
  // "During": gaps that end inside the newcomer's prefill (a gap spanning its start counts too).
  const during = streams.flatMap((s) => {
    const xs = s.deltas.map((d) => d.at);
    const out: number[] = [];
    for (let i = 1; i < xs.length; i++) if (xs[i] > tJoin && xs[i - 1] < tFirst) out.push(xs[i] - xs[i - 1]);
    return out;
  });
  const before = gaps(0, tJoin);
  const busyChunks = Math.ceil(newcomerPrompt / DEFAULT_BUSY_PREFILL_CHUNK);
  const prefillMs = tFirst - tJoin;
  const st = (xs: number[]) => summarize(xs.length ? xs : [0]);
  const res: JoinResult = {
    runningStreams: running,
    newcomerPromptTokens: newcomerPrompt,
    newcomerTtftMs: round(prefillMs, 0),
    busyChunks,
    gapBeforeP50Ms: round(st(before).p50, 1),
    gapBeforeMaxMs: round(Math.max(0, ...before), 1),
    gapDuringP50Ms: round(st(during).p50, 1),
    gapDuringMaxMs: round(Math.max(0, ...during), 1),
    maxGapVsChunkStep: round(Math.max(0, ...during) / (prefillMs / busyChunks), 2),
    load1: round(os.loadavg()[0], 2),
  };
  log(`join: ${JSON.stringify(res)}`);
  return res;
}

async function runBatching(opts: BenchOptions): Promise<BenchResult> {
  const shape = (typeof opts.args['batching-shape'] === 'string' ? opts.args['batching-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
  const n = Number(opts.args['batching-tokens'] ?? (opts.quick ? 24 : 32));
  const promptLen = Number(opts.args['batching-prompt'] ?? 64);
  const streams = Math.max(2, Number(opts.args.streams ?? 4));
  const reps = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 2)));
  const dir = await ensureCheckpoint(shape, 'f32', opts.log);
  const { createEngineClient } = await import('../main/engine/index.ts');
  const logs: string[] = [];
  const client = createEngineClient({ log: (l) => logs.push(l), engine: { maxBatch: streams, lookupDecoding: false, prefixCacheBytes: 0 } });
  try {
    const info = await client.start(dir);
    const limit = Math.min(info.vocabSize, 150_000);
    await run(client, promptIds(16, 99, limit), 4); // warm-up
    const rounds: Round[] = [];
    let identical = true;
    for (let r = 0; r < reps; r++) {
      // Prompts of different lengths (promptLen ± 50%), fresh per round.
      const prompts = Array.from({ length: streams }, (_, i) => promptIds(Math.round(promptLen * (0.5 + i / streams)), 1000 * r + i + 1, limit));
      const order: ('sequential' | 'concurrent')[] = r % 2 === 0 ? ['sequential', 'concurrent'] : ['concurrent', 'sequential'];
      const texts: Record<string, string[]> = {};
      for (const mode of order) {
        const t0 = performance.now();
        let results: Run[];
        if (mode === 'sequential') {
          results = [];
          for (const p of prompts) results.push(await run(client, p, n));
        } else {
          results = await Promise.all(prompts.map((p) => run(client, p, n)));
        }
        const wallMs = performance.now() - t0;
        const tokens = results.reduce((s, x) => s + x.done.completionTokens, 0);
        // Sequential TTFT as a user would see it with maxConcurrent 1: the wait for the earlier
        // requests counts (the server would queue them); concurrent: the engine's own TTFT.
        let waited = 0;
        const ttftMs = results.map((x) => {
          const t = mode === 'sequential' ? waited + x.done.ttftMs : x.done.ttftMs;
          waited += x.done.prefillMs + x.done.decodeMs;
          return round(t, 1);
        });
        texts[mode] = results.map((x) => x.text);
        let decodeTokens = 0;
        let decodeMs = 0;
        if (mode === 'sequential') {
          for (const x of results) {
            decodeTokens += x.deltas.filter((d) => d.at > x.firstAt).reduce((a, d) => a + d.tokens, 0);
            decodeMs += x.endAt - x.firstAt;
          }
        } else {
          const t0 = Math.max(...results.map((x) => x.firstAt));
          for (const x of results) decodeTokens += x.deltas.filter((d) => d.at > t0).reduce((a, d) => a + d.tokens, 0);
          decodeMs = Math.max(...results.map((x) => x.endAt)) - t0;
        }
        const row: Round = {
          mode,
          wallMs: round(wallMs, 0),
          tokens,
          aggregateTokPerS: round(tokens / (wallMs / 1000), 2),
          ttftMs,
          decodeTokens,
          decodeMs: round(decodeMs, 0),
          load1: round(os.loadavg()[0], 2),
        };
        rounds.push(row);
        opts.log(`${shape} round ${r} ${mode}: ${tokens} tokens in ${row.wallMs} ms = ${row.aggregateTokPerS} tok/s (decode phase ${round(decodeTokens / (decodeMs / 1000), 2)} tok/s), TTFT ${ttftMs.join('/')} ms, load ${row.load1}`);
      }
      if (texts.sequential.join('\u0000') !== texts.concurrent.join('\u0000')) identical = false;
    }
    const joinPrompt = Number(opts.args['join-prompt'] ?? (opts.quick ? 256 : 512));
    const join = await joinGaps(client, limit, streams - 1, joinPrompt, opts.log);
    const stats = await client.stats();
    const agg = (mode: Round['mode']) => {
      const xs = rounds.filter((x) => x.mode === mode);
      const tok = xs.reduce((s, x) => s + x.tokens, 0);
      const ms = xs.reduce((s, x) => s + x.wallMs, 0);
      const ttft = summarize(xs.flatMap((x) => x.ttftMs));
      const dTok = xs.reduce((s, x) => s + x.decodeTokens, 0);
      const dMs = xs.reduce((s, x) => s + x.decodeMs, 0);
      return { tokPerS: round(tok / (ms / 1000), 2), decodePhaseTokPerS: round(dTok / (dMs / 1000), 2), ttftP50Ms: round(ttft.p50, 0), ttftP95Ms: round(ttft.p95, 0) };
    };
    const one = agg('sequential');
    const many = agg('concurrent');
    return {
      result: { shape, streams, decodeTokens: n, promptTokens: promptLen, sequential: one, concurrent: many, identical, join, batch: stats.batch ?? null, rounds, uptime: os.loadavg().map((x) => round(x, 2)) },
      ratios: {
        aggregate_speedup: round(many.tokPerS / one.tokPerS, 2),
        decode_phase_speedup: round(many.decodePhaseTokPerS / one.decodePhaseTokPerS, 2),
        ttft_p95_ratio: round(many.ttftP95Ms / Math.max(1, one.ttftP95Ms), 2),
        identical: identical ? 1 : 0,
        join_max_gap_vs_chunk_step: join.maxGapVsChunkStep,
        join_max_gap_vs_decode_gap: round(join.gapDuringMaxMs / Math.max(1e-3, join.gapBeforeP50Ms), 2),
      },
    };
  } finally {
    await client.stop();
  }
}

export const batchingSection: BenchSection = {
  name: 'batching',
  description: 'continuous batching: 1 vs 4 concurrent streams on one engine (aggregate tok/s, per-stream TTFT p95), identical text checked',
  run: runBatching,
};
