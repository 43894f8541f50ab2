// The prefix store against the REAL engine-core prefix cache (MLX, tiny random-weight model):
// a prompt's KV is exported by the engine, persisted, and after a "restart" (new cache instance,
// separately loaded model) loaded back, imported into the model's prefix cache, and reused — with
// exactly the tokens of a cold run. This is the warm-restart path for a repeated system prompt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll } from '../../main/engine/model/generator.ts';
import { PrefixCache, exportEntry, importEntry } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { openCaches } from '../../main/caches/index.ts';
import { makeTempDir, FP } from './helpers.ts';

const V = 8192;
const spec = { family: 'qwen2', vocabSize: V } as const;
const greedy = (maxTokens: number) => ({ ...DEFAULT_SAMPLING, maxTokens });
const toks = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 2654435761 + seed * 97) % V);

test('engine KV → disk → restart → import: warm generation equals cold, prefix reused', { timeout: 300_000 }, async (t) => {
  const dir = await makeTempDir(t);
  const modelDir = await buildTinyModel(spec);
  const lm = await loadModel(modelDir);
  const system = toks(80, 1);
  const pc = new PrefixCache({ budgetBytes: 64 << 20 });
  await generateAll(lm, pc, { promptIds: [...system, ...toks(5, 2)], sampling: greedy(3) });
  const [entry] = pc.entries();
  assert.ok(entry);
  const fp = { ...FP, model: lm.info.fingerprint };
  const c1 = await openCaches(dir, fp);
  assert.equal(await c1.prefix.save(exportEntry(entry)), true);

  // restart: new caches instance, separately loaded model
  const c2 = await openCaches(dir, fp);
  const other = await loadModel(modelDir);
  const next = [...system, ...toks(9, 3)];
  const found = await c2.prefix.loadLongestPrefix(next);
  assert.ok(found, 'the stored prefix is found for the next prompt');
  assert.ok(found.commonTokens >= system.length);
  const imported = importEntry(found.entry, other.config);
  const pc2 = new PrefixCache({ budgetBytes: 64 << 20 });
  assert.ok(pc2.add(imported.tokens, imported.cache));
  const cold = await generateAll(other, null, { promptIds: next, sampling: greedy(6) });
  const warm = await generateAll(other, pc2, { promptIds: next, sampling: greedy(6) });
  assert.ok(warm.summary.cachedTokens >= system.length, `reused ${warm.summary.cachedTokens}`);
  assert.deepEqual(warm.tokens, cold.tokens);
  // bit-exact through the disk
  const again = exportEntry({ tokens: imported.tokens, cache: imported.cache });
  const orig = exportEntry(entry);
  for (let i = 0; i < orig.layers.length; i++) {
    assert.deepEqual(new Uint8Array(again.layers[i].keys.buffer), new Uint8Array(orig.layers[i].keys.buffer));
  }
  // another model's caches do not offer it
  const c3 = await openCaches(dir, { ...fp, model: 'another-model' });
  assert.equal(await c3.prefix.loadLongestPrefix(next), null);
});
