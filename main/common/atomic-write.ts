// Crash-safe file replacement (the one helper: caches, settings, downloads) and the injectable fs
// layer every cache file operation goes through.
//
// atomicWrite: write a temp file in the SAME directory (rename is only atomic within one file
// system), fsync it, close it, rename it over the target, then fsync the directory (a rename is
// only durable once its directory entry is). A crash at any point leaves either the old file or
// the new one, plus possibly a stray temp file, which removeStrayTemps deletes at the next start.
//
// The fs layer is a small interface over node:fs/promises so tests can inject ENOSPC/EIO or hang a
// rename to simulate a crash between write and rename; production uses `nodeFs`.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface StatLike {
  size: number;
  mtimeMs: number;
  ino: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

export interface FileHandleLike {
  write(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  sync(): Promise<void>;
  stat(): Promise<StatLike>;
  close(): Promise<void>;
}

export interface CacheFs {
  /** `flags` may be numeric (O_NOFOLLOW | O_NONBLOCK for reads of files the cache did not write). */
  open(p: string, flags: string | number, mode?: number): Promise<FileHandleLike>;
  rename(from: string, to: string): Promise<void>;
  unlink(p: string): Promise<void>;
  readdir(p: string): Promise<string[]>;
  stat(p: string): Promise<StatLike>;
  /** Does not follow a final symlink: the cache only ever touches regular files it wrote. */
  lstat(p: string): Promise<StatLike>;
  mkdir(p: string, opts: { recursive: true }): Promise<unknown>;
  utimes(p: string, atime: Date, mtime: Date): Promise<void>;
  /** Checks write access (fs.access W_OK); used once when opening the caches. */
  access(p: string, mode: number): Promise<void>;
}

export const nodeFs: CacheFs = {
  open: (p, flags, mode) => fsp.open(p, flags, mode) as unknown as Promise<FileHandleLike>,
  rename: (a, b) => fsp.rename(a, b),
  unlink: (p) => fsp.unlink(p),
  readdir: (p) => fsp.readdir(p),
  stat: (p) => fsp.stat(p),
  lstat: (p) => fsp.lstat(p),
  mkdir: (p, o) => fsp.mkdir(p, o),
  utimes: (p, a, m) => fsp.utimes(p, a, m),
  access: (p, m) => fsp.access(p, m),
};

const TEMP_RE = /^\.(.+)\.(\d+)\.([0-9a-f]{12})\.tmp$/;

export function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

export function isTempName(name: string): boolean {
  return TEMP_RE.test(name);
}

/** Temp files this process is writing right now; never removed by removeStrayTemps. */
const activeTemps = new Set<string>();

/** Writes all bytes of `chunks` to `fh`, looping over short writes. */
async function writeAll(fh: FileHandleLike, chunks: readonly Uint8Array[]): Promise<void> {
  let position = 0;
  for (const chunk of chunks) {
    let off = 0;
    while (off < chunk.byteLength) {
      const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off, position);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += bytesWritten;
      position += bytesWritten;
    }
  }
}

/** fsync a directory so a rename inside it is durable. Not supported everywhere (Windows): ignored there. */
export async function fsyncDir(fs: CacheFs, dir: string): Promise<void> {
  let fh: FileHandleLike | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF' && code !== 'EACCES') throw err;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Atomically replaces `target` with the concatenation of `chunks`. On any failure the temp file
 * is removed, the previous `target` is untouched, and the error is rethrown for the caller to count.
 */
export async function atomicWrite(fs: CacheFs, target: string, chunks: readonly Uint8Array[]): Promise<void> {
  const tmp = tempNameFor(target);
  activeTemps.add(tmp);
  let fh: FileHandleLike | undefined;
  let renamed = false;
  try {
    fh = await fs.open(tmp, 'wx', 0o600);
    await writeAll(fh, chunks);
    await fh.sync();
    const h = fh;
    fh = undefined;
    await h.close();
    await fs.rename(tmp, target);
    renamed = true;
    await fsyncDir(fs, path.dirname(target));
  } catch (err) {
    if (fh) await fh.close().catch(() => {});
    if (!renamed) await fs.unlink(tmp).catch(() => {});
    throw err;
  } finally {
    activeTemps.delete(tmp);
  }
}

/** Atomically replaces `target` with `text` (UTF-8 JSON etc.) through the real file system. */
export function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  return atomicWrite(nodeFs, target, [typeof data === 'string' ? Buffer.from(data) : data]);
}

/**
 * Synchronous twin of atomicWrite for start-up code that cannot await (settings repair): same temp
 * name, same order (write, fsync, rename, fsync dir), parent folder created, owner-only by default.
 */
export function writeFileAtomicSync(target: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = path.dirname(target);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempNameFor(target);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // directory fsync is not supported everywhere (Windows); the rename is still atomic
  }
}

/** True while a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes temp files left by a crash in `dir`. A temp of another live process is kept unless it is
 * older than `maxAgeMs` (pid reuse, or a stuck writer); our own in-flight temps are always kept.
 */
export async function removeStrayTemps(fs: CacheFs, dir: string, opts: { now?: number; maxAgeMs?: number } = {}): Promise<number> {
  const now = opts.now ?? Date.now();
  const maxAge = opts.maxAgeMs ?? 60 * 60_000;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = TEMP_RE.exec(name);
    if (!m) continue;
    const full = path.join(dir, name);
    if (activeTemps.has(full)) continue;
    // only regular files (never a FIFO, device or symlink someone placed under a temp-like name)
    const own = await fs.lstat(full).catch(() => null);
    if (!own?.isFile()) continue;
    const pid = Number(m[2]);
    if (pid !== process.pid && pidAlive(pid)) {
      const st = await fs.stat(full).catch(() => null);
      if (st && now - st.mtimeMs < maxAge) continue;
    }
    try {
      await fs.unlink(full);
      removed++;
    } catch {
      /* already gone */
    }
  }
  return removed;
}
