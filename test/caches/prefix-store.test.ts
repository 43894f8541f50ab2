// Prefix KV persistence with synthetic entries shaped like the engine's export: exact round trip of
// every layer's keys/values (zero-copy float32 views), warm restart (the token index is rebuilt from
// disk), longest-prefix lookup without disk I/O, refusal of malformed entries, corruption found at
// startup (structure scan) or at load (checksum) → miss + quarantine, and isolation by model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, truncate, readdir } from 'node:fs/promises';
import path from 'node:path';
import { openCaches } from '../../main/caches/index.ts';
import type { LoadedPrefixKvLayer, PrefixKvEntry } from '../../main/caches/prefix-store.ts';
import { Degradation } from '../../main/hardening/degradation.ts';
import { makeTempDir, FP } from './helpers.ts';

function synthetic(tokens: number[], layers = 4, heads = 2, headDim = 16, seed = 1): PrefixKvEntry {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const n = heads * tokens.length * headDim;
  return {
    tokens,
    layers: Array.from({ length: layers }, () => ({
      keys: Float32Array.from({ length: n }, rnd),
      values: Float32Array.from({ length: n }, rnd),
      shape: [1, heads, tokens.length, headDim],
      dtype: 'float32',
    })),
  };
}

const range = (a: number, n: number) => Array.from({ length: n }, (_, i) => a + i);

test('save → load is exact (float32 views), survives a restart, longest-prefix lookup', async (t) => {
  const dir = await makeTempDir(t);
  const c1 = await openCaches(dir, FP);
  const system = range(1000, 2048); // a long system prompt
  const e = synthetic(system);
  assert.equal(await c1.prefix.save(e), true);
  const short = synthetic(range(1000, 100), 4, 2, 16, 7);
  assert.equal(await c1.prefix.save(short), true);

  // restart
  const c2 = await openCaches(dir, FP);
  assert.equal(c2.opened.prefix.entries, 2);
  assert.deepEqual(c2.prefix.list().map((x) => x.tokenCount).sort((a, b) => a - b), [100, 2048]);
  const loaded = await c2.prefix.load(system);
  assert.ok(loaded);
  assert.deepEqual(loaded.tokens, system);
  assert.equal(loaded.layers.length, 4);
  for (let i = 0; i < 4; i++) {
    const l: LoadedPrefixKvLayer = loaded.layers[i];
    assert.ok(l.keys instanceof Float32Array);
    assert.deepEqual(l.shape, [1, 2, 2048, 16]);
    assert.deepEqual(l.keys, e.layers[i].keys);
    assert.deepEqual(l.values, e.layers[i].values);
  }
  // a new turn: same system prompt + new user text
  const prompt = [...system, 5, 6, 7];
  assert.deepEqual(c2.prefix.findLongestPrefix(prompt), { tokens: system, commonTokens: 2048 });
  // a prompt diverging inside the stored prefix: partial reuse of the longest match
  const diverging = [...range(1000, 500), 1, 2, 3];
  const best = c2.prefix.findLongestPrefix(diverging);
  assert.equal(best?.commonTokens, 500);
  assert.equal(c2.prefix.findLongestPrefix([1, 2, 3]), null);
  assert.equal(c2.prefix.findLongestPrefix(diverging, 1000), null, 'minTokens');
  const got = await c2.prefix.loadLongestPrefix(prompt);
  assert.equal(got?.commonTokens, 2048);
  assert.equal(got?.entry.tokens.length, 2048);
  // exact-only load
  assert.equal(await c2.prefix.load(range(1000, 2047)), null);
});

test('malformed entries are refused, not written', async (t) => {
  const dir = await makeTempDir(t);
  const c = await openCaches(dir, FP);
  const e = synthetic(range(1, 8), 1);
  const bad: [string, PrefixKvEntry][] = [
    ['no tokens', { ...e, tokens: [] }],
    ['negative token', { ...e, tokens: [-1, ...e.tokens.slice(1)] }],
    ['no layers', { ...e, layers: [] }],
    ['shape does not match bytes', { ...e, layers: [{ ...e.layers[0], shape: [1, 2, 9, 16] }] }],
    ['unknown dtype', { ...e, layers: [{ ...e.layers[0], dtype: 'complex64' }] }],
    ['not a typed array', { ...e, layers: [{ ...e.layers[0], keys: [1, 2, 3] as unknown as Float32Array }] }],
  ];
  for (const [label, entry] of bad) assert.equal(await c.prefix.save(entry), false, label);
  assert.deepEqual(await readdir(path.join(dir, 'cache', 'prefix-kv')), []);
});

test('corrupt prefix files: truncated → quarantined at startup; flipped payload → miss on load, quarantined; service continues', async (t) => {
  const dir = await makeTempDir(t);
  const c1 = await openCaches(dir, FP);
  const a = range(1, 300);
  const b = range(5000, 300);
  await c1.prefix.save(synthetic(a));
  await c1.prefix.save(synthetic(b));
  const kvDir = path.join(dir, 'cache', 'prefix-kv');
  const files = (await readdir(kvDir)).sort();
  assert.equal(files.length, 2);
  // find which file is which through a fresh listing: damage the file of `a` by truncation, `b` by a flip
  const sizes = await Promise.all(files.map(async (f) => (await readFile(path.join(kvDir, f))).length));
  const fileOf = async (tokens: number[]) => {
    for (const f of files) {
      const buf = await readFile(path.join(kvDir, f));
      const meta = JSON.parse(buf.subarray(120, 120 + buf.readUInt32LE(12)).toString());
      if (meta.data.tokens[0] === tokens[0]) return f;
    }
    throw new Error('not found');
  };
  const fa = await fileOf(a);
  const fb = await fileOf(b);
  await truncate(path.join(kvDir, fa), Math.floor(sizes[0] / 2));
  const bb = await readFile(path.join(kvDir, fb));
  bb[bb.length - 1000] ^= 0x01;
  await writeFile(path.join(kvDir, fb), bb);

  const degradation = new Degradation();
  const c2 = await openCaches(dir, FP, degradation);
  assert.equal(c2.opened.prefix.corrupt, 1, 'truncation found by the startup scan');
  assert.deepEqual(c2.corruptions(), { truncated: 1 });
  assert.equal(c2.prefix.findLongestPrefix(a), null);
  assert.equal(c2.prefix.list().length, 1, 'the flipped one passes the structure scan');
  assert.equal(await c2.prefix.load(b), null, 'checksum catches it on load');
  await c2.flush();
  assert.deepEqual(c2.corruptions(), { truncated: 1, checksum: 1 });
  assert.equal((await c2.quarantine.list()).length, 2);
  assert.deepEqual(await readdir(kvDir), []);
  assert.equal(degradation.status().state, 'normal', 'two corrupt files do not disable the cache');
  // and it keeps working
  assert.equal(await c2.prefix.save(synthetic(a)), true);
  assert.ok(await c2.prefix.load(a));
});

test('isolation: another model does not load it; another chat template does', async (t) => {
  const dir = await makeTempDir(t);
  const c1 = await openCaches(dir, FP);
  const toks = range(1, 64);
  await c1.prefix.save(synthetic(toks));
  const otherModel = await openCaches(dir, { ...FP, model: 'model-fp-B' });
  assert.equal(otherModel.opened.prefix.foreign, 1);
  assert.equal(otherModel.prefix.findLongestPrefix(toks), null);
  assert.equal(await otherModel.prefix.load(toks), null);
  const otherTemplate = await openCaches(dir, { ...FP, template: 'tpl-fp-2' });
  assert.ok(await otherTemplate.prefix.load(toks), 'KV depends on tokens and weights, not on the template');
});
