// Bench section `caches`: the persisted caches through their own API (no HTTP; the HTTP/autocannon
// variant belongs to the server bench).
//   - response-cache hit latency p50/p99: memory hits, disk hits (checksum-verified read), and
//     disk hits under 32 concurrent readers
//   - response-cache store latency (atomic write with fsync of file and directory)
//   - key derivation for a 30k-token prompt
//   - prefix KV save / load throughput (MB/s) for a realistic entry (the warm-restart path)
// Register it with one line in bench/sections.ts: `import { cachesSection } from './caches.ts'`.
// Runs standalone too: `npx tsx bench/caches.ts [--quick]`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { openCaches } from '../main/caches/index.ts';
import type { CachedResponse, ResponseCacheRequest } from '../main/caches/response-cache.ts';
import { Degradation } from '../main/hardening/degradation.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const FP = { model: 'bench-model', tokenizer: 'bench-tok', template: 'bench-tpl', engine: 'bench-engine' };

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function summarize(samplesMs: number[]) {
  const s = [...samplesMs].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50_ms: r(pct(s, 50)), p99_ms: r(pct(s, 99)), max_ms: r(s[s.length - 1] ?? 0) };
}

function request(i: number, promptTokens = 2000): ResponseCacheRequest {
  return { route: 'chat', promptIds: Array.from({ length: promptTokens }, (_, j) => (j * 31 + i) % 150_000), sampling: { temperature: 0, maxTokens: 256 } };
}

function response(i: number): CachedResponse {
  return { text: `Answer ${i}: ` + 'lorem ipsum dolor sit amet '.repeat(40), finishReason: 'stop', stopReason: 'eos', promptTokens: 2000, completionTokens: 256 };
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlxbar-bench-caches-'));
  try {
    const entries = opts.quick ? 50 : 300;
    const reads = opts.quick ? 500 : 5000;
    const degradation = new Degradation();
    const caches = await openCaches(dir, FP, degradation, { response: { enabled: true } });
    const rc = caches.response;
    const keys = Array.from({ length: entries }, (_, i) => rc.keyFor(request(i))!);

    const setMs: number[] = [];
    for (let i = 0; i < entries; i++) {
      const t = performance.now();
      await rc.set(keys[i], response(i));
      setMs.push(performance.now() - t);
    }
    opts.log(`stored ${entries} responses`);

    const memMs: number[] = [];
    for (let i = 0; i < reads; i++) {
      const t = performance.now();
      const hit = await rc.get(keys[i % 16]);
      memMs.push(performance.now() - t);
      if (!hit) throw new Error('expected a memory hit');
    }

    // Disk hits: a second instance whose memory LRU holds one entry, cycling through all keys.
    const cold = await openCaches(dir, FP, degradation, { response: { enabled: true, memoryMaxEntries: 1 } });
    const diskMs: number[] = [];
    for (let i = 0; i < reads; i++) {
      const t = performance.now();
      const hit = await cold.response.get(keys[(i * 7919) % entries]);
      diskMs.push(performance.now() - t);
      if (!hit) throw new Error('expected a disk hit');
    }

    const concMs: number[] = [];
    const concurrency = 32;
    for (let round = 0; round < reads / concurrency; round++) {
      await Promise.all(
        Array.from({ length: concurrency }, async (_, j) => {
          const t = performance.now();
          const hit = await cold.response.get(keys[(round * concurrency + j) % entries]);
          concMs.push(performance.now() - t);
          if (!hit) throw new Error('expected a hit');
        }),
      );
    }
    opts.log('response-cache reads done');

    const keyMs: number[] = [];
    const big = request(1, 30_000);
    for (let i = 0; i < (opts.quick ? 20 : 100); i++) {
      const t = performance.now();
      rc.keyFor(big);
      keyMs.push(performance.now() - t);
    }

    // Prefix KV: e.g. a 2k-token prompt on a 28-layer, 8-KV-head, 128-dim model in float32:
    // 2 × 28 × 8 × 128 × 4 B = 229 KB per token → 2048 tokens ≈ 470 MB; scaled down in quick mode.
    const layers = opts.quick ? 4 : 28;
    const tokens = opts.quick ? 256 : 1024;
    const heads = 8;
    const headDim = 128;
    const n = heads * tokens * headDim;
    const entry = {
      tokens: Array.from({ length: tokens }, (_, i) => i + 10),
      layers: Array.from({ length: layers }, (_, l) => ({
        keys: new Float32Array(n).fill(l * 0.5),
        values: new Float32Array(n).fill(-l),
        shape: [1, heads, tokens, headDim],
        dtype: 'float32',
      })),
    };
    const mb = (2 * layers * n * 4) / 2 ** 20;
    let t = performance.now();
    const saved = await caches.prefix.save(entry);
    const saveS = (performance.now() - t) / 1000;
    if (!saved) throw new Error('prefix save failed');
    const restarted = await openCaches(dir, FP, degradation, { response: { enabled: true } });
    t = performance.now();
    const loaded = await restarted.prefix.loadLongestPrefix([...entry.tokens, 1, 2, 3]);
    const loadS = (performance.now() - t) / 1000;
    if (!loaded) throw new Error('prefix load failed');
    opts.log(`prefix entry ${mb.toFixed(0)} MB saved in ${saveS.toFixed(2)} s, loaded in ${loadS.toFixed(2)} s`);

    const memory = summarize(memMs);
    const disk = summarize(diskMs);
    return {
      result: {
        response_cache: {
          entries,
          hit_memory: memory,
          hit_disk: disk,
          hit_disk_concurrent32: summarize(concMs),
          store: summarize(setMs),
          key_30k_tokens: summarize(keyMs),
          goal_p99_ms: 5,
        },
        prefix_kv: {
          layers,
          tokens,
          megabytes: Math.round(mb),
          save_s: Math.round(saveS * 1000) / 1000,
          load_s: Math.round(loadS * 1000) / 1000,
          save_mb_per_s: Math.round(mb / saveS),
          load_mb_per_s: Math.round(mb / loadS),
        },
      },
      ratios: { hit_disk_p99_ms: disk.p99_ms, hit_memory_p99_ms: memory.p99_ms },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const cachesSection: BenchSection = {
  name: 'caches',
  description: 'response-cache hit latency p50/p99 (memory, disk, concurrent), store latency, prefix KV save/load MB/s',
  run,
};

// Standalone: `npx tsx bench/caches.ts [--quick]`
if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  run({ quick, args: {}, log: (l) => process.stderr.write(`[bench:caches] ${l}\n`) })
    .then((r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'))
    .catch((err) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
