// The model library over real tiny-model folders on disk: metadata, fit, readiness rules,
// symlink confinement, and exact-match lookup that never treats a request string as a path.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { findModel, listModels } from '../../main/library/library.ts';
import { pullModel } from '../../main/library/downloader.ts';
import { startFakeHub } from './fake-hub.ts';

let root: string;
let dataDir: string;
let models: string;
let outside: string;
const dims = { layers: 2, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 512, vocabSize: 1024 };
const GiB = 1024 ** 3;

function dirSize(d: string): number {
  return readdirSync(d).reduce((s, n) => s + statSync(path.join(d, n)).size, 0);
}
async function build(spec: TinyModelSpec & { vocabSize?: number }, dir: string): Promise<string> {
  return buildTinyModel(spec as TinyModelSpec, dir);
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-lib-'));
  dataDir = path.join(root, 'data');
  models = path.join(dataDir, 'models');
  outside = path.join(root, 'outside');
  mkdirSync(models, { recursive: true });
  mkdirSync(outside, { recursive: true });
  await build({ family: 'qwen3', quant: { bits: 4, groupSize: 32 }, ...dims }, path.join(models, 'tiny-q4'));
  await build({ family: 'qwen3', dtype: 'bfloat16', ...dims }, path.join(models, 'tiny-bf16'));
  await build({ family: 'llama', dtype: 'float32', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocabSize: 512, shards: 2 }, path.join(models, 'tiny-llama-sharded'));
  // Incomplete: config only; and a sharded model with one shard missing.
  mkdirSync(path.join(models, 'half'));
  cpSync(path.join(models, 'tiny-bf16', 'config.json'), path.join(models, 'half', 'config.json'));
  cpSync(path.join(models, 'tiny-llama-sharded'), path.join(models, 'missing-shard'), { recursive: true });
  const shard = readdirSync(path.join(models, 'missing-shard')).find((n) => /-of-/.test(n))!;
  rmSync(path.join(models, 'missing-shard', shard));
  // A complete model in the staging area, and one outside the models dir reached by a symlink.
  cpSync(path.join(models, 'tiny-bf16'), path.join(models, '.incoming', 'staged.partial'), { recursive: true });
  cpSync(path.join(models, 'tiny-bf16'), path.join(outside, 'victim'), { recursive: true });
  symlinkSync(path.join(outside, 'victim'), path.join(models, 'escape'));
  // A folder whose weights are a symlink to a file outside.
  mkdirSync(path.join(models, 'sneaky'));
  for (const n of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
    cpSync(path.join(models, 'tiny-bf16', n), path.join(models, 'sneaky', n));
  }
  symlinkSync(path.join(outside, 'victim', 'model.safetensors'), path.join(models, 'sneaky', 'model.safetensors'));
  // A corrupt safetensors header (claims a header longer than the file).
  cpSync(path.join(models, 'tiny-bf16'), path.join(models, 'corrupt'), { recursive: true });
  const buf = Buffer.alloc(16);
  buf.writeBigUInt64LE(10n ** 12n, 0);
  writeFileSync(path.join(models, 'corrupt', 'model.safetensors'), buf);
});

after(() => rmSync(root, { recursive: true, force: true }));

describe('model library', () => {
  it('lists ready models with size, architecture, quantization, dtype and parameters', async () => {
    const list = await listModels(dataDir, { availableBytes: 64 * GiB });
    assert.deepEqual(list.map((m) => m.id), ['tiny-bf16', 'tiny-llama-sharded', 'tiny-q4']);
    const q4 = list.find((m) => m.id === 'tiny-q4')!;
    const bf16 = list.find((m) => m.id === 'tiny-bf16')!;
    assert.equal(q4.architecture, 'qwen3');
    assert.deepEqual(q4.quantization, { bits: 4, groupSize: 32 });
    assert.equal(q4.dtype, 'q4');
    assert.equal(bf16.quantization, null);
    assert.equal(bf16.dtype, 'bfloat16');
    assert.equal(q4.sizeBytes, dirSize(path.join(models, 'tiny-q4')));
    assert.ok(q4.sizeBytes < bf16.sizeBytes, '4-bit checkpoint is smaller on disk');
    // The same shapes stored 4-bit and bf16 must give the same logical parameter count.
    assert.ok(bf16.parameters! > 0);
    assert.equal(q4.parameters, bf16.parameters);
    assert.equal(q4.numLayers, 2);
    assert.equal(q4.numKvHeads, 2);
    assert.equal(q4.headDim, 64);
    const sharded = list.find((m) => m.id === 'tiny-llama-sharded')!;
    assert.equal(sharded.architecture, 'llama');
    assert.equal(sharded.dtype, 'float32');
    for (const m of list) assert.equal(m.ready, true);
  });

  it('estimates memory fit as float32 weights + KV for the configured context, with a reason', async () => {
    const [m] = (await listModels(dataDir, { availableBytes: 64 * GiB, contextTokens: 1000, overheadBytes: 0 })).filter((x) => x.id === 'tiny-q4');
    const f = m.fitsInMemory;
    assert.equal(f.weightsBytes, m.parameters! * 4);
    assert.equal(f.kvBytes, 2 * 2 * 2 * 64 * 4 * 1000);
    assert.equal(f.needBytes, f.weightsBytes + f.kvBytes);
    assert.equal(f.fits, true);
    const [small] = (await listModels(dataDir, { availableBytes: 1000, contextTokens: 1000 })).filter((x) => x.id === 'tiny-q4');
    assert.equal(small.fitsInMemory.fits, false);
    assert.match(small.fitsInMemory.reason, /Too large.*float32.*KV cache.*1000 tokens.*available/);
    // The context is clamped to the model's own maximum (max_position_embeddings = 4096).
    const [big] = (await listModels(dataDir, { contextTokens: 1_000_000 })).filter((x) => x.id === 'tiny-q4');
    assert.equal(big.fitsInMemory.contextTokens, 4096);
  });

  it('ignores incomplete folders, the staging area, escaping symlinks and corrupt headers', async () => {
    const all = await listModels(dataDir, { includeIncomplete: true });
    const ids = all.map((m) => m.id);
    assert.ok(!ids.includes('staged.partial') && !ids.includes('.incoming'));
    assert.ok(!ids.includes('escape'), 'a symlink leading outside the models dir is ignored');
    const byId = new Map(all.map((m) => [m.id, m]));
    assert.equal(byId.get('half')?.ready, false);
    assert.match(byId.get('half')!.problem!, /missing tokenizer\.json/);
    assert.equal(byId.get('missing-shard')?.ready, false);
    assert.match(byId.get('missing-shard')!.problem!, /shard .* is missing/);
    assert.equal(byId.get('sneaky')?.ready, false, 'weights symlinked from outside are not used');
    assert.equal(byId.get('corrupt')?.ready, false);
    assert.match(byId.get('corrupt')!.problem!, /unreadable safetensors header/);
    // The default listing has ready models only.
    const ready = (await listModels(dataDir)).map((m) => m.id);
    assert.deepEqual(ready, ['tiny-bf16', 'tiny-llama-sharded', 'tiny-q4']);
  });

  it('explicit folders from settings are listed too', async () => {
    const list = await listModels(dataDir, { extraDirs: [path.join(outside, 'victim'), 'relative/ignored'] });
    assert.ok(list.some((m) => m.id === 'victim' && m.ready));
  });

  it('findModel matches ids exactly and never resolves a request string as a path', async () => {
    assert.equal((await findModel('tiny-q4', dataDir))?.dir, path.join(models, 'tiny-q4'));
    for (const evil of [
      '../../etc/passwd',
      '../models/tiny-q4',
      './tiny-q4',
      'tiny-q4/',
      path.join(models, 'tiny-q4'),
      '..%2f..%2fetc%2fpasswd',
      'C:\\Windows\\System32',
      '~/tiny-q4',
      'tiny-q4\u0000',
      '．．／．．／etc/passwd',
      'TINY-Q4',
      'x'.repeat(10_000),
      'escape',
      'half',
      'staged.partial',
      '.incoming',
    ]) {
      assert.equal(await findModel(evil, dataDir), null, JSON.stringify(evil.slice(0, 40)));
    }
    assert.equal(await findModel(42 as unknown as string, dataDir), null);
  });

  it('a pulled model is listed by its repo id (folder name as alias); a damaged one is not ready', async () => {
    const hub = await startFakeHub();
    const d2 = mkdtempSync(path.join(tmpdir(), 'mlxbar-lib2-'));
    try {
      hub.addRepo('mlx-community/Tiny-Q4', path.join(models, 'tiny-q4'));
      await pullModel('mlx-community/Tiny-Q4', { dataDir: d2, endpoint: hub.endpoint, minRetryDelayMs: 10 });
      const [m] = await listModels(d2);
      assert.equal(m.id, 'mlx-community/Tiny-Q4');
      assert.equal(m.source, 'hub');
      assert.equal(m.folder, 'mlx-community--Tiny-Q4');
      assert.equal((await findModel('mlx-community--Tiny-Q4', d2))?.id, 'mlx-community/Tiny-Q4');
      // A file truncated after the download no longer matches the verified manifest.
      truncateSync(path.join(m.dir, 'tokenizer.json'), 10);
      const [bad] = await listModels(d2, { includeIncomplete: true });
      assert.equal(bad.ready, false);
      assert.equal(await findModel('mlx-community/Tiny-Q4', d2), null);
    } finally {
      await hub.close();
      rmSync(d2, { recursive: true, force: true });
    }
  });
});
