// Corrupt cache files are moved here (not deleted) so a bug report can include the evidence, under
// a bounded count and byte budget (oldest dropped first). Corruptions are counted by reason for
// /v1/metrics (`cache_corruptions`) and the Prometheus `mlxbar_cache_corruptions_total{reason}`.
import path from 'node:path';
import type { CacheFs } from '../common/atomic-write.ts';

export interface QuarantineOptions {
  maxFiles?: number;
  maxBytes?: number;
  now?: () => number;
}

// Exactly the names put() makes: `<40 hex>.entry.<16-digit µs stamp>.<reason>`. Trimming deletes
// nothing else (a user's notes, files someone else put there).
const NAME_RE = /^([0-9a-f]{40}\.entry)\.(\d{16})\.([a-z0-9_]+)$/;

export class Quarantine {
  readonly dir: string;
  /** `<data>/cache`: must be a real directory too (the quarantine never works through symlinks). */
  private readonly parent: string;
  private readonly fs: CacheFs;
  private readonly maxFiles: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly counts: Record<string, number> = {};
  private seq = 0;

  constructor(dir: string, fs: CacheFs, opts: QuarantineOptions = {}) {
    this.dir = dir;
    this.parent = path.dirname(dir);
    this.fs = fs;
    this.maxFiles = opts.maxFiles ?? 32;
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.now = opts.now ?? Date.now;
  }

  /** Counts a corruption (also when the file could not be moved). */
  count(reason: string): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
  }

  corruptions(): Record<string, number> {
    return { ...this.counts };
  }

  /**
   * Moves `file` (size `bytes`) into quarantine as `<name>.<ms>.<reason>`. Files larger than the
   * whole quarantine budget are deleted instead. Throws only if the file can be neither moved nor
   * deleted (the caller reports that as a cache error).
   */
  async put(file: string, bytes: number, reason: string): Promise<'quarantined' | 'deleted' | 'gone'> {
    // a unique, sortable time stamp even for several files in the same millisecond
    const ts = String(this.now() * 1000 + (this.seq++ % 1000)).padStart(16, '0');
    const dest = path.join(this.dir, `${path.basename(file)}.${ts}.${reason.replace(/[^a-z0-9_]/g, '_')}`);
    if (bytes > this.maxBytes) return this.remove(file);
    // Only a regular file the cache wrote is moved; only into a real quarantine folder inside the
    // data dir. A symlinked `cache/` or `cache/quarantine` would send it (and later trimming) elsewhere.
    const own = await this.fs.lstat(file).catch(() => null);
    if (!own) return 'gone';
    if (!own.isFile()) return 'gone';
    if ((await this.realDir()) === 'symlink') return this.remove(file);
    try {
      await this.fs.rename(file, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return this.remove(file);
      // ENOENT: either the file is gone, or the quarantine directory was removed under us.
      if (!(await this.fs.stat(file).catch(() => null))) return 'gone';
      try {
        await this.fs.mkdir(this.dir, { recursive: true });
        await this.fs.rename(file, dest);
      } catch {
        return this.remove(file);
      }
    }
    await this.trim().catch(() => {});
    return 'quarantined';
  }

  private async remove(file: string): Promise<'deleted' | 'gone'> {
    try {
      await this.fs.unlink(file);
      return 'deleted';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw err;
    }
  }

  /** 'ok' (real directories), 'missing', or 'symlink' (a symlink or non-directory in the way). */
  private async realDir(): Promise<'ok' | 'missing' | 'symlink'> {
    for (const d of [this.parent, this.dir]) {
      const st = await this.fs.lstat(d).catch(() => null);
      if (!st) return 'missing';
      if (!st.isDirectory()) return 'symlink';
    }
    return 'ok';
  }

  /** Oldest-first removal of the quarantine's own files until both bounds hold. */
  async trim(): Promise<void> {
    if ((await this.realDir()) !== 'ok') return;
    const names = await this.fs.readdir(this.dir);
    const files: { name: string; ts: number; size: number }[] = [];
    for (const name of names) {
      const m = NAME_RE.exec(name);
      if (!m) continue;
      const st = await this.fs.lstat(path.join(this.dir, name)).catch(() => null);
      if (!st || !st.isFile()) continue;
      files.push({ name, ts: Number(m[2]), size: st.size });
    }
    files.sort((a, b) => a.ts - b.ts || (a.name < b.name ? -1 : 1));
    let total = files.reduce((s, f) => s + f.size, 0);
    while (files.length > 0 && (files.length > this.maxFiles || total > this.maxBytes)) {
      const f = files.shift()!;
      await this.fs.unlink(path.join(this.dir, f.name)).catch(() => {});
      total -= f.size;
    }
  }

  async list(): Promise<{ name: string; reason: string | null; size: number }[]> {
    const out: { name: string; reason: string | null; size: number }[] = [];
    if ((await this.realDir()) !== 'ok') return out;
    for (const name of await this.fs.readdir(this.dir).catch(() => [] as string[])) {
      const st = await this.fs.lstat(path.join(this.dir, name)).catch(() => null);
      if (st?.isFile()) out.push({ name, reason: NAME_RE.exec(name)?.[3] ?? null, size: st.size });
    }
    return out;
  }
}
