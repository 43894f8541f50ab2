// A real crash between write and rename: a child process writes the replacement of an entry to its
// temp file (fsynced), then is SIGKILLed before the rename. At the next open the old entry is intact
// (or, with no old entry, a clean miss), the stray temp file is removed, and the store works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EntryStore } from '../../main/caches/entry-store.ts';
import { Quarantine } from '../../main/caches/quarantine.ts';
import { nodeFs } from '../../main/common/atomic-write.ts';
import { makeTempDir } from './helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');

async function crashWriter(root: string, mode: 'with-old' | 'no-old'): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures/crash-writer.ts'), root, mode], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('crash writer did not get ready: ' + stderr)), 60_000);
      child.stdout.on('data', (d) => {
        if (String(d).includes('READY')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`crash writer exited early (${code}): ${stderr}`));
      });
    });
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  }
}

async function reopen(root: string) {
  const quarantine = new Quarantine(path.join(root, 'quarantine'), nodeFs);
  const store = new EntryStore({ dir: path.join(root, 'response'), kind: 'response', compat: { model: 'm1', engine: 'e1' }, maxBytes: 1 << 24, maxEntries: 100, quarantine });
  const report = await store.open();
  return { store, report };
}

test('SIGKILL between write and rename: old entry intact, stray temp removed at next open', { timeout: 120_000 }, async (t) => {
  const root = await makeTempDir(t);
  await crashWriter(root, 'with-old');
  const before = await readdir(path.join(root, 'response'));
  assert.equal(before.filter((n) => n.endsWith('.tmp')).length, 1, `temp file left by the crash: ${before}`);
  const { store, report } = await reopen(root);
  assert.equal(report.strayTempsRemoved, 1);
  assert.equal(report.corrupt, 0);
  const got = await store.get('k');
  assert.ok(got, 'old entry readable');
  assert.deepEqual(got.data, { version: 1 });
  assert.ok(got.payload.every((b) => b === 1));
  assert.deepEqual((await readdir(path.join(root, 'response'))).filter((n) => n.endsWith('.tmp')), []);
  assert.equal(await store.set('k', Buffer.alloc(10, 3), { version: 3 }), true);
  assert.deepEqual((await store.get('k'))?.data, { version: 3 });
});

test('SIGKILL before the first rename: clean miss, no corruption counted', { timeout: 120_000 }, async (t) => {
  const root = await makeTempDir(t);
  await crashWriter(root, 'no-old');
  const { store, report } = await reopen(root);
  assert.equal(report.strayTempsRemoved, 1);
  assert.equal(await store.get('k'), null);
  assert.deepEqual(store.stats().corruptions, {});
  assert.deepEqual(await readdir(path.join(root, 'response')), []);
});
