// Shared helpers for the cache tests: temp data dirs and a fault-injecting wrapper around the real
// fs layer (used only for faults a test cannot produce for real: ENOSPC, EIO, a hung rename).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { nodeFs, type CacheFs, type FileHandleLike } from '../../main/common/atomic-write.ts';

export async function makeTempDir(t: { after(fn: () => unknown): void }, prefix = 'mlxbar-cache-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function errno(code: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: simulated fault, write '/home/someone/.mlxbar/cache/x.entry'`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

export interface Faults {
  /** errno code thrown by FileHandle.write on temp files */
  write?: string | null;
  /** errno code thrown by FileHandle.read */
  read?: string | null;
  /** errno code thrown by rename */
  rename?: string | null;
  /** errno code thrown by unlink */
  unlink?: string | null;
}

export interface FaultyFs {
  fs: CacheFs;
  faults: Faults;
  /** Every fs call made, by name. */
  calls: Record<string, number>;
  total(): number;
}

export function faultyFs(base: CacheFs = nodeFs): FaultyFs {
  const faults: Faults = {};
  const calls: Record<string, number> = {};
  const count = (n: string) => (calls[n] = (calls[n] ?? 0) + 1);
  const wrapHandle = (fh: FileHandleLike): FileHandleLike => ({
    write: async (b, o, l, p) => {
      count('write');
      if (faults.write) throw errno(faults.write);
      return fh.write(b, o, l, p);
    },
    read: async (b, o, l, p) => {
      count('read');
      if (faults.read) throw errno(faults.read);
      return fh.read(b, o, l, p);
    },
    sync: () => fh.sync(),
    stat: () => fh.stat(),
    close: () => fh.close(),
  });
  const fs: CacheFs = {
    open: async (p, f, m) => {
      count('open');
      return wrapHandle(await base.open(p, f, m));
    },
    rename: async (a, b) => {
      count('rename');
      if (faults.rename) throw errno(faults.rename);
      return base.rename(a, b);
    },
    unlink: async (p) => {
      count('unlink');
      if (faults.unlink) throw errno(faults.unlink);
      return base.unlink(p);
    },
    readdir: (p) => (count('readdir'), base.readdir(p)),
    stat: (p) => (count('stat'), base.stat(p)),
    lstat: (p) => (count('lstat'), base.lstat(p)),
    mkdir: (p, o) => (count('mkdir'), base.mkdir(p, o)),
    utimes: (p, a, m) => (count('utimes'), base.utimes(p, a, m)),
    access: (p, m) => (count('access'), base.access(p, m)),
  };
  return { fs, faults, calls, total: () => Object.values(calls).reduce((a, b) => a + b, 0) };
}

export const FP = { model: 'model-fp-A', tokenizer: 'tok-fp-1', template: 'tpl-fp-1', engine: 'engine-0.1.0-float32' };
