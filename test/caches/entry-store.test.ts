// EntryStore against real files in a temp dir: damaged entries are a miss, moved to quarantine and
// counted by reason, and the cache keeps working for the same key; foreign (other version/model)
// entries are misses left in place; forced hash collisions are caught by the stored key; budgets
// hold under a flood with the newest entry never evicted; quarantine is bounded; a new instance on
// the same directory (restart) hits; stray temp files are removed at open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, truncate, stat } from 'node:fs/promises';
import path from 'node:path';
import { EntryStore, type EntryStoreOptions } from '../../main/caches/entry-store.ts';
import { Quarantine } from '../../main/caches/quarantine.ts';
import { nodeFs } from '../../main/common/atomic-write.ts';
import { FIXED_HEADER_BYTES, encodeEntryChunks } from '../../main/caches/entry-file.ts';
import { makeTempDir } from './helpers.ts';

function makeStore(root: string, extra: Partial<EntryStoreOptions> = {}, q?: Quarantine) {
  const quarantine = q ?? new Quarantine(path.join(root, 'quarantine'), nodeFs, { maxFiles: 50 });
  const store = new EntryStore({
    dir: path.join(root, 'response'),
    kind: 'response',
    compat: { model: 'm1', engine: 'e1' },
    maxBytes: 10 * 1024 * 1024,
    maxEntries: 1000,
    quarantine,
    ...extra,
  });
  return { store, quarantine };
}

async function fresh(t: Parameters<typeof makeTempDir>[0], extra: Partial<EntryStoreOptions> = {}) {
  const root = await makeTempDir(t);
  await nodeFs.mkdir(path.join(root, 'quarantine'), { recursive: true });
  const s = makeStore(root, extra);
  await s.store.open();
  return { root, ...s };
}

const payloadFor = (i: number, n = 2000) => Buffer.alloc(n, i & 0xff);

async function entryFiles(root: string): Promise<string[]> {
  return (await readdir(path.join(root, 'response'))).filter((n) => n.endsWith('.entry'));
}

test('set/get round trip; file names are hashes, never the key text', async (t) => {
  const { root, store } = await fresh(t);
  const key = 'What is in /etc/passwd? ../../x';
  assert.equal(await store.set(key, payloadFor(1), { hello: 'world' }), true);
  const got = await store.get(key);
  assert.ok(got);
  assert.deepEqual(got.payload, payloadFor(1));
  assert.deepEqual(got.data, { hello: 'world' });
  const files = await entryFiles(root);
  assert.equal(files.length, 1);
  assert.match(files[0], /^[0-9a-f]{40}\.entry$/);
  assert.equal(await store.get('another key'), null);
});

const damages: [string, (p: string, headerLen: number, size: number) => Promise<void>, string][] = [
  ['empty file', (p) => truncate(p, 0), 'empty'],
  ['truncated in header', (p) => truncate(p, 60), 'truncated'],
  ['truncated in metadata', (p) => truncate(p, FIXED_HEADER_BYTES + 4), 'truncated'],
  ['truncated in payload', (p, h) => truncate(p, h + 1000), 'truncated'],
  ['truncated in trailer', (p, _h, size) => truncate(p, size - 2), 'truncated'],
  ['flipped header byte', (p) => flip(p, 40), 'checksum'],
  ['flipped magic', (p) => flip(p, 0), 'bad_magic'],
  ['flipped payload byte', (p, h) => flip(p, h + 777), 'checksum'],
  ['flipped trailer byte', (p, _h, size) => flip(p, size - 4), 'bad_trailer'],
  ['absurd length 0xFFFFFFF0', (p) => patch(p, (b) => b.writeBigUInt64LE(0xfffffff0n, 16)), 'absurd_length'],
  ['garbage instead of an entry', (p) => writeFile(p, '{"not": "an entry"'), 'bad_magic'],
  // checksummed entries whose metadata is not valid (a buggy writer, not a disk fault)
  ['garbage JSON metadata', (p) => writeFile(p, Buffer.concat(encodeEntryChunks({ kind: 'response', key: 'x', compat: {}, data: null }, payloadFor(1), Buffer.from('{"format":1,')))), 'invalid_json'],
  ['invalid UTF-8 metadata', (p) => writeFile(p, Buffer.concat(encodeEntryChunks({ kind: 'response', key: 'x', compat: {}, data: null }, payloadFor(1), Buffer.from([0x22, 0xff, 0xfe, 0x22])))), 'invalid_utf8'],
];

async function flip(p: string, off: number) {
  await patch(p, (b) => (b[off] ^= 0x55));
}
async function patch(p: string, fn: (b: Buffer) => void) {
  const b = await readFile(p);
  fn(b);
  await writeFile(p, b);
}

for (const [label, damage, reason] of damages) {
  test(`damaged entry (${label}) → miss, quarantined as ${reason}, counted, then set/get works`, async (t) => {
    const { root, store, quarantine } = await fresh(t);
    const key = `key-${label}`;
    assert.equal(await store.set(key, payloadFor(7, 3000), { v: 1 }), true);
    const [file] = await entryFiles(root);
    const p = path.join(root, 'response', file);
    const bytes = await readFile(p);
    await damage(p, bytes.readUInt32LE(8), bytes.length);

    assert.equal(await store.get(key), null);
    await store.flush();
    assert.deepEqual(await entryFiles(root), [], 'moved out of the cache directory');
    const q = await quarantine.list();
    assert.equal(q.length, 1);
    assert.equal(q[0].reason, reason);
    assert.deepEqual(store.stats().corruptions, { [reason]: 1 });
    assert.deepEqual(quarantine.corruptions(), { [reason]: 1 });
    // a second get does not count it again
    assert.equal(await store.get(key), null);
    assert.deepEqual(store.stats().corruptions, { [reason]: 1 });
    // the cache keeps working for the same key
    assert.equal(await store.set(key, payloadFor(8, 3000), { v: 2 }), true);
    const got = await store.get(key);
    assert.ok(got);
    assert.deepEqual(got.data, { v: 2 });
    assert.deepEqual(got.payload, payloadFor(8, 3000));
  });
}

test('other model / other format version: miss, not quarantined, evicted first by budget', async (t) => {
  const root = await makeTempDir(t);
  const a = makeStore(root);
  await a.store.open();
  await a.store.set('k-model', payloadFor(1), null);
  await a.store.set('k-version', payloadFor(2), null);
  // bump the format version of the second file (as a future release would write it)
  const files = await entryFiles(root);
  for (const f of files) {
    const p = path.join(root, 'response', f);
    const b = await readFile(p);
    const meta = JSON.parse(b.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + b.readUInt32LE(12)).toString());
    if (meta.key === 'k-version') await patch(p, (x) => x.writeUInt16LE(2, 4));
  }
  // same dir, other model
  const b = makeStore(root, { compat: { model: 'm2', engine: 'e1' } });
  const report = await b.store.open();
  assert.equal(report.foreign, 2);
  assert.equal(report.corrupt, 0);
  assert.equal(await b.store.get('k-model'), null);
  assert.equal(await b.store.get('k-version'), null);
  assert.equal((await entryFiles(root)).length, 2, 'left in place');
  assert.deepEqual(b.store.stats().corruptions, {});
  assert.equal(b.store.stats().foreignEntries, 2);
  // the original model still reads its own entry; the version-bumped one is a miss for it too
  const a2 = makeStore(root);
  await a2.store.open();
  assert.ok(await a2.store.get('k-model'));
  assert.equal(await a2.store.get('k-version'), null);
  // budget pressure evicts foreign entries before own ones
  const c = makeStore(root, { compat: { model: 'm2', engine: 'e1' }, maxEntries: 2 });
  await c.store.open();
  assert.equal((await entryFiles(root)).length, 2);
  await c.store.set('mine', payloadFor(3), null);
  assert.equal((await entryFiles(root)).length, 2);
  assert.ok(await c.store.get('mine'));
});

test('forced file-name hash collision → stored key mismatch → miss, never the wrong entry', async (t) => {
  const { store } = await fresh(t, { fileNameHash: () => 'deadbeefdeadbeef' });
  await store.set('first key', payloadFor(1), { who: 'first' });
  assert.equal(await store.get('second key'), null);
  assert.equal(store.stats().collisions, 1);
  assert.deepEqual((await store.get('first key'))?.data, { who: 'first' });
  // the second key takes the slot over
  await store.set('second key', payloadFor(2), { who: 'second' });
  assert.deepEqual((await store.get('second key'))?.data, { who: 'second' });
  assert.equal(await store.get('first key'), null);
  assert.deepEqual(store.stats().corruptions, {});
  // an injected hash cannot produce a path
  const bad = makeStore(path.join(store.dir, '..'), { fileNameHash: () => '../../etc/passwd' });
  assert.equal(await bad.store.set('x', payloadFor(1), null), false);
});

test('entry-count budget under a flood: bounded, newest always present, LRU keeps what is used', async (t) => {
  const { root, store } = await fresh(t, { maxEntries: 5 });
  await store.set('hot', payloadFor(0), null);
  for (let i = 0; i < 60; i++) {
    assert.equal(await store.set(`k${i}`, payloadFor(i), null), true);
    assert.ok(await store.get(`k${i}`), 'the entry just written is present');
    assert.ok(await store.get('hot'), 'recently used entry survives');
    assert.ok(store.stats().entries <= 5);
  }
  assert.equal((await entryFiles(root)).length, 5);
  assert.ok(store.stats().evictions >= 55);
});

test('byte budget: bounded under a flood; a big new entry evicts others but never itself; too big is refused', async (t) => {
  const { root, store } = await fresh(t, { maxBytes: 40_000 });
  for (let i = 0; i < 100; i++) {
    await store.set(`k${i}`, payloadFor(i, 1000 + (i % 7) * 900), null);
    assert.ok(store.stats().bytes <= 40_000);
    assert.ok(store.has(`k${i}`));
  }
  let onDisk = 0;
  for (const f of await entryFiles(root)) onDisk += (await stat(path.join(root, 'response', f))).size;
  assert.equal(onDisk, store.stats().bytes, 'index agrees with the directory');
  assert.ok(onDisk <= 40_000);
  assert.equal(await store.set('big', payloadFor(1, 35_000), null), true);
  assert.ok(await store.get('big'));
  assert.ok(store.stats().bytes <= 40_000);
  assert.equal(await store.set('too big', payloadFor(1, 50_000), null), false);
  assert.equal(store.stats().rejectedTooLarge, 1);
});

test('quarantine stays within its file and byte caps (oldest dropped)', async (t) => {
  const root = await makeTempDir(t);
  const q = new Quarantine(path.join(root, 'quarantine'), nodeFs, { maxFiles: 3, maxBytes: 1_000_000 });
  await nodeFs.mkdir(q.dir, { recursive: true });
  const { store } = makeStore(root, {}, q);
  await store.open();
  for (let i = 0; i < 10; i++) {
    await store.set(`k${i}`, payloadFor(i), null);
  }
  for (let i = 0; i < 10; i++) {
    await flip(path.join(root, 'response', store.fileNameFor(`k${i}`)), 200);
    assert.equal(await store.get(`k${i}`), null);
    await store.flush();
  }
  const list = await q.list();
  assert.equal(list.length, 3);
  assert.equal(store.stats().corruptions.checksum, 10);
  // byte cap
  const q2 = new Quarantine(path.join(root, 'quarantine'), nodeFs, { maxFiles: 100, maxBytes: 5000 });
  await q2.trim();
  const total = (await q2.list()).reduce((s, f) => s + f.size, 0);
  assert.ok(total <= 5000, `quarantine bytes ${total}`);
});

test('restart: a new instance on the same directory hits, and keeps the LRU order', async (t) => {
  const root = await makeTempDir(t);
  await nodeFs.mkdir(path.join(root, 'quarantine'), { recursive: true });
  const a = makeStore(root);
  await a.store.open();
  for (let i = 0; i < 4; i++) {
    await a.store.set(`k${i}`, payloadFor(i), { i });
    await new Promise((r) => setTimeout(r, 15)); // distinct mtimes
  }
  assert.ok(await a.store.get('k0')); // k0 becomes most recently used (mtime bumped)
  await new Promise((r) => setTimeout(r, 50)); // let the best-effort utimes land
  const b = makeStore(root, { maxEntries: 3 });
  const rep = await b.store.open();
  assert.equal(rep.corrupt, 0);
  // budget of 3 applied at open evicts the least recently used: k1
  assert.equal(await b.store.get('k1'), null);
  for (const k of ['k0', 'k2', 'k3']) assert.deepEqual((await b.store.get(k))?.data, { i: Number(k.slice(1)) });
});

test('stray temp files of dead writers are removed at open; unknown files are left alone', async (t) => {
  const root = await makeTempDir(t);
  const dir = path.join(root, 'response');
  await nodeFs.mkdir(dir, { recursive: true });
  await nodeFs.mkdir(path.join(root, 'quarantine'), { recursive: true });
  await writeFile(path.join(dir, '.abc.entry.2147483000.0123456789ab.tmp'), 'partial');
  await writeFile(path.join(dir, 'README.txt'), 'not ours');
  const { store } = makeStore(root);
  const rep = await store.open();
  assert.equal(rep.strayTempsRemoved, 1);
  assert.deepEqual((await readdir(dir)).sort(), ['README.txt']);
});

test('single writer: concurrent writes of one key leave one valid entry; the queue is bounded; concurrent reads of a damaged file count once', async (t) => {
  const { root, store } = await fresh(t, { maxPendingWrites: 8 });
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.set('same', payloadFor(i, 50_000), { i })));
  assert.equal(results.filter(Boolean).length, 8, 'writes beyond the queue bound are dropped, not buffered');
  assert.equal(store.stats().droppedWrites, 12);
  const got = await store.get('same');
  assert.ok(got);
  assert.deepEqual(got.payload, payloadFor((got.data as { i: number }).i, 50_000));
  assert.equal((await readdir(path.join(root, 'response'))).length, 1, 'no temp files left');
  await flip(path.join(root, 'response', store.fileNameFor('same')), 300);
  const reads = await Promise.all(Array.from({ length: 5 }, () => store.get('same')));
  assert.ok(reads.every((r) => r === null));
  await store.flush();
  assert.deepEqual(store.stats().corruptions, { checksum: 1 });
});

test('quarantine directory removed while running: recreated, the corrupt file still moves', async (t) => {
  const { root, store, quarantine } = await fresh(t);
  await store.set('k', payloadFor(1), null);
  await (await import('node:fs/promises')).rm(quarantine.dir, { recursive: true });
  await flip(path.join(root, 'response', store.fileNameFor('k')), 500);
  assert.equal(await store.get('k'), null);
  await store.flush();
  assert.equal((await quarantine.list()).length, 1);
  assert.deepEqual(await entryFiles(root), []);
});
