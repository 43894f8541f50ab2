// contextLength "auto" (the default): settings accept "auto" and still accept the numbers older
// config files hold; the auto limit of a loaded model is its own limit capped by memory (numbers
// worked out by hand from the estimate's formula below, not taken from the code); the library's fit
// estimate reports the context a model would serve; `formatContext` for the tray.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadSettings, DEFAULT_SETTINGS } from '../../main/settings/index.ts';
import { validateSetting } from '../../main/settings/validation.ts';
import { admitByMemory, autoContextLength, effectiveContextLength } from '../../main/hardening/memory.ts';
import { estimateFit } from '../../main/library/fit.ts';
import { formatContext } from '../../main/shell/tray-model.ts';
import type { ModelInfo } from '../../main/engine/types.ts';

const MB = 1024 * 1024;
const GB = 1024 * MB;

function withDir<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlxbar-ctx-'));
  try {
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('settings: "auto" is the default; numbers (older config files) and "auto" load from file, env and flags', () => {
  assert.equal(DEFAULT_SETTINGS.contextLength, 'auto');
  withDir((dir) => {
    assert.equal(loadSettings({ dataDir: dir, env: {} }).settings.contextLength, 'auto');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ contextLength: 8192 }));
    const old = loadSettings({ dataDir: dir, env: {} });
    assert.equal(old.settings.contextLength, 8192);
    assert.deepEqual(old.errors, []);
    assert.equal(loadSettings({ dataDir: dir, env: { MLXBAR_CONTEXT_LENGTH: 'auto' } }).settings.contextLength, 'auto');
    assert.equal(loadSettings({ dataDir: dir, env: { MLXBAR_CONTEXT_LENGTH: '16384' } }).settings.contextLength, 16384);
    assert.equal(loadSettings({ dataDir: dir, env: {}, flags: { contextLength: 'auto' } }).settings.contextLength, 'auto');
    const bad = loadSettings({ dataDir: dir, env: { MLXBAR_CONTEXT_LENGTH: 'big' } });
    assert.equal(bad.settings.contextLength, 8192, 'a bad env value falls back to the file');
    assert.ok(bad.errors.some((e) => e.key === 'contextLength' && /"auto" or an integer/.test(e.message)), JSON.stringify(bad.errors));
  });
  assert.equal(validateSetting('contextLength', 'auto'), null);
  assert.equal(validateSetting('contextLength', 0), null);
  assert.notEqual(validateSetting('contextLength', 'max'), null);
  assert.notEqual(validateSetting('contextLength', -1), null);
  assert.notEqual(validateSetting('contextLength', 1.5), null);
});

// Qwen3-0.6B's shape, float32 compute: 28 layers × 8 KV heads × 128 dims × 2 (K, V) × 4 bytes.
const QWEN3_06B: ModelInfo = {
  id: 'Qwen3-0.6B',
  architecture: 'qwen3',
  numParameters: 596e6,
  numLayers: 28,
  numKvHeads: 8,
  headDim: 128,
  hiddenSize: 1024,
  vocabSize: 151936,
  contextLength: 40960,
  checkpointDtype: 'bfloat16',
  quantization: null,
  computeDtype: 'float32',
  weightBytes: 596e6 * 4,
  kvBytesPerToken: 2 * 28 * 8 * 128 * 4, // 229,376 B = 224 KiB per token
  fingerprint: 'f',
  eosTokenIds: [1],
};

test('auto context: the model limit when memory is plenty, else what fits next to the weights', () => {
  // Per token: KV 229,376 B + attention scores of one 512-token prefill chunk: 8 heads × 512 × 4 B = 16,384 B.
  // Fixed: hidden temporaries 16 × 512 × 1024 × 4 = 33,554,432 B, logits 2 × 151,936 × 4 = 1,215,488 B, 32 MiB slack.
  const perToken = 229_376 + 16_384;
  const fixed = 33_554_432 + 1_215_488 + 32 * MB;
  // 16 GB budget: 40,960 tokens need ~10 GB: the model's own limit.
  assert.equal(autoContextLength(QWEN3_06B, 16 * GB), 40960);
  // 4 GB budget: (4 GiB − weights − fixed) / perToken tokens.
  // (4,294,967,296 − 2,384,000,000 − 68,324,352) / 245,760 = 7,497.7
  const expected = Math.floor((4 * GB - 596e6 * 4 - fixed) / perToken);
  assert.equal(expected, 7497);
  assert.equal(autoContextLength(QWEN3_06B, 4 * GB), expected);
  // Not even the weights fit: 0 (every request then gets the clear 400).
  assert.equal(autoContextLength(QWEN3_06B, 1 * GB), 0);

  assert.equal(effectiveContextLength(QWEN3_06B, 'auto', 4 * GB), expected);
  assert.equal(effectiveContextLength(QWEN3_06B, 8192, 64 * GB), 8192, 'a number caps');
  assert.equal(effectiveContextLength(QWEN3_06B, 100_000, 64 * GB), 40960, "never above the model's limit");
  assert.equal(effectiveContextLength(QWEN3_06B, 0, 1 * GB), 40960, "0 = the model's limit (as before)");

  // Inside the auto limit, admission never says "could never fit"; one token past it, the clear 400.
  const base = { model: QWEN3_06B, footprintBytes: 596e6 * 4, budgetBytes: 4 * GB, systemAvailableBytes: null };
  assert.equal(admitByMemory({ ...base, promptTokens: expected - 100, maxTokens: 100, contextLength: expected }), null);
  const over = admitByMemory({ ...base, promptTokens: expected - 100, maxTokens: 101, contextLength: expected });
  assert.equal(over?.code, 'context_length_exceeded');
  assert.equal(over?.status, 400);
});

test('library fit with "auto": reports the context the model would serve', () => {
  const shape = { parameters: 596e6, numLayers: 28, numKvHeads: 8, headDim: 128, maxContext: 40960 };
  const overhead = 384 * MB;
  const plenty = estimateFit(shape, { contextTokens: 'auto', availableBytes: 32 * GB, overheadBytes: overhead });
  assert.equal(plenty.fits, true);
  assert.equal(plenty.contextTokens, 40960);
  const tight = estimateFit(shape, { contextTokens: 'auto', availableBytes: 4 * GB, overheadBytes: overhead });
  assert.equal(tight.contextTokens, Math.floor((4 * GB - 596e6 * 4 - overhead) / 229_376));
  assert.equal(tight.fits, true);
  assert.match(tight.reason, /capped/);
  // Only the weights fit: below the 2,048-token minimum → does not fit.
  const none = estimateFit(shape, { contextTokens: 'auto', availableBytes: 2.5 * GB, overheadBytes: overhead });
  assert.equal(none.fits, false);
  assert.equal(none.contextTokens, 2048);
  // A number still means that number (clamped to the model's).
  assert.equal(estimateFit(shape, { contextTokens: 8192, availableBytes: 32 * GB }).contextTokens, 8192);
});

// Gemma-3-4B's shape, float32 compute: 34 layers, 4 KV heads × 256 dims; 29 local layers with a 1,024-token
// window (every 6th layer is global), whose KV is a ring of 1,023 + 256 slots (kv-cache.ts).
const LAYER = 2 * 4 * 256 * 4; // 8,192 B per layer per token
const GEMMA3_4B: ModelInfo = {
  ...QWEN3_06B,
  id: 'gemma-3-4b',
  architecture: 'gemma3',
  numParameters: 4.3e9,
  numLayers: 34,
  numKvHeads: 4,
  headDim: 256,
  hiddenSize: 2560,
  vocabSize: 262208,
  contextLength: 131072,
  weightBytes: 4.3e9 * 4,
  kvBytesPerToken: 34 * LAYER,
  kvSliding: { bytesPerToken: 29 * LAYER, maxTokens: 1023 + 256 },
};

test('sliding-window layers: their KV counts only up to the ring, so auto context and admission allow far longer contexts', () => {
  const budget = 22 * GB;
  const scores = (2560 / 256) * 512 * 4; // 10 heads × one 512-token chunk × 4 B, per token
  const fixed = 16 * 512 * 2560 * 4 + 2 * 262208 * 4 + 32 * MB;
  const room = budget - 4.3e9 * 4 - fixed;
  // Counted as full layers: room / (34 layers + scores) per token.
  const asFull = Math.floor(room / (34 * LAYER + scores));
  assert.equal(autoContextLength({ ...GEMMA3_4B, kvSliding: null }, budget), asFull);
  // Past 1,279 tokens only the 5 global layers grow: (room − 29 layers × 1,279) / (5 layers + scores).
  const expected = Math.floor((room - 29 * LAYER * 1279) / (5 * LAYER + scores));
  assert.equal(autoContextLength(GEMMA3_4B, budget), expected);
  assert.ok(expected > 4 * asFull, `${expected} vs ${asFull}`);
  // Admission agrees with the auto limit: inside it admitted, one token past it the clear 400.
  const base = { model: GEMMA3_4B, footprintBytes: 4.3e9 * 4, budgetBytes: budget, systemAvailableBytes: null };
  assert.equal(admitByMemory({ ...base, promptTokens: expected - 100, maxTokens: 100, contextLength: expected }), null);
  assert.equal(admitByMemory({ ...base, promptTokens: expected - 100, maxTokens: 101 })?.code, 'context_length_exceeded');
  // The library's fit from the folder's shape counts the same way.
  const shape = { parameters: 4.3e9, numLayers: 34, numKvHeads: 4, headDim: 256, maxContext: 131072, layerWindows: Array.from({ length: 34 }, (_, i) => ((i + 1) % 6 === 0 ? null : 1024)) };
  const fit = estimateFit(shape, { contextTokens: 32768, availableBytes: 64 * GB, overheadBytes: 0 });
  assert.equal(fit.kvBytes, 5 * LAYER * 32768 + 29 * LAYER * 1279);
  assert.equal(estimateFit({ ...shape, layerWindows: null }, { contextTokens: 32768, availableBytes: 64 * GB, overheadBytes: 0 }).kvBytes, 34 * LAYER * 32768);
});

test('tray context label', () => {
  assert.equal(formatContext(40960), '40K');
  assert.equal(formatContext(32768), '32K');
  assert.equal(formatContext(7497), '7.3K');
  assert.equal(formatContext(512), '512');
});
