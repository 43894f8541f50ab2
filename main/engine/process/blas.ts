// OpenBLAS for the engine process. mlx.node links `libblas.so.3` by soname; on Debian that name
// resolves through the alternatives system, which may point at the reference BLAS (30-70x slower
// prefill here). The dynamic loader searches LD_LIBRARY_PATH before the system paths, so putting the
// directory of an OpenBLAS `libblas.so.3` first in the *engine process* environment forces OpenBLAS
// without touching the system or the parent process. (dlopen-ing it from JS does not work: the
// library is unloaded again, see engine-findings §0.)
import { withoutSecrets } from './child-env.ts';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DEBIAN_TRIPLETS: Record<string, string> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  arm: 'arm-linux-gnueabihf',
  ppc64: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
};

/** Directories that may hold an OpenBLAS build installed under the name `libblas.so.3`. */
export function openBlasCandidateDirs(arch: string = process.arch): string[] {
  const triplet = DEBIAN_TRIPLETS[arch];
  const variants = ['openblas-pthread', 'openblas-openmp', 'openblas-serial', 'openblas'];
  const roots = [...(triplet ? [`/usr/lib/${triplet}`] : []), '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  const out: string[] = [];
  for (const r of roots) for (const v of variants) out.push(path.join(r, v));
  return out;
}

/**
 * The directory to prepend to LD_LIBRARY_PATH, or null when none is found (the system default is
 * then used and stats report which BLAS got loaded). `MLXBAR_BLAS_DIR` overrides the search; an
 * override that holds no libblas.so.3 is still honoured (the user asked for it) but reported.
 */
export function findOpenBlasDir(env: NodeJS.ProcessEnv = process.env): { dir: string | null; source: 'override' | 'search' | 'none' } {
  const override = env.MLXBAR_BLAS_DIR;
  if (override && override.trim()) return { dir: override.trim(), source: 'override' };
  if (process.platform !== 'linux') return { dir: null, source: 'none' };
  for (const d of openBlasCandidateDirs()) {
    if (existsSync(path.join(d, 'libblas.so.3'))) return { dir: d, source: 'search' };
  }
  return { dir: null, source: 'none' };
}

/**
 * glibc's malloc policy for the engine process (Linux): blocks up to 32 MiB come from the heap and
 * up to 512 MiB of freed heap stays mapped. Why: by default glibc's mmap threshold only rises when a
 * large block is freed, and the heap's free top is returned to the OS past twice that — so whether a
 * prefill chunk's temporaries (8–16 MiB attention blocks, the K/V views) reuse mapped memory or are
 * page-faulted in anew, every layer of every chunk, depended on the allocation history. Measured
 * (bench `prefill`, in-process side, 2,048 tokens, same session): without it 36–39 tok/s in some runs
 * (3.3M faults, chunk times growing 2.5 → 10 s), with it 83–85 tok/s (~3k faults) every run.
 * Setting any of these turns glibc's dynamic threshold off, so both are set.
 *
 * And transparent huge pages for the heap (glibc >= 2.35; older ones ignore unknown tunables):
 * `hugetlb=1` has malloc madvise its memory MADV_HUGEPAGE (what the kernel's default THP mode,
 * "madvise", waits for), and `top_pad` grows the heap 64 MiB at a time so the grown part is whole
 * 2 MiB pages. Why: fresh memory costs a page fault per 4 KiB page (~12 µs each on the 2-core VM),
 * and a request's KV buffers and prefill temporaries, and the weights, are hundreds of MB. Measured
 * (56 KV buffers of 9.4 MiB, a 2,048-token prompt's KV on the Qwen3-0.6B shape): 143k faults without,
 * 300–1,300 with; a cold 512-token prefill on that shape in a new process 72–84 → 102–111 tok/s
 * (51–61k faults → ~1k); warm prefill and decode +0–12 %. A user's own malloc tunables win.
 */
export const ENGINE_MALLOC_TUNABLES =
  'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912:glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864';

/** File name of the one-row product shim (gemv-shim.c) built by `npm ci` (scripts/build-gemv-shim.mjs). */
export const GEMV_SHIM_FILE = 'libmlxbar-gemv.so';

/**
 * The built one-row product shim, or null (not Linux, or not built: no C compiler at install).
 * Preloaded into the engine process, it turns MLX's one-row cblas_sgemm calls (every product of a
 * decode step) into cblas_sgemv, which OpenBLAS 0.3.21 runs ~2.6x faster (it packs the whole weight
 * for a one-row sgemm). Measured (bench `decode`, Qwen3-0.6B shape, float32, 2 cores): see README.
 */
export function gemvShimPath(): string | null {
  if (process.platform !== 'linux') return null;
  const p = fileURLToPath(new URL(`../../../node_modules/.mlx-bar/${GEMV_SHIM_FILE}`, import.meta.url));
  return existsSync(p) ? p : null;
}

/** Whether this process has the shim mapped (Linux /proc/self/maps; false elsewhere). */
export function gemvShimLoaded(mapsText?: string): boolean {
  let maps = mapsText;
  if (maps === undefined) {
    if (process.platform !== 'linux') return false;
    try {
      maps = readFileSync('/proc/self/maps', 'utf8');
    } catch {
      return false;
    }
  }
  return maps.includes(`/${GEMV_SHIM_FILE}`);
}

/**
 * Environment for the engine process: the parent's environment without secrets (child-env.ts), plus
 * OpenBLAS first on the loader path, one OpenBLAS thread per core (its default may oversubscribe
 * or under-use the box) and, on Linux, ENGINE_MALLOC_TUNABLES and the one-row product shim
 * preloaded (`shim`, default the built one; `MLXBAR_GEMV_SHIM=0` leaves it out).
 */
export function engineProcessEnv(base: NodeJS.ProcessEnv = process.env, shim: string | null = gemvShimPath()): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = withoutSecrets(base);
  if (process.platform === 'linux') {
    if (shim && base.MLXBAR_GEMV_SHIM !== '0') {
      const own = (base.LD_PRELOAD ?? '').split(/[\s:]+/).filter((p) => p && p !== shim);
      env.LD_PRELOAD = [shim, ...own].join(' ');
    }
    const { dir } = findOpenBlasDir(base);
    if (dir) {
      const rest = (base.LD_LIBRARY_PATH ?? '').split(':').filter((p) => p && p !== dir);
      env.LD_LIBRARY_PATH = [dir, ...rest].join(':');
    }
    const own = base.GLIBC_TUNABLES ?? '';
    if (!own.includes('glibc.malloc.')) env.GLIBC_TUNABLES = own ? `${own}:${ENGINE_MALLOC_TUNABLES}` : ENGINE_MALLOC_TUNABLES;
  }
  if (!env.OPENBLAS_NUM_THREADS) {
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    env.OPENBLAS_NUM_THREADS = String(Math.max(1, cores));
  }
  return env;
}

/**
 * Which BLAS this process has actually mapped: 'openblas' when a mapped BLAS file's path names
 * OpenBLAS, 'reference' when only another libblas is mapped, 'unknown' off Linux or before the
 * native binding loaded a BLAS.
 */
export function detectLoadedBlas(mapsText?: string): 'openblas' | 'reference' | 'unknown' {
  let maps = mapsText;
  if (maps === undefined) {
    if (process.platform !== 'linux') return 'unknown';
    try {
      maps = readFileSync('/proc/self/maps', 'utf8');
    } catch {
      return 'unknown';
    }
  }
  // Judge by the file that provides the soname `libblas.so.3` (what mlx.node links). LAPACK may map
  // libopenblas.so.0 on its own even when the reference libblas serves cblas_sgemm, so a mapped
  // libopenblas alone only counts when no libblas file is mapped at all.
  const blasFiles = new Set<string>();
  let sawOpenBlasCore = false;
  for (const line of maps.split('\n')) {
    const slash = line.indexOf('/');
    if (slash < 0) continue;
    const file = line.slice(slash).trim();
    const base = path.basename(file).toLowerCase();
    if (base.startsWith('libblas.so') || base.startsWith('libcblas.so')) blasFiles.add(file.toLowerCase());
    else if (base.startsWith('libopenblas')) sawOpenBlasCore = true;
  }
  if (blasFiles.size > 0) return [...blasFiles].every((f) => f.includes('openblas')) ? 'openblas' : 'reference';
  return sawOpenBlasCore ? 'openblas' : 'unknown';
}
