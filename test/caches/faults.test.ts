// Disk faults drive the one degradation machine: repeated ENOSPC on write or EIO on read opens the
// cache circuit after 5 consecutive errors; while open the caches do no disk I/O at all (requests
// bypass them); after the cooldown probes go through; a failed probe doubles the cooldown; once the
// fault is gone 10 successful operations close the circuit. Nothing ever throws to the caller, and
// a failed write leaves no temp file and keeps the previous entry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { openCaches } from '../../main/caches/index.ts';
import type { CachedResponse, ResponseCacheRequest } from '../../main/caches/response-cache.ts';
import { Degradation } from '../../main/hardening/degradation.ts';
import { makeTempDir, faultyFs, FP } from './helpers.ts';

function req(i: number): ResponseCacheRequest {
  return { route: 'chat', promptIds: [1, 2, 3, i], sampling: { temperature: 0, maxTokens: 16 } };
}
const value = (i: number): CachedResponse => ({ text: `answer ${i}`, finishReason: 'stop', stopReason: 'eos', promptTokens: 4, completionTokens: 2 });

async function setup(t: Parameters<typeof makeTempDir>[0]) {
  const dir = await makeTempDir(t);
  let now = 1_700_000_000_000;
  const degradation = new Degradation({ now: () => now, cacheCooldownMs: 10_000, cacheMaxCooldownMs: 60_000 });
  const ffs = faultyFs();
  const caches = await openCaches(dir, FP, degradation, { fs: ffs.fs, response: { enabled: true }, now: () => now });
  return { dir, degradation, ffs, caches, advance: (ms: number) => (now += ms) };
}

test('ENOSPC ×5 → cache_disabled, bypassed without disk I/O, probes after cooldown, recovery after 10 successes', async (t) => {
  const { dir, degradation, ffs, caches, advance } = await setup(t);
  const rc = caches.response;
  const k0 = rc.keyFor(req(0))!;
  assert.equal(await rc.set(k0, value(0)), true, 'healthy write');

  ffs.faults.write = 'ENOSPC';
  for (let i = 1; i <= 4; i++) assert.equal(await rc.set(rc.keyFor(req(i))!, value(i)), false);
  assert.equal(degradation.status().state, 'normal');
  assert.equal(await rc.set(rc.keyFor(req(5))!, value(5)), false);
  assert.equal(degradation.status().state, 'cache_disabled');
  assert.equal(degradation.status().cache_enabled, false);
  // failed writes left no temp files and the earlier entry is intact on disk
  const files = await readdir(path.join(dir, 'cache', 'response'));
  assert.equal(files.filter((f) => f.endsWith('.tmp')).length, 0);
  assert.equal(files.length, 1);

  // bypassed: no disk I/O at all, no throw, misses
  const callsBefore = ffs.total();
  for (let i = 0; i < 20; i++) {
    assert.equal(await rc.get(rc.keyFor(req(i))!), null);
    assert.equal(await rc.set(rc.keyFor(req(100 + i))!, value(i)), false);
  }
  assert.equal(ffs.total(), callsBefore, 'no fs call while the circuit is open');
  assert.ok(rc.stats().bypassed >= 40);
  assert.equal(degradation.admission(), null, 'requests are still admitted');

  // cooldown elapsed, fault persists → one probe fails → cooldown doubles
  advance(10_000);
  assert.equal(await rc.set(rc.keyFor(req(200))!, value(200)), false);
  assert.equal(degradation.detail().circuit, 'open');
  assert.equal(degradation.detail().cooldownMs, 20_000);
  advance(10_000);
  const c2 = ffs.total();
  assert.equal(await rc.set(rc.keyFor(req(201))!, value(201)), false);
  assert.equal(ffs.total(), c2, 'still within the doubled cooldown: no probe');

  // fault cleared: after the cooldown 10 successful operations close the circuit
  ffs.faults.write = null;
  advance(10_000);
  for (let i = 0; i < 9; i++) assert.equal(await rc.set(rc.keyFor(req(300 + i))!, value(300 + i)), true);
  assert.equal(degradation.status().state, 'cache_disabled');
  assert.equal(await rc.set(rc.keyFor(req(309))!, value(309)), true);
  assert.equal(degradation.status().state, 'normal');
  assert.equal(degradation.status().cache_enabled, true);
  assert.deepEqual(await rc.get(k0), value(0));
  assert.deepEqual(await rc.get(rc.keyFor(req(305))!), value(305));
});

test('EIO on reads ×5 → cache_disabled; reads never throw; entries intact once the disk recovers', async (t) => {
  const { degradation, ffs, caches, advance } = await setup(t);
  const rc = caches.response;
  const keys = Array.from({ length: 6 }, (_, i) => rc.keyFor(req(i))!);
  for (let i = 0; i < 6; i++) assert.equal(await rc.set(keys[i], value(i)), true);
  // a fresh instance has an empty memory LRU, so reads hit the disk
  const caches2 = await openCaches(path.dirname(path.dirname(caches.quarantine.dir)), FP, degradation, { fs: ffs.fs, response: { enabled: true } });
  ffs.faults.read = 'EIO';
  for (let i = 0; i < 5; i++) assert.equal(await caches2.response.get(keys[i]), null);
  assert.equal(degradation.status().state, 'cache_disabled');
  assert.match(degradation.detail().lastCacheError ?? '', /EIO/);
  assert.doesNotMatch(degradation.detail().lastCacheError ?? '', /\/home\//);
  assert.deepEqual(caches2.corruptions(), {}, 'I/O errors are not corruption');
  ffs.faults.read = null;
  advance(10_000);
  for (let i = 0; i < 6; i++) assert.deepEqual(await caches2.response.get(keys[i]), value(i));
  assert.equal(degradation.detail().circuit, 'half_open', '6 successes so far');
  for (let i = 0; i < 4; i++) await caches2.response.get(keys[i]); // memory hits do not count as probes
  assert.equal(degradation.detail().circuit, 'half_open');
  for (let i = 6; i < 10; i++) await caches2.response.set(rc.keyFor(req(i))!, value(i));
  assert.equal(degradation.status().state, 'normal');
});
