// A directory of verified cache entries (one file per entry) for one kind: `<data>/cache/<kind>/`.
//
// - File names are a hash of the key (never request text, never a path fragment from a client);
//   the exact key material is stored in the entry and compared on read, so a hash collision is a
//   miss, not a wrong answer.
// - Budgets: max bytes and max entries, LRU by access; entries of another version/model ("foreign")
//   go first; the entry just written is never evicted.
// - Corrupt files are a miss, moved to quarantine, counted by reason.
// - One writer: every mutation (write, evict, quarantine) runs on a single in-process queue, which is
//   bounded (a slow disk drops writes instead of growing memory).
// - Every disk operation reports success/failure to the degradation machine; while the circuit is
//   open the store does no disk I/O at all and answers miss / not stored.
// - Nothing here throws into the request path: get → null, set → false on any failure.
import path from 'node:path';
import { createHash } from 'node:crypto';
import { atomicWrite, nodeFs, removeStrayTemps, type CacheFs } from '../common/atomic-write.ts';
import { compatDigest, encodeEntryChunks, readEntry, type Compat, type EntryKind, type EntryMeta, type FileIdentity } from './entry-file.ts';
import type { Quarantine } from './quarantine.ts';
import type { CacheHealth } from '../hardening/degradation.ts';

export const ENTRY_EXT = '.entry';
/** The only names this store writes (see fileNameFor); anything else in the folder is not ours. */
const ENTRY_NAME_RE = /^[0-9a-f]{40}\.entry$/;

export interface EntryStoreOptions {
  /** `<data>/cache/<kind>` */
  dir: string;
  kind: EntryKind;
  compat: Compat;
  maxBytes: number;
  maxEntries: number;
  quarantine: Quarantine;
  health?: CacheHealth;
  fs?: CacheFs;
  /** File-name hash of the key (hex). Injectable so tests can force collisions. Default sha256. */
  fileNameHash?: (key: string) => string;
  maxPendingWrites?: number;
  /** Startup verification: 'full' reads and checksums every file, 'structure' checks headers only. */
  scanMode?: 'full' | 'structure';
  /** Keep each entry's `data` in memory (the prefix store needs token lists without reading files). */
  indexData?: boolean;
  now?: () => number;
}

interface IndexEntry {
  name: string;
  bytes: number;
  /** LRU order (monotonic sequence). */
  access: number;
  foreign: boolean;
  key: string | null;
  data: unknown;
  ino: number;
}

export interface StoredEntry {
  key: string;
  data: unknown;
  payload: Buffer;
  meta: EntryMeta;
}

export interface EntryStoreStats {
  kind: EntryKind;
  entries: number;
  foreignEntries: number;
  bytes: number;
  maxBytes: number;
  maxEntries: number;
  hits: number;
  misses: number;
  /** Operations skipped because the cache circuit was open. */
  bypassed: number;
  writes: number;
  writeErrors: number;
  readErrors: number;
  collisions: number;
  evictions: number;
  droppedWrites: number;
  rejectedTooLarge: number;
  pendingWrites: number;
  corruptions: Record<string, number>;
}

export interface ScanReport {
  entries: number;
  foreign: number;
  corrupt: number;
  errors: number;
  strayTempsRemoved: number;
  /** Named like an entry but not a regular file (FIFO, device, socket, symlink…): skipped, left alone. */
  notOurs: number;
}

class CacheCorruptError extends Error {
  readonly code = 'ECORRUPT';
  constructor(reason: string) {
    super(`corrupt cache entry (${reason})`);
  }
}

const noHealth: CacheHealth = { cacheAllowed: () => true, recordCacheSuccess: () => {}, recordCacheError: () => {} };

export class EntryStore {
  readonly dir: string;
  readonly kind: EntryKind;
  private readonly compat: Compat;
  private readonly compatHex: string;
  private readonly fs: CacheFs;
  private readonly health: CacheHealth;
  private readonly quarantine: Quarantine;
  private readonly nameHash: (key: string) => string;
  private readonly maxPending: number;
  private readonly scanMode: 'full' | 'structure';
  private readonly indexData: boolean;
  private readonly now: () => number;
  readonly maxBytes: number;
  readonly maxEntries: number;

  private readonly index = new Map<string, IndexEntry>();
  private totalBytes = 0;
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private readonly quarantining = new Set<string>();
  /** name → inode of a damaged file already counted (concurrent readers count it once). */
  private readonly handledCorrupt = new Map<string, number>();
  private readonly counters = { hits: 0, misses: 0, bypassed: 0, writes: 0, writeErrors: 0, readErrors: 0, collisions: 0, evictions: 0, droppedWrites: 0, rejectedTooLarge: 0 };
  private readonly corrupt: Record<string, number> = {};

  constructor(opts: EntryStoreOptions) {
    this.dir = opts.dir;
    this.kind = opts.kind;
    this.compat = opts.compat;
    this.compatHex = compatDigest(opts.compat);
    this.fs = opts.fs ?? nodeFs;
    this.health = opts.health ?? noHealth;
    this.quarantine = opts.quarantine;
    this.nameHash = opts.fileNameHash ?? ((k) => createHash('sha256').update(k).digest('hex'));
    this.maxPending = opts.maxPendingWrites ?? 32;
    this.scanMode = opts.scanMode ?? 'full';
    this.indexData = opts.indexData ?? false;
    this.now = opts.now ?? Date.now;
    this.maxBytes = opts.maxBytes;
    this.maxEntries = opts.maxEntries;
  }

  /** `<hash>.entry`; the hash is validated so an injected hash cannot produce a path. */
  fileNameFor(key: string): string {
    const h = this.nameHash(`${this.kind}\0${key}`).toLowerCase();
    if (!/^[0-9a-f]{8,128}$/.test(h)) throw new Error('cache file-name hash must be hex');
    return h.slice(0, 40) + ENTRY_EXT;
  }

  private pathOf(name: string): string {
    return path.join(this.dir, name);
  }

  // ---- startup -------------------------------------------------------------------------------

  /**
   * Scans the directory: removes stray temp files, verifies every entry (quarantining corrupt ones),
   * indexes valid and foreign entries, then enforces the budgets. Never throws for bad files.
   */
  async open(): Promise<ScanReport> {
    await this.fs.mkdir(this.dir, { recursive: true });
    const report: ScanReport = { entries: 0, foreign: 0, corrupt: 0, errors: 0, strayTempsRemoved: 0, notOurs: 0 };
    report.strayTempsRemoved = await removeStrayTemps(this.fs, this.dir, { now: this.now() });
    const names = (await this.fs.readdir(this.dir)).filter((n) => ENTRY_NAME_RE.test(n)).sort();
    const found: { e: IndexEntry; mtime: number }[] = [];
    for (const name of names) {
      // Only regular files: a FIFO, device, socket or symlink under an entry name is not ours, is
      // never opened (a FIFO would block) and never moved or deleted.
      const own = await this.fs.lstat(this.pathOf(name)).catch(() => null);
      if (!own) continue; // gone meanwhile
      if (!own.isFile()) {
        report.notOurs++;
        continue;
      }
      const r = await readEntry(this.pathOf(name), { kind: this.kind, compatDigest: this.compatHex, maxPayloadBytes: this.maxBytes }, this.fs, this.scanMode);
      if (r.ok) {
        found.push({ e: this.makeIndexEntry(name, r.entry.file, false, r.entry.meta), mtime: r.entry.file.mtimeMs });
      } else if (r.kind === 'miss') {
        if (r.reason === 'not_ours') report.notOurs++; // replaced by a special file since the lstat
        if (r.reason === 'not_found' || r.reason === 'not_ours') continue;
        // another version / model / kind: valid, not ours; evicted first by budget
        if (r.file) found.push({ e: this.makeIndexEntry(name, r.file, true, null), mtime: r.file.mtimeMs });
        report.foreign++;
      } else if (r.kind === 'corrupt') {
        report.corrupt++;
        await this.quarantineNow(name, r.file, r.reason, 'scan');
      } else {
        report.errors++;
        this.health.recordCacheError('scan', r.error);
      }
    }
    // oldest modification first → lowest LRU sequence
    found.sort((a, b) => a.mtime - b.mtime);
    for (const { e } of found) {
      e.access = ++this.seq;
      this.index.set(e.name, e);
      this.totalBytes += e.bytes;
    }
    report.entries = found.length - report.foreign;
    await this.enqueue(() => this.evict(null));
    return report;
  }

  private makeIndexEntry(name: string, file: FileIdentity, foreign: boolean, meta: EntryMeta | null): IndexEntry {
    return {
      name,
      bytes: file.size,
      access: 0,
      foreign,
      key: meta?.key ?? null,
      data: this.indexData && meta ? meta.data : undefined,
      ino: file.ino,
    };
  }

  // ---- reads ---------------------------------------------------------------------------------

  /** The verified entry for `key`, or null (miss, bypassed, corrupt, I/O error). Never throws. */
  async get(key: string): Promise<StoredEntry | null> {
    if (!this.health.cacheAllowed()) {
      this.counters.bypassed++;
      return null;
    }
    let name: string;
    try {
      name = this.fileNameFor(key);
    } catch (err) {
      this.health.recordCacheError('get', err);
      return null;
    }
    const idx = this.index.get(name);
    if (!idx || idx.foreign || this.quarantining.has(name)) {
      this.counters.misses++;
      return null;
    }
    const r = await readEntry(this.pathOf(name), { kind: this.kind, compatDigest: this.compatHex, key, maxPayloadBytes: this.maxBytes }, this.fs, 'full');
    if (r.ok) {
      this.counters.hits++;
      const cur = this.index.get(name);
      if (cur) cur.access = ++this.seq;
      // Persist the LRU order across restarts (best effort; mtime is the scan's access order).
      const t = new Date(this.now());
      this.fs.utimes(this.pathOf(name), t, t).catch(() => {});
      this.health.recordCacheSuccess('get');
      return { key, data: r.entry.meta.data, payload: r.entry.payload, meta: r.entry.meta };
    }
    this.counters.misses++;
    if (r.kind === 'miss') {
      if (r.reason === 'not_found' || r.reason === 'not_ours') this.dropFromIndex(name);
      else if (r.reason === 'key_mismatch') this.counters.collisions++;
      else {
        const cur = this.index.get(name);
        if (cur) cur.foreign = true;
      }
      this.health.recordCacheSuccess('get');
      return null;
    }
    if (r.kind === 'corrupt') {
      this.quarantineLater(name, r.file, r.reason);
      return null;
    }
    this.counters.readErrors++;
    this.health.recordCacheError('get', r.error);
    return null;
  }

  has(key: string): boolean {
    try {
      const e = this.index.get(this.fileNameFor(key));
      return !!e && !e.foreign;
    } catch {
      return false;
    }
  }

  /** Valid (non-foreign) entries, most recently used first. `data` only with indexData. */
  entries(): { key: string; bytes: number; data: unknown }[] {
    return [...this.index.values()]
      .filter((e) => !e.foreign && e.key !== null && !this.quarantining.has(e.name))
      .sort((a, b) => b.access - a.access)
      .map((e) => ({ key: e.key!, bytes: e.bytes, data: e.data }));
  }

  // ---- writes --------------------------------------------------------------------------------

  /**
   * Queues an atomic write of the entry. Resolves true once it is durable on disk, false if it was
   * not stored (circuit open, too large, queue full, I/O error). Never rejects.
   */
  set(key: string, payload: Uint8Array | readonly Uint8Array[], data: unknown): Promise<boolean> {
    if (!this.health.cacheAllowed()) {
      this.counters.bypassed++;
      return Promise.resolve(false);
    }
    let chunks: Buffer[];
    let name: string;
    try {
      name = this.fileNameFor(key);
      chunks = encodeEntryChunks({ kind: this.kind, key, compat: this.compat, data }, payload);
    } catch {
      // unencodable metadata is a caller bug, not a disk fault: not stored, not a cache error
      this.counters.rejectedTooLarge++;
      return Promise.resolve(false);
    }
    const bytes = chunks.reduce((s, c) => s + c.length, 0);
    if (bytes > this.maxBytes) {
      this.counters.rejectedTooLarge++;
      return Promise.resolve(false);
    }
    if (this.pending >= this.maxPending) {
      this.counters.droppedWrites++;
      return Promise.resolve(false);
    }
    return this.enqueue(async () => {
      // The circuit may have opened while this write waited in the queue.
      if (!this.health.cacheAllowed()) {
        this.counters.bypassed++;
        return false;
      }
      const file = this.pathOf(name);
      try {
        await atomicWrite(this.fs, file, chunks);
      } catch (err) {
        this.counters.writeErrors++;
        this.health.recordCacheError('set', err);
        return false;
      }
      let ino = 0;
      try {
        ino = (await this.fs.stat(file)).ino;
      } catch {
        /* identity is only used to guard quarantine moves */
      }
      this.dropFromIndex(name);
      this.quarantining.delete(name);
      this.handledCorrupt.delete(name);
      this.index.set(name, { name, bytes, access: ++this.seq, foreign: false, key, data: this.indexData ? data : undefined, ino });
      this.totalBytes += bytes;
      this.counters.writes++;
      this.health.recordCacheSuccess('set');
      await this.evict(name);
      return true;
    }).then(
      (v) => v,
      () => false,
    );
  }

  /** Removes the entry for `key` (e.g. the engine found it unusable). */
  delete(key: string): Promise<void> {
    let name: string;
    try {
      name = this.fileNameFor(key);
    } catch {
      return Promise.resolve();
    }
    return this.enqueue(async () => {
      await this.unlinkEntry(name, 'delete');
    }).catch(() => {});
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.queue.then(task);
    this.queue = run.then(
      () => {},
      () => {},
    ).finally(() => {
      this.pending--;
    });
    return run;
  }

  /** Waits until queued writes are done, or `timeoutMs` elapsed. Returns whether the queue drained. */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.queue, new Promise<void>((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
    return true;
  }

  private dropFromIndex(name: string): void {
    const e = this.index.get(name);
    if (e) {
      this.totalBytes -= e.bytes;
      this.index.delete(name);
    }
  }

  private async unlinkEntry(name: string, op: string): Promise<boolean> {
    const own = await this.fs.lstat(this.pathOf(name)).catch(() => null);
    if (own && !own.isFile()) {
      // replaced by something we did not write: forget it, leave it alone
      this.dropFromIndex(name);
      return true;
    }
    try {
      await this.fs.unlink(this.pathOf(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.health.recordCacheError(op, err);
        return false;
      }
    }
    this.dropFromIndex(name);
    return true;
  }

  /** Enforces budgets: foreign entries first, then least recently used; never `keep`. */
  private async evict(keep: string | null): Promise<void> {
    if (this.totalBytes <= this.maxBytes && this.index.size <= this.maxEntries) return;
    const order = [...this.index.values()]
      .filter((e) => e.name !== keep)
      .sort((a, b) => (a.foreign === b.foreign ? a.access - b.access : a.foreign ? -1 : 1));
    for (const e of order) {
      if (this.totalBytes <= this.maxBytes && this.index.size <= this.maxEntries) break;
      if (await this.unlinkEntry(e.name, 'evict')) this.counters.evictions++;
      else break; // the disk refuses deletes; the circuit will notice, do not spin
    }
  }

  // ---- corruption ----------------------------------------------------------------------------

  private countCorrupt(reason: string): void {
    this.corrupt[reason] = (this.corrupt[reason] ?? 0) + 1;
    this.quarantine.count(reason);
  }

  private async quarantineNow(name: string, file: FileIdentity | undefined, reason: string, op: string): Promise<void> {
    this.countCorrupt(reason);
    this.health.recordCacheError(op, new CacheCorruptError(reason));
    try {
      await this.quarantine.put(this.pathOf(name), file?.size ?? 0, reason);
    } catch (err) {
      this.health.recordCacheError('quarantine', err);
    }
    this.dropFromIndex(name);
  }

  /**
   * A read found corruption: count it now, hide the entry at once, move the file on the write queue
   * (so it cannot race a concurrent write), but only if the file is still the one that was read.
   */
  private quarantineLater(name: string, file: FileIdentity | undefined, reason: string): void {
    // Several reads that were in flight on the same damaged file count it once.
    if (this.quarantining.has(name)) return;
    if (file && this.handledCorrupt.get(name) === file.ino) return;
    if (file) {
      if (this.handledCorrupt.size > 1024) this.handledCorrupt.clear();
      this.handledCorrupt.set(name, file.ino);
    }
    this.countCorrupt(reason);
    this.health.recordCacheError('get', new CacheCorruptError(reason));
    this.quarantining.add(name);
    this.dropFromIndex(name);
    void this.enqueue(async () => {
      if (!this.quarantining.has(name)) return; // a new entry replaced it meanwhile
      this.quarantining.delete(name);
      const p = this.pathOf(name);
      const st = await this.fs.lstat(p).catch(() => null);
      if (!st?.isFile()) return;
      if (file && (st.ino !== file.ino || st.size !== file.size)) return;
      try {
        await this.quarantine.put(p, st.size, reason);
      } catch (err) {
        this.health.recordCacheError('quarantine', err);
      }
    }).catch(() => {});
  }

  // ---- stats ---------------------------------------------------------------------------------

  stats(): EntryStoreStats {
    let foreign = 0;
    for (const e of this.index.values()) if (e.foreign) foreign++;
    return {
      kind: this.kind,
      entries: this.index.size - foreign,
      foreignEntries: foreign,
      bytes: this.totalBytes,
      maxBytes: this.maxBytes,
      maxEntries: this.maxEntries,
      ...this.counters,
      pendingWrites: this.pending,
      corruptions: { ...this.corrupt },
    };
  }
}
