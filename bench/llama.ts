// The llama.cpp yardstick: MLX Bar's engine process and llama.cpp (node-llama-cpp 3.21.1, which
// ships the Linux x64 build) on the SAME random weights — the bench's float32 checkpoint, also
// written as GGUF f32 and Q4_0 by bench/gguf.ts — timed in the same run, interleaved (ours, llama
// f32, llama q4_0, then the next repetition), both with 2 threads. Prints prefill and decode tok/s
// and ratios (ours ÷ llama.cpp). A "same weights" check compares the next-token distribution of
// both engines on one prompt (llama.cpp keeps its KV cache in f16 by default, so expect ~1e-3).
//
// node-llama-cpp lives in bench/llama with its own lockfile, installed on first use with
// `npm ci --omit=optional --ignore-scripts` (its optional deps are CUDA/Vulkan/other-OS builds; the
// CPU build is a plain dependency there), so the app's own `npm ci` never pulls it in.
//   --llama-shape qwen3_0_6b (default; tiny in --quick)  --reps 3  --llama-prefill 512  --llama-decode 32
//   --llama-threads 2
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createEngineClient, type SupervisedEngineClient } from '../main/engine/process/engine-client.ts';
import { DEFAULT_SAMPLING, type EngineEvent, type GenerateRequest } from '../main/engine/types.ts';
import { ensureCheckpoint, promptIds, type ShapeName } from './engine.ts';
import { writeGgufFromCheckpoint, type GgufWeightType } from './gguf.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { summarize } from './prefill.ts';

const LLAMA_DIR = fileURLToPath(new URL('./llama/', import.meta.url));
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

function ensureLlamaInstalled(log: (s: string) => void): void {
  if (existsSync(path.join(LLAMA_DIR, 'node_modules/@node-llama-cpp/linux-x64/bins/llama-addon.node'))) return;
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('the llama.cpp yardstick needs linux-x64 (the prebuilt CPU build)');
  log('installing node-llama-cpp into bench/llama (first use)');
  execFileSync('npm', ['ci', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: LLAMA_DIR, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** The GGUF files next to the bench checkpoint (written once). */
function ensureGguf(dir: string, type: GgufWeightType, log: (s: string) => void): string {
  const file = path.join(dir, `model-${type}.gguf`);
  const src = path.join(dir, 'model.safetensors');
  if (existsSync(file) && (!existsSync(src) || statSync(file).mtimeMs >= statSync(src).mtimeMs)) return file;
  const t = performance.now();
  const tmp = `${file}.tmp-${process.pid}`;
  writeGgufFromCheckpoint(dir, tmp, type);
  execFileSync('mv', [tmp, file]);
  log(`wrote ${path.basename(file)} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return file;
}

class LlamaWorker {
  private child: ChildProcess;
  private seq = 0;
  private waiting = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<void>;
  constructor() {
    // OMP/OpenBLAS settings do not matter to ggml; the thread count is passed per context.
    this.child = fork(path.join(LLAMA_DIR, 'worker.mjs'), [], { cwd: LLAMA_DIR, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let err = '';
    this.child.stderr!.on('data', (d) => (err = (err + d).slice(-2000)));
    this.ready = new Promise((resolve, reject) => {
      this.child.once('message', () => resolve());
      this.child.once('exit', (code) => reject(new Error(`llama worker exited (${code}): ${err}`)));
    });
    this.child.on('message', (m: { id?: number; ok?: boolean; error?: string }) => {
      if (m.id === undefined) return;
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.ok) w?.resolve(m as Record<string, unknown>);
      else w?.reject(new Error(m.error));
    });
  }
  call<R>(msg: Record<string, unknown>): Promise<R> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: Record<string, unknown>) => void, reject });
      this.child.send({ ...msg, id });
    });
  }
  async exit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'exit', id: 0 });
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (this.child.exitCode === null) this.child.kill();
  }
}

async function ours(client: SupervisedEngineClient, ids: number[], maxTokens: number): Promise<Extract<EngineEvent, { type: 'done' }>> {
  const req: GenerateRequest = { requestId: `llama-yard-${Math.random().toString(36).slice(2)}`, promptIds: ids, sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens }, cachePrompt: false };
  for await (const e of client.generate(req)) {
    if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
    if (e.type === 'done') return e;
  }
  throw new Error('no done');
}

async function runLlama(opts: BenchOptions): Promise<BenchResult> {
  const shape = (typeof opts.args['llama-shape'] === 'string' ? opts.args['llama-shape'] : opts.quick ? 'tiny' : 'qwen3_0_6b') as ShapeName;
  const reps = Math.max(1, Number(opts.args.reps ?? (opts.quick ? 1 : 3)));
  const prefillLen = Number(opts.args['llama-prefill'] ?? (opts.quick ? 128 : 512));
  const decodeSteps = Number(opts.args['llama-decode'] ?? (opts.quick ? 16 : 32));
  // 2 = this machine's cores and our OpenBLAS thread count. ggml's threads spin on a barrier per
  // op: on an oversubscribed box 2 threads can be ~100x slower than 1 (measured at load 20 on the
  // ~15M shape: 8 vs 940 ms/token), so read llama.cpp numbers only next to the load average.
  const THREADS = Number(opts.args['llama-threads'] ?? 2);
  ensureLlamaInstalled(opts.log);
  const dir = await ensureCheckpoint(shape, 'f32', opts.log);
  const files = { f32: ensureGguf(dir, 'f32', opts.log), q4_0: ensureGguf(dir, 'q4_0', opts.log) };

  const logs: string[] = [];
  const client = createEngineClient({ log: (l) => logs.push(l) });
  const worker = new LlamaWorker();
  type Row = { engine: 'ours' | 'llama_f32' | 'llama_q4_0'; prefillTokPerS: number; decodeTokPerS: number; load1: number };
  const rows: Row[] = [];
  let check: Record<string, unknown> = {};
  try {
    const info = await client.start(dir);
    await worker.ready;
    const ctx = { contextSize: Math.max(1024, prefillLen + decodeSteps + 64), threads: THREADS, batchSize: 512 };
    for (const k of ['f32', 'q4_0'] as const) await worker.call({ type: 'load', key: k, file: files[k], ...ctx });
    const limit = Math.min(info.vocabSize, 150_000);

    // Same weights? Next-token distribution after one short prompt, ours vs llama.cpp f32.
    const probe = promptIds(24, 5, limit);
    const topK = 10;
    const { top } = await worker.call<{ top: [number, number][] }>({ type: 'probs', key: 'f32', tokens: probe, topK });
    check = await sameWeightsCheck(dir, probe, top);

    // Warm-up of every engine (first-use paths, page-in of the weights).
    await ours(client, promptIds(16, 1, limit), 2);
    for (const k of ['f32', 'q4_0']) await worker.call({ type: 'decode', key: k, prompt: promptIds(16, 1, limit), steps: 2 });

    for (let r = 0; r < reps; r++) {
      const ids = promptIds(prefillLen, 900 + r, limit);
      const dec = promptIds(128, 950 + r, limit);
      const order: Row['engine'][] = r % 2 ? ['llama_q4_0', 'llama_f32', 'ours'] : ['ours', 'llama_f32', 'llama_q4_0'];
      for (const e of order) {
        let prefillMs: number;
        let msPerToken: number;
        if (e === 'ours') {
          prefillMs = (await ours(client, ids, 1)).prefillMs;
          const dd = await ours(client, dec, decodeSteps + 1);
          msPerToken = dd.decodeMs / Math.max(1, dd.completionTokens - 1);
        } else {
          const key = e === 'llama_f32' ? 'f32' : 'q4_0';
          prefillMs = (await worker.call<{ ms: number }>({ type: 'prefill', key, tokens: ids })).ms;
          msPerToken = (await worker.call<{ msPerToken: number }>({ type: 'decode', key, prompt: dec, steps: decodeSteps })).msPerToken;
        }
        const row: Row = { engine: e, prefillTokPerS: round(prefillLen / (prefillMs / 1000), 1), decodeTokPerS: round(1000 / msPerToken, 2), load1: round(os.loadavg()[0], 2) };
        rows.push(row);
        opts.log(`${e}: prefill ${prefillLen} ${row.prefillTokPerS} tok/s, decode ${row.decodeTokPerS} tok/s (load ${row.load1})`);
      }
    }
  } finally {
    await client.stop();
    await worker.exit();
  }
  const by = (e: Row['engine'], k: 'prefillTokPerS' | 'decodeTokPerS') => summarize(rows.filter((x) => x.engine === e).map((x) => x[k]));
  const result: Record<string, unknown> = {
    shape,
    threads: THREADS,
    prefillTokens: prefillLen,
    decode: { promptTokens: 128, steps: decodeSteps },
    openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
    openblasL2Size: process.env.OPENBLAS_L2_SIZE ?? null,
    sameWeights: check,
    rows,
    prefill: { ours: by('ours', 'prefillTokPerS'), llama_f32: by('llama_f32', 'prefillTokPerS'), llama_q4_0: by('llama_q4_0', 'prefillTokPerS') },
    decodeTokPerS: { ours: by('ours', 'decodeTokPerS'), llama_f32: by('llama_f32', 'decodeTokPerS'), llama_q4_0: by('llama_q4_0', 'decodeTokPerS') },
    notes: [
      'medians over interleaved repetitions; ratios = ours ÷ llama.cpp',
      'llama.cpp defaults otherwise (f16 KV cache, batch 512); ours: engine process, float32 everything',
    ],
  };
  const p = result.prefill as Record<string, { median: number }>;
  const dd = result.decodeTokPerS as Record<string, { median: number }>;
  return {
    result,
    ratios: {
      prefill_vs_llama_f32: round(p.ours.median / p.llama_f32.median, 2),
      prefill_vs_llama_q4_0: round(p.ours.median / p.llama_q4_0.median, 2),
      decode_vs_llama_f32: round(dd.ours.median / dd.llama_f32.median, 2),
      decode_vs_llama_q4_0: round(dd.ours.median / dd.llama_q4_0.median, 2),
    },
  };
}

/**
 * Our next-token distribution for `probe` (in a child: this process keeps no MLX model), compared
 * with llama.cpp's top-k (renormalized over its top-k, so compare log-probability differences).
 */
async function sameWeightsCheck(dir: string, probe: number[], top: [number, number][]): Promise<Record<string, unknown>> {
  const out = await new Promise<string>((resolve, reject) => {
    const entry = fileURLToPath(new URL('./llama-probe.ts', import.meta.url));
    const child = fork(entry, [dir, JSON.stringify(probe), JSON.stringify(top.map((t) => t[0]))], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let s = '';
    child.stdout!.on('data', (d) => (s += d));
    child.on('exit', (c) => (c === 0 ? resolve(s) : reject(new Error(`probe exited ${c}`))));
  });
  const ourLogp = JSON.parse(out.trim().split('\n').pop()!) as { argmax: number; logp: number[] };
  // Log-probability differences relative to the top token cancel llama.cpp's renormalization.
  let maxDiff = 0;
  for (let i = 1; i < top.length; i++) {
    const theirs = Math.log(top[i][1]) - Math.log(top[0][1]);
    const mine = ourLogp.logp[i] - ourLogp.logp[0];
    maxDiff = Math.max(maxDiff, Math.abs(theirs - mine));
  }
  return { topK: top.length, sameArgmax: ourLogp.argmax === top[0][0], maxLogitDiffOverTopK: round(maxDiff, 5) };
}

export const llamaSection: BenchSection = {
  name: 'llama',
  description: 'llama.cpp yardstick (node-llama-cpp 3.21.1, bench/llama): prefill/decode on the same weights as GGUF f32 and Q4_0, interleaved, ratios',
  run: runLlama,
};
