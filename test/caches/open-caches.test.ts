// Starting over a damaged cache directory: openCaches never throws for bad files. It removes stray
// temp files, quarantines every corrupt entry (counted by reason), keeps the good ones, and comes
// up serving — degraded (cache bypassed) when the damage is widespread, recovering through probes.
// Only an unusable data directory is an error, reported without any path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readdir, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { openCaches } from '../../main/caches/index.ts';
import { ApiError } from '../../main/common/errors.ts';
import { Degradation } from '../../main/hardening/degradation.ts';
import type { CachedResponse, ResponseCacheRequest } from '../../main/caches/response-cache.ts';
import { makeTempDir, FP } from './helpers.ts';

const req = (i: number): ResponseCacheRequest => ({ route: 'completions', prompt: `p${i}`, sampling: { temperature: 0, maxTokens: 4 } });
const val = (i: number): CachedResponse => ({ text: `r${i}`, finishReason: 'stop', stopReason: 'eos', promptTokens: 2, completionTokens: 1 });

test('a widely corrupt cache: starts, quarantines, keeps good entries, degraded then recovers', async (t) => {
  const dir = await makeTempDir(t);
  const c1 = await openCaches(dir, FP, undefined, { response: { enabled: true } });
  for (let i = 0; i < 3; i++) await c1.response.set(c1.response.keyFor(req(i))!, val(i));
  const rdir = path.join(dir, 'cache', 'response');
  // damage of every kind, as after a disk fault
  await writeFile(path.join(rdir, `${'1'.repeat(40)}.entry`), '');
  await writeFile(path.join(rdir, `${'2'.repeat(40)}.entry`), 'MXBC');
  await writeFile(path.join(rdir, `${'3'.repeat(40)}.entry`), Buffer.alloc(4096, 0xff));
  await writeFile(path.join(rdir, `${'4'.repeat(40)}.entry`), '{"garbage": true}');
  const absurd = Buffer.alloc(200);
  absurd.write('MXBC', 0, 'latin1');
  absurd.writeUInt16LE(1, 4);
  absurd.writeUInt8(1, 6);
  absurd.writeUInt32LE(128, 8);
  absurd.writeUInt32LE(0, 12);
  absurd.writeBigUInt64LE(0xfffffff0n, 16);
  await writeFile(path.join(rdir, `${'5'.repeat(40)}.entry`), absurd);
  await writeFile(path.join(rdir, `${'6'.repeat(40)}.entry`), Buffer.from([0xc3, 0x28, 0xa0, 0xa1]));
  await writeFile(path.join(rdir, `.${'7'.repeat(40)}.entry.2147483000.abcdefabcdef.tmp`), 'torn');
  await mkdir(path.join(dir, 'cache', 'prefix-kv'), { recursive: true });
  await writeFile(path.join(dir, 'cache', 'prefix-kv', `${'8'.repeat(40)}.entry`), 'MXBC\x01\x00\x02\x00');

  let now = 1_700_000_000_000;
  const degradation = new Degradation({ now: () => now, cacheCooldownMs: 30_000 });
  const caches = await openCaches(dir, FP, degradation, { response: { enabled: true }, now: () => now });
  assert.equal(caches.opened.response.corrupt, 6);
  assert.equal(caches.opened.response.entries, 3);
  assert.equal(caches.opened.response.strayTempsRemoved, 1);
  assert.equal(caches.opened.prefix.corrupt, 1);
  assert.deepEqual(caches.corruptions(), { empty: 1, truncated: 2, bad_magic: 3, absurd_length: 1 });
  assert.equal((await readdir(rdir)).length, 3, 'only the good entries remain');
  assert.equal((await caches.quarantine.list()).length, 7);

  // degraded but serving: the cache is bypassed, nothing throws, admission is open
  const s = degradation.status();
  assert.equal(s.state, 'cache_disabled');
  assert.equal(s.cache_enabled, false);
  assert.equal(degradation.admission(), null);
  assert.equal(await caches.response.get(caches.response.keyFor(req(0))!), null);

  // after the cooldown probes read the good entries and write new ones; 10 successes re-enable
  now += 30_000;
  for (let i = 0; i < 3; i++) assert.deepEqual(await caches.response.get(caches.response.keyFor(req(i))!), val(i));
  for (let i = 3; i < 10; i++) assert.equal(await caches.response.set(caches.response.keyFor(req(i))!, val(i)), true);
  assert.equal(degradation.status().state, 'normal');
  assert.deepEqual(caches.stats().corruptions, caches.corruptions());
});

test('a few corrupt files are counted and quarantined without disabling the cache', async (t) => {
  const dir = await makeTempDir(t);
  const rdir = path.join(dir, 'cache', 'response');
  await mkdir(rdir, { recursive: true });
  await writeFile(path.join(rdir, `${'a'.repeat(40)}.entry`), '');
  await writeFile(path.join(rdir, `${'b'.repeat(40)}.entry`), 'nope');
  const degradation = new Degradation();
  const caches = await openCaches(dir, FP, degradation, { response: { enabled: true } });
  assert.deepEqual(caches.corruptions(), { empty: 1, bad_magic: 1 });
  assert.equal(degradation.status().state, 'normal');
  const k = caches.response.keyFor(req(1))!;
  assert.equal(await caches.response.set(k, val(1)), true);
  assert.deepEqual(await caches.response.get(k), val(1));
});

test('an unusable data directory is an ApiError naming no path', async (t) => {
  const dir = await makeTempDir(t);
  const file = path.join(dir, 'not-a-dir');
  await writeFile(file, 'x');
  await assert.rejects(openCaches(file, FP), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'cache_error');
    assert.doesNotMatch(err.message, /not-a-dir|\/tmp\/|mlxbar-cache/);
    assert.match(err.message, /cache directory/);
    return true;
  });
  // `cache` itself being a file
  const d2 = path.join(dir, 'd2');
  await mkdir(d2);
  await writeFile(path.join(d2, 'cache'), 'x');
  await assert.rejects(openCaches(d2, FP), (err: unknown) => err instanceof ApiError && err.code === 'cache_error');
});

test('split opening: the engine process opens only prefix-kv, the server only the response cache', async (t) => {
  const dir = await makeTempDir(t);
  const { openPrefixStore, openResponseCache } = await import('../../main/caches/index.ts');
  const engineSide = await openPrefixStore(dir, { model: FP.model, engine: FP.engine });
  const layer = { keys: new Float32Array(8).fill(1), values: new Float32Array(8).fill(2), shape: [1, 1, 2, 4], dtype: 'float32' };
  assert.equal(await engineSide.prefix.save({ tokens: [1, 2], layers: [layer] }), true);
  const serverSide = await openResponseCache(dir, FP, new Degradation(), { response: { enabled: true } });
  const k = serverSide.response.keyFor(req(1))!;
  assert.equal(await serverSide.response.set(k, val(1)), true);
  // each sees its own entries after a restart
  const e2 = await openPrefixStore(dir, { model: FP.model, engine: FP.engine });
  assert.equal(e2.opened.entries, 1);
  assert.deepEqual(Array.from((await e2.prefix.load([1, 2]))!.layers[0].values), Array(8).fill(2));
  const s2 = await openResponseCache(dir, FP, undefined, { response: { enabled: true } });
  assert.deepEqual(await s2.response.get(k), val(1));
});
