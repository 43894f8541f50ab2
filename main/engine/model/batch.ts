// Continuous batching: the forward steps of every running generation are run together.
//
// Each generation (generator.ts) stays what it is — its own prompt, KV cache, sampler, constraint,
// lookup drafts, stop rules and prefix-cache store — but instead of calling the model itself it
// hands each step (a prefill chunk, a decode token, or a lookup verification) to a StepRunner. The
// direct runner (one generation alone) runs it at once, exactly as before. The batch scheduler
// collects the pending steps of all open generations and runs them as ONE forward pass
// (base.ts forwardSegments): the projections, MLP and lm_head read each weight once for every
// sequence — a decode step is memory-bound on this CPU, so several sequences cost little more than
// one — while attention stays per sequence over its own KV cache (exact).
//
// Joining and leaving happen between steps (open/close). A newcomer's prefill is cut into small
// chunks (`busyPrefillChunk`) while other sequences decode, one chunk per step, so running streams
// keep producing tokens; alone, it prefills in full chunks. The scheduler fires a step when every
// open sequence has submitted (they do so within one event-loop turn of the previous step), or after
// a short grace when one is late (e.g. building a constraint's token table), so nobody waits on a
// sequence that is busy elsewhere.
import { core as mx } from '@frost-beta/mlx';
import { forward, forwardSegmentsReleasing, type DecoderModel } from './base.ts';
import type { KVCache } from './kv-cache.ts';
import { afterDecodeStep, afterLargeStep, afterLayer } from './memory.ts';

/** How a generation runs its forward steps (see generator.ts). */
export interface StepRunner {
  /**
   * Prefills the next part of `remaining` (prompt tokens not yet in `cache`): returns the logits of
   * the last token it ran ([1, vocab], evaluated) and how many tokens that was.
   */
  prefill(cache: KVCache, remaining: number[], chunk: number): Promise<{ logits: mx.array; used: number }>;
  /** Runs `tokens` on top of `cache`: logits [1, vocab] (lastOnly) or [tokens, vocab], evaluated. */
  step(cache: KVCache, tokens: number[], lastOnly: boolean): Promise<mx.array>;
  /** Memory policy after a prefill chunk of `n` tokens (`last`: the prompt's final chunk). */
  afterPrefill(n: number, last: boolean): Promise<void>;
  /** Memory policy after a decode step. */
  afterStep(): Promise<void>;
  /** The generation ended: it submits nothing more. */
  close(): void;
}

/** One generation alone: each step runs at once (the unbatched path, unchanged). */
export function directRunner(model: DecoderModel): StepRunner {
  return {
    async prefill(cache, remaining, chunk) {
      const part = remaining.slice(0, Math.max(1, chunk));
      const { logits } = await forwardSegmentsReleasing(model, [{ tokens: part, cache, lastOnly: true }], afterLayer);
      mx.eval(logits, ...cache.arrays());
      return { logits, used: part.length };
    },
    async step(cache, tokens, lastOnly) {
      const logits = forward(model, tokens, cache, lastOnly);
      mx.eval(logits, ...cache.arrays());
      return logits;
    },
    async afterPrefill(n, last) {
      // Full GC + a turn frees the chunk's temporaries and lets an abort arrive. After a short
      // final chunk it is skipped: it would only add to time-to-first-token. A short final chunk's
      // KV views must still not outlive it (the first decode step would copy every layer's
      // buffers): a minor GC + a turn frees them (they are young).
      if (!last || n >= 256) await afterLargeStep();
      else if (n > 1) await afterDecodeStep();
    },
    afterStep: afterDecodeStep,
    close() {},
  };
}

/**
 * Prompt tokens of a newcomer per step while others decode. On the Qwen3-0.6B shape here a decode
 * step takes ~200 ms and 64 prompt tokens ~0.7 s: running streams slow to about a fifth during a
 * newcomer's prefill instead of stalling for seconds per 256-token chunk, and the prompt still
 * advances at most of the full prefill speed (the decode rows ride along in the same matmuls).
 */
export const DEFAULT_BUSY_PREFILL_CHUNK = 64;

export interface BatchOptions {
  /** Prompt tokens per prefill step when no other sequence is decoding (DEFAULT_PREFILL_CHUNK). */
  prefillChunk: number;
  /** Prompt tokens per step while other sequences decode (keeps their streams moving). */
  busyPrefillChunk?: number;
  /** How long a step waits for a late sequence before running without it (ms). */
  graceMs?: number;
}

interface Pending {
  seq: Seq;
  cache: KVCache;
  tokens: number[];
  lastOnly: boolean;
  prefill: boolean;
  resolve: (r: { logits: mx.array; used: number }) => void;
  reject: (e: unknown) => void;
}

interface Seq {
  id: number;
  open: boolean;
}

/** Counters for tests and the bench. */
export interface BatchStats {
  steps: number;
  /** Steps that ran more than one sequence. */
  batchedSteps: number;
  /** Largest number of sequences in one step. */
  maxSequences: number;
  /** Sequence-steps run (sum over steps of the sequences in them). */
  sequenceSteps: number;
}

/**
 * Schedules the steps of several generations of one model into shared forward passes. One per
 * loaded model; `open()` gives each generation its StepRunner.
 */
export class BatchScheduler {
  private readonly open = new Set<Seq>();
  private pending: Pending[] = [];
  private nextId = 1;
  private running = false;
  private scheduled = false;
  private graceTimer: NodeJS.Timeout | null = null;
  /** Prompt tokens in the last step (decides the memory policy before the next). */
  private lastPrefillTokens = 0;
  readonly stats: BatchStats = { steps: 0, batchedSteps: 0, maxSequences: 0, sequenceSteps: 0 };
  private readonly busyChunk: number;
  private readonly graceMs: number;

  constructor(
    private readonly model: DecoderModel,
    private readonly opts: BatchOptions,
  ) {
    this.busyChunk = Math.max(1, opts.busyPrefillChunk ?? DEFAULT_BUSY_PREFILL_CHUNK);
    this.graceMs = opts.graceMs ?? 5;
  }

  /** Generations currently open. */
  get size(): number {
    return this.open.size;
  }

  /** A runner for one new generation; it joins at the next step. */
  runner(): StepRunner {
    const seq: Seq = { id: this.nextId++, open: true };
    this.open.add(seq);
    const submit = (cache: KVCache, tokens: number[], lastOnly: boolean, prefill: boolean) =>
      new Promise<{ logits: mx.array; used: number }>((resolve, reject) => {
        if (!seq.open) return reject(new Error('the generation already ended'));
        if (tokens.length === 0) return reject(new Error('forward needs at least one token'));
        this.pending.push({ seq, cache, tokens, lastOnly, prefill, resolve, reject });
        this.maybeFire();
      });
    return {
      prefill: (cache, remaining, chunk) => submit(cache, remaining.slice(0, Math.max(1, chunk)), true, true),
      step: async (cache, tokens, lastOnly) => (await submit(cache, tokens, lastOnly, false)).logits,
      // The scheduler runs the memory policy once per step for everyone (before the next step).
      afterPrefill: async () => {},
      afterStep: async () => {},
      close: () => {
        if (!seq.open) return;
        seq.open = false;
        this.open.delete(seq);
        for (const p of this.pending.filter((x) => x.seq === seq)) p.reject(new Error('the generation already ended'));
        this.pending = this.pending.filter((x) => x.seq !== seq);
        this.maybeFire();
      },
    };
  }

  private maybeFire(): void {
    if (this.running || this.scheduled || this.pending.length === 0) return;
    const waiting = new Set(this.pending.map((p) => p.seq)).size;
    if (waiting >= this.open.size) {
      if (this.graceTimer) clearTimeout(this.graceTimer);
      this.graceTimer = null;
      this.scheduled = true;
      setImmediate(() => void this.fire());
    } else if (!this.graceTimer) {
      this.graceTimer = setTimeout(() => {
        this.graceTimer = null;
        if (this.running || this.scheduled || this.pending.length === 0) return;
        this.scheduled = true;
        void this.fire();
      }, this.graceMs);
    }
  }

  private async fire(): Promise<void> {
    this.running = true;
    this.scheduled = false;
    try {
      // The previous step's temporaries (and the logits the samplers have read by now) are
      // garbage: free them before allocating the next step's (generator memory policy, batched).
      if (this.lastPrefillTokens >= 256) await afterLargeStep();
      else await afterDecodeStep();
      await this.runStep();
    } finally {
      this.running = false;
      this.maybeFire();
    }
  }

  /** Takes every pending decode step and at most one prefill chunk, runs them as one forward. */
  private async runStep(): Promise<void> {
    const decodes = this.pending.filter((p) => !p.prefill && p.seq.open);
    const prefills = this.pending.filter((p) => p.prefill && p.seq.open);
    const batch = [...decodes];
    let prefillTokens = 0;
    if (prefills.length > 0) {
      const p = prefills[0];
      // With sequences decoding in this step, a small chunk (their tokens wait for the step); with
      // none, a full one. The generator takes `used` tokens and submits the rest next step.
      const limit = decodes.length > 0 ? Math.min(this.busyChunk, this.opts.prefillChunk) : this.opts.prefillChunk;
      if (p.tokens.length > limit) p.tokens = p.tokens.slice(0, limit);
      batch.push(p);
      prefillTokens = p.tokens.length;
    }
    if (batch.length === 0) return;
    const taken = new Set(batch);
    this.pending = this.pending.filter((p) => !taken.has(p));
    this.lastPrefillTokens = prefillTokens;
    let out: { logits: mx.array; rows: { start: number; count: number }[] };
    try {
      out = await forwardSegmentsReleasing(
        this.model,
        batch.map((p) => ({ tokens: p.tokens, cache: p.cache, lastOnly: p.lastOnly })),
        afterLayer,
      );
      mx.eval(out.logits, ...batch.flatMap((p) => p.cache.arrays()));
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    this.stats.steps++;
    this.stats.sequenceSteps += batch.length;
    if (batch.length > 1) this.stats.batchedSteps++;
    this.stats.maxSequences = Math.max(this.stats.maxSequences, batch.length);
    batch.forEach((p, i) => {
      const r = out.rows[i];
      const logits = batch.length === 1 ? out.logits : out.logits.index(mx.Slice(r.start, r.start + r.count));
      p.resolve({ logits, used: p.tokens.length });
    });
  }
}
