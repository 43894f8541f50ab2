// The on-disk entry format against real files: round trip, and every kind of damage at every
// boundary (empty, truncated in header/metadata/payload/trailer, a flipped byte in each region,
// absurd length fields, invalid UTF-8 / JSON metadata). A different version, kind or model is a
// miss, not corruption. Absurd length fields must be rejected before anything is allocated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, truncate } from 'node:fs/promises';
import path from 'node:path';
import {
  compatDigest,
  encodeEntry,
  encodeEntryChunks,
  readEntry,
  FIXED_HEADER_BYTES,
  TRAILER_BYTES,
  type Compat,
  type Expected,
} from '../../main/caches/entry-file.ts';
import { makeTempDir } from './helpers.ts';

const compat: Compat = { model: 'm1', tokenizer: 't1', template: 'c1', engine: 'e1' };
const key = 'a'.repeat(64);
const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
const expected: Expected = { kind: 'response', compatDigest: compatDigest(compat), key };

function build(): Buffer {
  return encodeEntry({ kind: 'response', key, compat, data: { note: 'héllo ✓', n: 3 } }, payload);
}

async function writeAndRead(dir: string, name: string, bytes: Buffer, exp: Expected = expected) {
  const p = path.join(dir, name);
  await writeFile(p, bytes);
  return readEntry(p, exp);
}

test('round trip: header fields, aligned payload, metadata', async (t) => {
  const dir = await makeTempDir(t);
  const bytes = build();
  const headerLen = bytes.readUInt32LE(8);
  assert.equal(headerLen % 16, 0);
  assert.equal(bytes.length, headerLen + payload.length + TRAILER_BYTES);
  const r = await writeAndRead(dir, 'ok.entry', bytes);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.entry.payload, payload);
  assert.equal(r.entry.payload.byteOffset % 16, 0, 'payload is 16-byte aligned in its buffer');
  assert.deepEqual(r.entry.meta.data, { note: 'héllo ✓', n: 3 });
  assert.equal(r.entry.meta.key, key);
  // structure-only read: no payload, same metadata
  const s = await readEntry(path.join(dir, 'ok.entry'), expected, undefined, 'structure');
  assert.ok(s.ok);
  assert.equal(s.entry.payload.length, 0);
  assert.deepEqual(s.entry.meta.data, r.entry.meta.data);
  // the chunked encoding is the same bytes as the single buffer
  const input = { kind: 'response' as const, key, compat, data: { note: 'héllo ✓', n: 3 }, createdAt: r.entry.meta.createdAt };
  assert.deepEqual(Buffer.concat(encodeEntryChunks(input, payload)), encodeEntry(input, payload));
});

test('missing file is a not_found miss', async (t) => {
  const dir = await makeTempDir(t);
  const r = await readEntry(path.join(dir, 'nope.entry'), expected);
  assert.deepEqual(r, { ok: false, kind: 'miss', reason: 'not_found' });
});

test('truncation at every boundary is corrupt: empty or truncated', async (t) => {
  const dir = await makeTempDir(t);
  const bytes = build();
  const headerLen = bytes.readUInt32LE(8);
  const cuts: [string, number, string][] = [
    ['empty', 0, 'empty'],
    ['inside magic', 2, 'truncated'],
    ['inside fixed header', 50, 'truncated'],
    ['end of fixed header', FIXED_HEADER_BYTES, 'truncated'],
    ['inside metadata', FIXED_HEADER_BYTES + 10, 'truncated'],
    ['end of header', headerLen, 'truncated'],
    ['inside payload', headerLen + 500, 'truncated'],
    ['end of payload (no trailer)', headerLen + payload.length, 'truncated'],
    ['inside trailer', bytes.length - 3, 'truncated'],
  ];
  for (const [label, len, reason] of cuts) {
    const p = path.join(dir, `cut-${len}.entry`);
    await writeFile(p, bytes);
    await truncate(p, len);
    const r = await readEntry(p, expected);
    assert.equal(r.ok, false, label);
    assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === reason, `${label}: ${JSON.stringify(r)}`);
  }
  // a file longer than its declared lengths is corrupt too
  const r = await writeAndRead(dir, 'long.entry', Buffer.concat([bytes, Buffer.from('xx')]));
  assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === 'length_mismatch', JSON.stringify(r));
});

test('a flipped byte in each region is detected with a specific reason', async (t) => {
  const dir = await makeTempDir(t);
  const bytes = build();
  const headerLen = bytes.readUInt32LE(8);
  const metaLen = bytes.readUInt32LE(12);
  const flips: [string, number, string][] = [
    ['magic', 1, 'bad_magic'],
    ['kind', 6, 'bad_kind'],
    ['flags', 7, 'bad_kind'],
    ['header_len', 8, 'bad_header'],
    ['meta_len', 13, 'bad_header'],
    ['payload_len low byte', 16, 'length_mismatch'],
    ['payload_len high byte', 23, 'absurd_length'],
    ['compat digest', 30, 'checksum'],
    ['key digest', 60, 'checksum'],
    ['checksum', 100, 'checksum'],
    ['metadata', FIXED_HEADER_BYTES + 5, 'checksum'],
    ['metadata padding', FIXED_HEADER_BYTES + metaLen < headerLen ? headerLen - 1 : FIXED_HEADER_BYTES + metaLen - 1, 'checksum'],
    ['payload first byte', headerLen, 'checksum'],
    ['payload middle', headerLen + 517, 'checksum'],
    ['payload last byte', headerLen + payload.length - 1, 'checksum'],
    ['trailer', bytes.length - 1, 'bad_trailer'],
  ];
  for (const [label, off, reason] of flips) {
    const copy = Buffer.from(bytes);
    copy[off] ^= 0xff;
    const r = await writeAndRead(dir, `flip-${off}.entry`, copy);
    assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === reason, `${label} @${off}: ${JSON.stringify(r)}`);
  }
  // payload_len one larger than real → truncated
  const copy = Buffer.from(bytes);
  copy.writeBigUInt64LE(BigInt(payload.length + 1), 16);
  const r = await writeAndRead(dir, 'plus1.entry', copy);
  assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === 'truncated', JSON.stringify(r));
});

test('checksummed but invalid metadata: invalid UTF-8, invalid JSON, wrong shape', async (t) => {
  const dir = await makeTempDir(t);
  const cases: [string, Buffer, string][] = [
    ['invalid utf-8', Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), 'invalid_utf8'],
    ['garbage json', Buffer.from('{"format":1,"kind":"response",', 'utf8'), 'invalid_json'],
    ['not an object', Buffer.from('[1,2,3]', 'utf8'), 'invalid_meta'],
    ['wrong key', Buffer.from(JSON.stringify({ format: 1, kind: 'response', key: 'other', compat, createdAt: 'x', data: null }), 'utf8'), 'invalid_meta'],
  ];
  for (const [label, raw, reason] of cases) {
    const bytes = Buffer.concat(encodeEntryChunks({ kind: 'response', key, compat, data: null }, payload, raw));
    const r = await writeAndRead(dir, `meta-${reason}.entry`, bytes);
    assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === reason, `${label}: ${JSON.stringify(r)}`);
  }
});

test('other version, kind, model or key is a miss, not corruption', async (t) => {
  const dir = await makeTempDir(t);
  const v2 = build();
  v2.writeUInt16LE(2, 4);
  let r = await writeAndRead(dir, 'v2.entry', v2);
  assert.ok(!r.ok && r.kind === 'miss' && r.reason === 'version', JSON.stringify(r));

  const other = encodeEntry({ kind: 'response', key, compat: { ...compat, model: 'm2' }, data: null }, payload);
  r = await writeAndRead(dir, 'm2.entry', other);
  assert.ok(!r.ok && r.kind === 'miss' && r.reason === 'fingerprint', JSON.stringify(r));

  const kv = encodeEntry({ kind: 'prefix-kv', key, compat, data: null }, payload);
  r = await writeAndRead(dir, 'kv.entry', kv);
  assert.ok(!r.ok && r.kind === 'miss' && r.reason === 'kind', JSON.stringify(r));

  r = await writeAndRead(dir, 'key.entry', build(), { ...expected, key: 'b'.repeat(64) });
  assert.ok(!r.ok && r.kind === 'miss' && r.reason === 'key_mismatch', JSON.stringify(r));
});

test('absurd length fields (0xFFFFFFF0) are rejected before any large allocation', async (t) => {
  const dir = await makeTempDir(t);
  const sizes: number[] = [];
  const orig = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
  const spy = <K extends keyof typeof orig>(k: K) =>
    function (this: unknown, size: number, ...rest: unknown[]) {
      sizes.push(size);
      return (orig[k] as (...a: unknown[]) => Buffer).call(Buffer, size, ...rest);
    };
  const cases: [string, (b: Buffer) => void, string][] = [
    ['payload_len = 0xFFFFFFF0', (b) => b.writeBigUInt64LE(0xfffffff0n, 16), 'absurd_length'],
    ['payload_len = 2^63', (b) => b.writeBigUInt64LE(1n << 63n, 16), 'absurd_length'],
    ['meta_len = 0xFFFFFFF0', (b) => b.writeUInt32LE(0xfffffff0, 12), 'absurd_length'],
    ['header_len = 0xFFFFFFF0', (b) => b.writeUInt32LE(0xfffffff0, 8), 'bad_header'],
    // within the allowed range but larger than the file
    ['payload_len = 100 MB', (b) => b.writeBigUInt64LE(100_000_000n, 16), 'truncated'],
  ];
  for (const [label, mutate, reason] of cases) {
    const bytes = build();
    mutate(bytes);
    const p = path.join(dir, 'absurd.entry');
    await writeFile(p, bytes);
    sizes.length = 0;
    Buffer.alloc = spy('alloc') as typeof Buffer.alloc;
    Buffer.allocUnsafe = spy('allocUnsafe') as typeof Buffer.allocUnsafe;
    Buffer.allocUnsafeSlow = spy('allocUnsafeSlow') as typeof Buffer.allocUnsafeSlow;
    let r;
    try {
      r = await readEntry(p, { ...expected, maxPayloadBytes: 512 * 1024 * 1024 });
    } finally {
      Object.assign(Buffer, orig);
    }
    assert.ok(!r.ok && r.kind === 'corrupt' && r.reason === reason, `${label}: ${JSON.stringify(r)}`);
    const biggest = Math.max(0, ...sizes);
    assert.ok(biggest <= 4096, `${label}: allocated ${biggest} bytes`);
  }
  // the spy does see real allocations: a valid read allocates the file-sized buffer
  await writeFile(path.join(dir, 'good.entry'), build());
  sizes.length = 0;
  Buffer.allocUnsafeSlow = spy('allocUnsafeSlow') as typeof Buffer.allocUnsafeSlow;
  try {
    assert.ok((await readEntry(path.join(dir, 'good.entry'), expected)).ok);
  } finally {
    Object.assign(Buffer, orig);
  }
  assert.ok(sizes.some((s) => s >= payload.length), `spy saw ${sizes}`);
});
