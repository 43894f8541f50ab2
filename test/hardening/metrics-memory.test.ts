// Memory sampler pressure levels (with hysteresis) and per-request admission by memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemorySampler, estimateRequestMemory, admitByMemory, readProcMeminfo, readSystemMemory, watermarkBytes } from '../../main/hardening/memory.ts';
import type { ModelInfo } from '../../main/engine/types.ts';

const MB = 1024 * 1024;
const GB = 1024 * MB;

test('reads /proc/meminfo (MemAvailable, not MemFree) and real system memory on Linux', { skip: process.platform !== 'linux' && 'Linux only' }, () => {
  const parsed = readProcMeminfo('MemTotal:       24683620 kB\nMemFree:          100000 kB\nMemAvailable:   20000000 kB\n');
  assert.deepEqual(parsed, { totalBytes: 24683620 * 1024, availableBytes: 20000000 * 1024 });
  assert.equal(readProcMeminfo('garbage'), null);
  const sys = readSystemMemory();
  assert.ok(sys.totalBytes > 0);
  assert.ok(sys.availableBytes !== null && sys.availableBytes > 0 && sys.availableBytes <= sys.totalBytes);
});

test('watermarks: bytes or % of RAM, the smaller wins', () => {
  assert.equal(watermarkBytes({ bytes: 2 * GB }, 16 * GB), 2 * GB);
  assert.equal(watermarkBytes({ percent: 50 }, 16 * GB), 8 * GB);
  assert.equal(watermarkBytes({ bytes: 10 * GB, percent: 50 }, 16 * GB), 8 * GB);
  assert.equal(watermarkBytes(undefined, 16 * GB), 0);
});

test('pressure: soft then hard callbacks, hysteresis on the way down, no flapping at the line', async () => {
  let rss = 100 * MB;
  const calls: string[] = [];
  const s = createMemorySampler({
    readServerRss: () => rss,
    readSystem: () => ({ totalBytes: 16 * GB, availableBytes: 12 * GB, kernelLevel: null }),
    soft: { bytes: 1000 * MB },
    hard: { bytes: 2000 * MB },
    onSoft: () => calls.push('soft'),
    onHard: () => calls.push('hard'),
    onNormal: () => calls.push('normal'),
  });
  await s.sample();
  assert.equal(s.pressure, 'normal');
  rss = 1000 * MB;
  await s.sample();
  assert.equal(s.pressure, 'soft');
  rss = 950 * MB; // within 10% below the soft line: stays soft
  await s.sample();
  rss = 1001 * MB;
  await s.sample();
  assert.equal(s.pressure, 'soft');
  rss = 2100 * MB;
  await s.sample();
  assert.equal(s.pressure, 'hard');
  rss = 1850 * MB; // 92.5% of hard: still hard
  await s.sample();
  assert.equal(s.pressure, 'hard');
  rss = 1500 * MB;
  await s.sample();
  assert.equal(s.pressure, 'soft');
  rss = 800 * MB;
  await s.sample();
  assert.equal(s.pressure, 'normal');
  assert.deepEqual(calls, ['soft', 'hard', 'soft', 'normal']);
  const st = s.stats();
  assert.equal(st.peak_mb, 2100);
  assert.equal(st.current_mb, 800);
  assert.equal(st.growth_percent, 700, 'growth relative to the first sample (100 MB)');
});

test('system pressure from MemAvailable triggers levels; growth baseline waits for the model', async () => {
  let avail = 8 * GB;
  let engineRss = 0;
  const s = createMemorySampler({
    readServerRss: () => 100 * MB,
    engineStats: async () => ({
      rssBytes: engineRss,
      heapUsedBytes: 0,
      mlxActiveBytes: 0,
      mlxPeakBytes: 0,
      prefixCache: { entries: 0, bytes: 0, budgetBytes: 0, reusedTokens: 0, computedTokens: 0, hits: 0, misses: 0 },
      blas: 'openblas',
    }),
    readSystem: () => ({ totalBytes: 16 * GB, availableBytes: avail, kernelLevel: null }),
  });
  await s.sample(); // no model yet: no baseline
  engineRss = 1000 * MB; // model loaded
  await s.sample();
  engineRss = 1100 * MB;
  await s.sample();
  assert.equal(s.stats().growth_percent, 9.1); // (1200-1100)/1100
  avail = 1 * GB; // 93.75% used ≥ 90 → soft
  await s.sample();
  assert.equal(s.pressure, 'soft');
  avail = 0.3 * GB; // 98% used ≥ 97 → hard
  await s.sample();
  assert.equal(s.pressure, 'hard');
  assert.equal(s.stats().system_available_mb, 307.2);
});

test('an engine that hangs or fails does not stall sampling', async () => {
  const s = createMemorySampler({
    readServerRss: () => 50 * MB,
    engineStats: () => new Promise(() => {}),
    engineStatsTimeoutMs: 100,
    readSystem: () => ({ totalBytes: 16 * GB, availableBytes: 8 * GB, kernelLevel: null }),
  });
  // The engine never answers: the sample still resolves (engineStatsTimeoutMs), marked unavailable.
  const sample = await s.sample();
  assert.equal(sample.engineAvailable, false);
  assert.equal(sample.engineRssBytes, 0);
  const s2 = createMemorySampler({ readServerRss: () => 1, engineStats: async () => { throw new Error('engine down'); } });
  assert.equal((await s2.sample()).engineAvailable, false);
});

const model: ModelInfo = {
  id: 'tiny',
  architecture: 'qwen3',
  numParameters: 600e6,
  numLayers: 28,
  numKvHeads: 8,
  headDim: 128,
  hiddenSize: 1024,
  vocabSize: 151936,
  contextLength: 40960,
  checkpointDtype: 'bfloat16',
  quantization: null,
  computeDtype: 'float32',
  weightBytes: 2.4 * GB,
  kvBytesPerToken: 2 * 28 * 8 * 128 * 4, // 229,376 B
  fingerprint: 'x',
  eosTokenIds: [1],
};

test('estimateRequestMemory: KV grows linearly with tokens, plus activation headroom; NaN fails safe', () => {
  const a = estimateRequestMemory(model, 1000, 1000);
  assert.equal(a.kvBytes, 2000 * model.kvBytesPerToken);
  assert.ok(a.activationBytes > 32 * MB);
  assert.equal(a.totalBytes, a.kvBytes + a.activationBytes);
  const b = estimateRequestMemory(model, 2000, 2000);
  assert.equal(b.kvBytes, 2 * a.kvBytes);
  assert.equal(estimateRequestMemory({ ...model, kvBytesPerToken: NaN }, 10, 10).totalBytes, Infinity);
  assert.equal(estimateRequestMemory(model, -1, 10).totalBytes, Infinity);
});

test('admitByMemory: context over the limit → 400, never fits → 400, not now → 503 + Retry-After, fits → null', () => {
  const base = { model, footprintBytes: 3 * GB, budgetBytes: 8 * GB, systemAvailableBytes: 10 * GB };
  assert.equal(admitByMemory({ ...base, promptTokens: 1000, maxTokens: 500 }), null);

  const ctx = admitByMemory({ ...base, promptTokens: 3000, maxTokens: 2000, contextLength: 4096 });
  assert.equal(ctx?.status, 400);
  assert.equal(ctx?.code, 'context_length_exceeded');
  assert.match(ctx!.message, /maximum context length is 4096 tokens.*5000 tokens \(3000 in the messages, 2000 in the completion\)/);

  const never = admitByMemory({ ...base, promptTokens: 30000, maxTokens: 5000, budgetBytes: 4 * GB });
  assert.equal(never?.status, 400);
  assert.equal(never?.code, 'context_length_exceeded');
  assert.match(never!.message, /memory/);

  const busy = admitByMemory({ ...base, promptTokens: 8000, maxTokens: 1000, footprintBytes: 7.5 * GB });
  assert.equal(busy?.status, 503);
  assert.equal(busy?.code, 'insufficient_memory');
  assert.ok((busy?.retryAfter ?? 0) > 0);

  const reserved = admitByMemory({ ...base, promptTokens: 8000, maxTokens: 1000, reservedBytes: 4.5 * GB });
  assert.equal(reserved?.code, 'insufficient_memory');

  const sysLow = admitByMemory({ ...base, promptTokens: 8000, maxTokens: 1000, systemAvailableBytes: 300 * MB });
  assert.equal(sysLow?.code, 'insufficient_memory');

  const nan = admitByMemory({ ...base, model: { ...model, kvBytesPerToken: NaN }, promptTokens: 10, maxTokens: 10 });
  assert.equal(nan?.status, 503, 'an unknown estimate refuses rather than risking an abort');
  for (const e of [ctx, never, busy, nan]) assert.doesNotMatch(e!.message, /\/home|\/Users|at .*:\d+:\d+/);
});

test('watermarks from settings: MB when set, else % of RAM', async () => {
  const { watermarksFromSettings } = await import('../../main/hardening/memory.ts');
  assert.deepEqual(watermarksFromSettings({ softLimitMb: 0, hardLimitMb: 4096, softPercent: 75, hardPercent: 90 }), { soft: { percent: 75 }, hard: { bytes: 4096 * MB } });
});

test('reservations: a running generation’s KV still to come counts as taken, what a sample already saw is not counted twice, the end releases it', async () => {
  let rss = 3 * GB;
  const s = createMemorySampler({
    readServerRss: () => rss,
    readSystem: () => ({ totalBytes: 16 * GB, availableBytes: 12 * GB, kernelLevel: null }),
    hard: { bytes: 8 * GB },
  });
  await s.sample();
  const perToken = model.kvBytesPerToken;
  // 10,000 tokens ≈ 2.1 GB of KV each: the first fits (5 GB free), a second only while the first's KV is not reserved.
  const first = s.reserve(model, 1000, 9000);
  assert.ok(!(first instanceof Error), 'the first one is admitted');
  assert.equal(s.stats().reserving_generations, 1);
  assert.equal(s.reservations.reservedBytes(), 10_000 * perToken);
  const second = s.reserve(model, 1000, 9000);
  assert.ok(!(second instanceof Error), 'two fit: 2 × 2.1 GB < 5 GB');
  const third = s.reserve(model, 1000, 9000);
  assert.ok(third instanceof Error && third.code === 'insufficient_memory' && third.status === 503, 'a third does not');
  assert.equal(s.admit(model, 1000, 9000, { reservations: false }), null, 'on arrival (it may queue) only the sample counts');
  // The first one grew by 4,000 tokens: once a sample has seen them (in RSS), they leave the reservation.
  if (!(first instanceof Error)) first.progress(4000);
  assert.equal(s.reservations.reservedBytes(), 20_000 * perToken, 'not seen by a sample yet: still reserved');
  rss += 4000 * perToken;
  await s.sample();
  assert.equal(s.reservations.reservedBytes(), 16_000 * perToken);
  // Bounded by the context given at reservation; release is idempotent.
  const capped = s.reservations.reserve(model, 100, 100_000, 2000);
  assert.equal(s.reservations.reservedBytes(), 18_000 * perToken);
  capped.release();
  capped.release();
  if (!(first instanceof Error)) first.release();
  if (!(second instanceof Error)) second.release();
  assert.equal(s.reservations.reservedBytes(), 0);
  assert.equal(s.stats().reserved_kv_mb, 0);
  assert.equal(s.stats().reserving_generations, 0);
});
