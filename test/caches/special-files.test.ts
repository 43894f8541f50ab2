// Files the caches did not write: a FIFO or a symlink named like an entry must not stop the server
// from starting (a FIFO used to block the startup scan forever), and quarantine trimming must only
// ever delete quarantine files the cache itself made, never through a symlinked quarantine folder.
// Real FIFOs (mkfifo), real symlinks, real files outside the data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, symlink, writeFile, lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { openCaches } from '../../main/caches/index.ts';
import type { CachedResponse, ResponseCacheRequest } from '../../main/caches/response-cache.ts';
import { makeTempDir, FP } from './helpers.ts';

const req = (i: number): ResponseCacheRequest => ({ route: 'completions', prompt: `p${i}`, sampling: { temperature: 0, maxTokens: 4 } });
const val = (i: number): CachedResponse => ({ text: `r${i}`, finishReason: 'stop', stopReason: 'eos', promptTokens: 2, completionTokens: 1 });

/** Resolves with the value, or with 'timed out' if the promise hangs (a blocked open of a FIFO). */
function orHang<T>(p: Promise<T>, ms = 20_000): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout;
  return Promise.race([p.finally(() => clearTimeout(timer)), new Promise<'timed out'>((r) => (timer = setTimeout(() => r('timed out'), ms)))]);
}

test('a FIFO and a symlink named like entries: the caches open, skip them, and leave them alone', async (t) => {
  const dir = await makeTempDir(t);
  const outside = await makeTempDir(t, 'mlxbar-outside-');
  const c1 = await openCaches(dir, FP, undefined, { response: { enabled: true } });
  await c1.response.set(c1.response.keyFor(req(1))!, val(1));
  await c1.flush(2000);
  for (const kind of ['response', 'prefix-kv']) {
    const d = path.join(dir, 'cache', kind);
    execFileSync('mkfifo', [path.join(d, `${'a'.repeat(40)}.entry`)]);
    execFileSync('mkfifo', [path.join(d, 'anything.entry')]);
    await writeFile(path.join(outside, `${kind}.secret`), 'not a cache file');
    await symlink(path.join(outside, `${kind}.secret`), path.join(d, `${'b'.repeat(40)}.entry`));
  }
  const opened = await orHang(openCaches(dir, FP, undefined, { response: { enabled: true } }));
  assert.notEqual(opened, 'timed out', 'opening the caches must not block on a FIFO');
  const caches = opened as Awaited<ReturnType<typeof openCaches>>;
  // the good entry is still served; the special files were neither counted as ours nor moved
  assert.deepEqual(await caches.response.get(caches.response.keyFor(req(1))!), val(1));
  assert.equal(caches.opened.response.entries, 1);
  for (const kind of ['response', 'prefix-kv']) {
    const d = path.join(dir, 'cache', kind);
    assert.ok((await lstat(path.join(d, `${'a'.repeat(40)}.entry`))).isFIFO());
    assert.ok((await lstat(path.join(d, `${'b'.repeat(40)}.entry`))).isSymbolicLink());
    assert.equal(await readFile(path.join(outside, `${kind}.secret`), 'utf8'), 'not a cache file');
  }
  assert.deepEqual(await caches.quarantine.list(), []);
  await caches.flush(2000);
});

test('a symlinked quarantine folder: trimming deletes nothing outside the data dir', async (t) => {
  const dir = await makeTempDir(t);
  const victim = await makeTempDir(t, 'mlxbar-victim-');
  // 40 unrelated files, some even named like quarantine files
  for (let i = 0; i < 30; i++) await writeFile(path.join(victim, `photo-${i}.jpg`), 'x'.repeat(1000));
  for (let i = 0; i < 10; i++) await writeFile(path.join(victim, `${'c'.repeat(40)}.entry.${String(1e15 + i)}.checksum`), 'y');
  await mkdir(path.join(dir, 'cache'), { recursive: true });
  await symlink(victim, path.join(dir, 'cache', 'quarantine'));
  // corrupt entries so that quarantine has work to do, more than its file budget
  await mkdir(path.join(dir, 'cache', 'response'), { recursive: true });
  for (let i = 0; i < 6; i++) await writeFile(path.join(dir, 'cache', 'response', `${String(i).repeat(40)}.entry`), 'MXBC');
  const caches = await openCaches(dir, FP, undefined, { response: { enabled: true }, quarantine: { maxFiles: 2 } });
  await caches.flush(2000);
  assert.equal((await readdir(victim)).length, 40, 'every unrelated file is still there');
  assert.equal(caches.opened.response.corrupt, 6, 'the corruptions are still counted');
});

test('quarantine trimming touches only its own files in a real quarantine folder', async (t) => {
  const dir = await makeTempDir(t);
  const q = path.join(dir, 'cache', 'quarantine');
  await mkdir(q, { recursive: true });
  await writeFile(path.join(q, 'notes.txt'), 'mine, not the cache');
  await writeFile(path.join(q, 'x.0000000000000001.checksum'), 'not a name the cache makes');
  await mkdir(path.join(dir, 'cache', 'response'), { recursive: true });
  for (let i = 0; i < 5; i++) await writeFile(path.join(dir, 'cache', 'response', `${String(i).repeat(40)}.entry`), 'MXBC');
  const caches = await openCaches(dir, FP, undefined, { response: { enabled: true }, quarantine: { maxFiles: 2 } });
  await caches.flush(2000);
  const left = (await readdir(q)).sort();
  assert.ok(left.includes('notes.txt'));
  assert.ok(left.includes('x.0000000000000001.checksum'));
  assert.equal(left.filter((n) => /^\d{40}\.entry\.\d{16}\.[a-z_]+$/.test(n)).length, 2, 'own files trimmed to the budget');
});
