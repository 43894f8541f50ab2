// On-disk format of ONE cache entry, and its verifying reader.
//
// Layout (little-endian):
//   off  size  field
//     0     4  magic "MXBC"
//     4     2  format version (u16)              ← bytes 0..6 are the same in every future version
//     6     1  kind (1 = response, 2 = prefix-kv)
//     7     1  flags (0)
//     8     4  header_len (u32): 120 + meta_len, rounded up to 16 (meta padded with spaces)
//    12     4  meta_len (u32): bytes of UTF-8 JSON metadata
//    16     8  payload_len (u64)
//    24    32  compat digest: sha256 of the canonical compatibility fingerprint
//              (model + tokenizer + template fingerprints, engine version — per kind)
//    56    32  key digest: sha256 of the key material (confirms a hashed-file-name hit)
//    88    32  checksum: sha256 over bytes [0,88) + [120, header_len + payload_len)
//   120     …  JSON metadata {format, kind, key, compat, createdAt, data}, space-padded
//     …     …  payload (16-byte aligned in the file, so float32 views need no copy)
//     …     8  trailer magic "MXBC_END" (a torn/short write is visible without reading the payload)
//
// Checksum: SHA-256, not CRC32. Node 20 has no zlib.crc32 (added in v22.2), a JS CRC32 runs at a
// few hundred MB/s while OpenSSL's SHA-256 runs at ~1–2 GB/s with SHA extensions, and SHA-256 also
// makes deliberate edits of one region evident (it is not an authenticity check: a local writer can
// recompute it; an HMAC with a keychain key would be needed for that).
//
// The reader checks the real file size against header_len + payload_len + trailer BEFORE it
// allocates anything from a length field; absurd lengths are rejected by range first. A different
// format version, kind or compatibility fingerprint is a `miss` (the file is valid, just not for
// us), never `corrupt`. Everything structurally wrong is `corrupt` with a reason.
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { nodeFs, type CacheFs, type FileHandleLike } from '../common/atomic-write.ts';
import { canonicalJson, sha256Hex } from './canonical.ts';

export const MAGIC = Buffer.from('MXBC', 'latin1');
export const TRAILER = Buffer.from('MXBC_END', 'latin1');
export const FORMAT_VERSION = 1;
export const FIXED_HEADER_BYTES = 120;
export const TRAILER_BYTES = TRAILER.length;
/** Metadata larger than this is not something we write (prefix token lists are ~1 MB at 128k tokens). */
export const MAX_META_BYTES = 32 * 1024 * 1024;
/** Default cap for one payload; the stores pass their (smaller) byte budget. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024 * 1024;

const OFF = { magic: 0, version: 4, kind: 6, flags: 7, headerLen: 8, metaLen: 12, payloadLen: 16, compat: 24, key: 56, checksum: 88 } as const;

export type EntryKind = 'response' | 'prefix-kv';
const KIND_CODE: Record<EntryKind, number> = { response: 1, 'prefix-kv': 2 };
const CODE_KIND: Record<number, EntryKind> = { 1: 'response', 2: 'prefix-kv' };

/** Compatibility fingerprint: what must be equal for an entry to be usable. Values are opaque strings. */
export type Compat = Record<string, string>;

export interface EntryMeta {
  format: number;
  kind: EntryKind;
  /** Exact key material (the request digest, or the token digest); compared on every read. */
  key: string;
  compat: Compat;
  createdAt: string;
  /** Store-specific JSON (response metadata, prefix layout + tokens). */
  data: unknown;
}

export type CorruptReason =
  | 'empty'
  | 'truncated'
  | 'bad_magic'
  | 'bad_kind'
  | 'bad_header'
  | 'absurd_length'
  | 'length_mismatch'
  | 'bad_trailer'
  | 'checksum'
  | 'invalid_utf8'
  | 'invalid_json'
  | 'invalid_meta'
  | 'not_a_file';

/** `not_ours`: not a regular file (FIFO, device, symlink…): never opened for reading, never moved. */
export type MissReason = 'not_found' | 'not_ours' | 'version' | 'kind' | 'fingerprint' | 'key_mismatch';

export interface FileIdentity {
  size: number;
  ino: number;
  mtimeMs: number;
}

export interface ReadEntry {
  meta: EntryMeta;
  /** Absent in structure-only reads. 16-byte aligned view into a fresh (unpooled) ArrayBuffer. */
  payload: Buffer;
  file: FileIdentity;
}

export type ReadResult =
  | { ok: true; entry: ReadEntry }
  | { ok: false; kind: 'miss'; reason: MissReason; file?: FileIdentity; meta?: EntryMeta }
  | { ok: false; kind: 'corrupt'; reason: CorruptReason; file?: FileIdentity }
  | { ok: false; kind: 'error'; error: unknown };

export interface Expected {
  kind: EntryKind;
  /** sha256 hex of the canonical compat (use compatDigest()). */
  compatDigest: string;
  /** Key material to confirm; omit to accept any key (scans). */
  key?: string;
  maxPayloadBytes?: number;
}

export function compatDigest(compat: Compat): string {
  return sha256Hex(canonicalJson(compat));
}

function align16(n: number): number {
  return (n + 15) & ~15;
}

export interface EncodeInput {
  kind: EntryKind;
  key: string;
  compat: Compat;
  data: unknown;
  createdAt?: string;
}

/**
 * Encodes an entry as the list of chunks to write (header, payload, trailer), so a large payload is
 * never copied into one concatenated buffer. Use Buffer.concat on the result for a single Buffer.
 */
export function encodeEntryChunks(input: EncodeInput, payload: Uint8Array | readonly Uint8Array[], rawMeta?: Uint8Array): Buffer[] {
  // A payload may be given as several chunks (e.g. one per KV layer) so nothing large is copied.
  const parts = (Array.isArray(payload) ? payload : [payload]) as readonly Uint8Array[];
  const payloadLen = parts.reduce((n, p) => n + p.byteLength, 0);
  const meta: EntryMeta = {
    format: FORMAT_VERSION,
    kind: input.kind,
    key: input.key,
    compat: input.compat,
    createdAt: input.createdAt ?? new Date().toISOString(),
    data: input.data ?? null,
  };
  // rawMeta lets tests build entries whose (checksummed) metadata is not valid JSON/UTF-8.
  const metaBytes = rawMeta ? Buffer.from(rawMeta) : Buffer.from(JSON.stringify(meta), 'utf8');
  if (metaBytes.length > MAX_META_BYTES) throw new RangeError('cache entry metadata too large');
  const headerLen = align16(FIXED_HEADER_BYTES + metaBytes.length);
  const header = Buffer.alloc(headerLen, 0x20);
  header.fill(0, 0, FIXED_HEADER_BYTES);
  MAGIC.copy(header, OFF.magic);
  header.writeUInt16LE(FORMAT_VERSION, OFF.version);
  header.writeUInt8(KIND_CODE[input.kind], OFF.kind);
  header.writeUInt8(0, OFF.flags);
  header.writeUInt32LE(headerLen, OFF.headerLen);
  header.writeUInt32LE(metaBytes.length, OFF.metaLen);
  header.writeBigUInt64LE(BigInt(payloadLen), OFF.payloadLen);
  Buffer.from(compatDigest(input.compat), 'hex').copy(header, OFF.compat);
  Buffer.from(sha256Hex(input.key), 'hex').copy(header, OFF.key);
  metaBytes.copy(header, FIXED_HEADER_BYTES);
  const sum = createHash('sha256');
  sum.update(header.subarray(0, OFF.checksum));
  sum.update(header.subarray(FIXED_HEADER_BYTES));
  for (const p of parts) sum.update(p);
  sum.digest().copy(header, OFF.checksum);
  const payloadBufs = parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  return [header, ...payloadBufs, Buffer.from(TRAILER)];
}

export function encodeEntry(input: EncodeInput, payload: Uint8Array | readonly Uint8Array[]): Buffer {
  return Buffer.concat(encodeEntryChunks(input, payload));
}

const READ_FLAGS = fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0) | (fsc.O_NONBLOCK ?? 0);

async function readExactly(fh: FileHandleLike, buf: Buffer, position: number): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead <= 0) return false; // the file shrank under us
    off += bytesRead;
  }
  return true;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseMeta(bytes: Uint8Array): { ok: true; meta: EntryMeta } | { ok: false; reason: CorruptReason } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: 'invalid_utf8' };
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid_json' };
  }
  if (
    !isPlainObject(v) ||
    v.format !== FORMAT_VERSION ||
    (v.kind !== 'response' && v.kind !== 'prefix-kv') ||
    typeof v.key !== 'string' ||
    !isPlainObject(v.compat) ||
    !Object.values(v.compat).every((x) => typeof x === 'string') ||
    typeof v.createdAt !== 'string'
  ) {
    return { ok: false, reason: 'invalid_meta' };
  }
  return { ok: true, meta: v as unknown as EntryMeta };
}

/**
 * Reads and verifies one entry file. Never throws: I/O errors come back as `{kind:'error'}`.
 * mode 'full' (default) verifies the checksum and returns the payload; 'structure' checks magic,
 * version, lengths against the real size, trailer and metadata only (startup scans, listing).
 */
export async function readEntry(file: string, expected: Expected, fs: CacheFs = nodeFs, mode: 'full' | 'structure' = 'full'): Promise<ReadResult> {
  let fh: FileHandleLike | undefined;
  try {
    try {
      // O_NOFOLLOW: a symlink fails (ELOOP) instead of reading whatever it points at; O_NONBLOCK: a FIFO
      // opens at once instead of blocking a libuv thread until a writer appears (it used to hang startup).
      fh = await fs.open(file, READ_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { ok: false, kind: 'miss', reason: 'not_found' };
      if (code === 'ELOOP' || code === 'ENXIO' || code === 'EISDIR') return { ok: false, kind: 'miss', reason: 'not_ours' };
      throw err;
    }
    const st = await fh.stat();
    const id: FileIdentity = { size: st.size, ino: st.ino, mtimeMs: st.mtimeMs };
    if (!st.isFile()) return { ok: false, kind: 'miss', reason: 'not_ours' };
    if (st.size === 0) return { ok: false, kind: 'corrupt', reason: 'empty', file: id };
    // Fixed-size read: the only allocation before the lengths are validated.
    const fixed = Buffer.alloc(FIXED_HEADER_BYTES);
    const probeLen = Math.min(FIXED_HEADER_BYTES, st.size);
    if (!(await readExactly(fh, fixed.subarray(0, probeLen), 0))) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
    const magicLen = Math.min(MAGIC.length, probeLen);
    if (!fixed.subarray(0, magicLen).equals(MAGIC.subarray(0, magicLen))) return { ok: false, kind: 'corrupt', reason: 'bad_magic', file: id };
    if (st.size < FIXED_HEADER_BYTES) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
    const version = fixed.readUInt16LE(OFF.version);
    if (version !== FORMAT_VERSION) return { ok: false, kind: 'miss', reason: 'version', file: id };
    const kind = CODE_KIND[fixed.readUInt8(OFF.kind)];
    if (!kind || fixed.readUInt8(OFF.flags) !== 0) return { ok: false, kind: 'corrupt', reason: 'bad_kind', file: id };

    const headerLen = fixed.readUInt32LE(OFF.headerLen);
    const metaLen = fixed.readUInt32LE(OFF.metaLen);
    const payloadLen64 = fixed.readBigUInt64LE(OFF.payloadLen);
    const maxPayload = Math.min(expected.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES);
    // Range checks first, on the declared values alone (no allocation, no arithmetic overflow).
    if (metaLen > MAX_META_BYTES || payloadLen64 > BigInt(maxPayload)) return { ok: false, kind: 'corrupt', reason: 'absurd_length', file: id };
    if (headerLen !== align16(FIXED_HEADER_BYTES + metaLen)) return { ok: false, kind: 'corrupt', reason: 'bad_header', file: id };
    const payloadLen = Number(payloadLen64);
    const declared = headerLen + payloadLen + TRAILER_BYTES;
    if (declared > st.size) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
    if (declared < st.size) return { ok: false, kind: 'corrupt', reason: 'length_mismatch', file: id };

    // Lengths agree with the real size; from here allocations are bounded by the file size.
    const trailer = Buffer.alloc(TRAILER_BYTES);
    if (!(await readExactly(fh, trailer, st.size - TRAILER_BYTES))) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
    if (!trailer.equals(TRAILER)) return { ok: false, kind: 'corrupt', reason: 'bad_trailer', file: id };

    let whole: Buffer;
    if (mode === 'full') {
      // Unpooled: byteOffset 0, so the 16-aligned payload stays aligned for typed-array views.
      whole = Buffer.allocUnsafeSlow(headerLen + payloadLen);
      if (!(await readExactly(fh, whole, 0))) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
      const sum = createHash('sha256');
      sum.update(whole.subarray(0, OFF.checksum));
      sum.update(whole.subarray(FIXED_HEADER_BYTES));
      if (!sum.digest().equals(whole.subarray(OFF.checksum, OFF.checksum + 32))) return { ok: false, kind: 'corrupt', reason: 'checksum', file: id };
    } else {
      whole = Buffer.allocUnsafeSlow(headerLen);
      if (!(await readExactly(fh, whole, 0))) return { ok: false, kind: 'corrupt', reason: 'truncated', file: id };
    }

    const parsed = parseMeta(whole.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + metaLen));
    if (!parsed.ok) return { ok: false, kind: 'corrupt', reason: parsed.reason, file: id };
    const meta = parsed.meta;
    // The header digests must describe the metadata they sit next to.
    if (meta.kind !== kind || sha256Hex(meta.key) !== whole.subarray(OFF.key, OFF.key + 32).toString('hex')) {
      return { ok: false, kind: 'corrupt', reason: 'invalid_meta', file: id };
    }
    const storedCompat = whole.subarray(OFF.compat, OFF.compat + 32).toString('hex');
    if (compatDigest(meta.compat) !== storedCompat) return { ok: false, kind: 'corrupt', reason: 'invalid_meta', file: id };
    if (kind !== expected.kind) return { ok: false, kind: 'miss', reason: 'kind', file: id, meta };
    if (storedCompat !== expected.compatDigest) return { ok: false, kind: 'miss', reason: 'fingerprint', file: id, meta };
    if (expected.key !== undefined && meta.key !== expected.key) return { ok: false, kind: 'miss', reason: 'key_mismatch', file: id, meta };

    const payload = mode === 'full' ? whole.subarray(headerLen, headerLen + payloadLen) : Buffer.alloc(0);
    return { ok: true, entry: { meta, payload, file: id } };
  } catch (error) {
    return { ok: false, kind: 'error', error };
  } finally {
    await fh?.close().catch(() => {});
  }
}
