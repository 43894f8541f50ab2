// The capability probe's child process: `node probe-child.(ts|js) <item>` runs ONE item and prints
// JSON lines on stdout. Items (argv[2] or MLXBAR_PROBE_ITEM): `basics` (GPU, 4-bit quantizedMatmul speed, memory counters and
// limits, compile) and `half:float16` / `half:bfloat16` (every op the half-precision compute path
// needs). A half op the build cannot run aborts this process (exit 134 on the CPU build of 0.0.7,
// uncatchable); so each op is announced with a {"start": op} line first and the parent knows which
// one died. Never imported by the app: only spawned (probe.ts).
import { core as mx } from '@frost-beta/mlx';
import { performance } from 'node:perf_hooks';

/** Standard-normal float32 test data (deterministic: seeded once below). */
const rnd = (shape: number[]): mx.array => mx.random.normal(shape, mx.float32);
mx.random.seed(7);

const emit = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');

function qmm(x: mx.array, w: mx.array, s: mx.array, b: mx.array, gs: number, bits: number): mx.array {
  // The binding's real argument order is (x, w, ...) although its .d.ts says (w, x).
  return (mx.quantizedMatmul as unknown as (...a: unknown[]) => mx.array)(x, w, s, b, true, gs, bits);
}

/** Median ms of `fn` (evaluated); fewer repeats when one run is slow, so a slow kernel costs little. */
function time(fn: () => mx.array): number {
  mx.eval(fn()); // warm-up (first-use kernel paths, page faults)
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    mx.eval(fn());
    runs.push(performance.now() - t0);
    if (runs.reduce((a, b) => a + b, 0) > 400) break;
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)];
}

function maxRelErr(got: mx.array, want: mx.array): number {
  const d = mx.max(mx.abs(mx.subtract(got.astype(mx.float32), want))).item() as number;
  const m = mx.max(mx.abs(want)).item() as number;
  return d / Math.max(m, 1e-6);
}

function basics(): void {
  // GPU / Metal device
  let gpu = { available: false, detail: '' };
  try {
    const available = mx.metal.isAvailable();
    let detail = available ? `default device ${String(mx.defaultDevice())}` : 'no Metal backend in this build (CPU only)';
    if (available) {
      try {
        const info = mx.metal.deviceInfo() as Record<string, unknown>;
        detail = `${String(info.architecture ?? info.device_name ?? 'Metal device')}, ${Math.round(Number(info.memory_size ?? 0) / 2 ** 30)} GiB`;
      } catch {
        /* deviceInfo is informative only */
      }
    }
    gpu = { available, detail };
  } catch (e) {
    gpu = { available: false, detail: `metal.isAvailable failed: ${(e as Error).message}` };
  }
  emit({ gpu });

  // 4-bit quantizedMatmul against the float32 matmul of the same (dequantized) weight.
  const N = 2048;
  const w = rnd([N, N]);
  const [wq, sc, bi] = mx.quantize(w, 64, 4) as unknown as mx.array[];
  const wd = mx.dequantize(wq, sc, bi, 64, 4);
  mx.eval(wq, sc, bi, wd);
  const x1 = rnd([1, N]);
  const xp = rnd([32, N]);
  let q: Record<string, unknown>;
  try {
    const err = maxRelErr(qmm(xp, wq, sc, bi, 64, 4), mx.matmul(xp, wd.T));
    const q4DecodeMs = time(() => qmm(x1, wq, sc, bi, 64, 4));
    const f32DecodeMs = time(() => mx.matmul(x1, wd.T));
    const q4PrefillMs = time(() => qmm(xp, wq, sc, bi, 64, 4));
    const f32PrefillMs = time(() => mx.matmul(xp, wd.T));
    // "Fast" = the packed path does not cost speed: decode at most as slow as float32 (it reads 1/6
    // of the bytes, so on a GPU it is faster) and prefill at most 2x the float32 time.
    const fast = err < 1e-3 && q4DecodeMs <= f32DecodeMs * 1.0 && q4PrefillMs <= f32PrefillMs * 2;
    const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
    q = {
      fast,
      q4DecodeMs,
      f32DecodeMs,
      q4PrefillMs,
      f32PrefillMs,
      detail:
        err >= 1e-3
          ? `wrong results (relative error ${err.toExponential(1)})`
          : `4-bit/float32 time: decode ${ratio(q4DecodeMs, f32DecodeMs)}, prefill (32 tokens) ${ratio(q4PrefillMs, f32PrefillMs)}`,
    };
  } catch (e) {
    q = { fast: false, q4DecodeMs: null, f32DecodeMs: null, q4PrefillMs: null, f32PrefillMs: null, detail: `failed: ${(e as Error).message}` };
  }
  emit({ quantizedMatmul: q });

  // Memory counters: an evaluated 64 MiB array must show up in active and peak memory.
  let memoryCounters = { works: false, detail: '' };
  try {
    const a = mx.zeros([4096, 4096], mx.float32);
    mx.eval(a);
    const active = mx.metal.getActiveMemory();
    const peak = mx.metal.getPeakMemory();
    const cache = mx.metal.getCacheMemory();
    const works = active >= 64 * 2 ** 20 && peak >= active;
    memoryCounters = {
      works,
      detail: works
        ? `active ${Math.round(active / 2 ** 20)} MiB with a 64 MiB array live (peak ${Math.round(peak / 2 ** 20)}, cache ${Math.round(cache / 2 ** 20)})`
        : `getActiveMemory/getPeakMemory read ${active}/${peak} with a 64 MiB array live (not implemented on this build)`,
    };
  } catch (e) {
    memoryCounters = { works: false, detail: `failed: ${(e as Error).message}` };
  }
  emit({ memoryCounters });

  // Limits: on Metal the setters return the previous limit (> 0); the CPU build's are no-ops returning 0.
  let memoryLimits = { works: false, detail: '' };
  try {
    const m = mx.metal as unknown as Record<string, unknown>;
    if (typeof m.setMemoryLimit !== 'function' || typeof m.setCacheLimit !== 'function') {
      memoryLimits = { works: false, detail: 'the binding has no setMemoryLimit/setCacheLimit' };
    } else {
      const prevCache = mx.metal.setCacheLimit(1 << 30);
      const prevMem = (mx.metal.setMemoryLimit as unknown as (n: number, relaxed: boolean) => number)(8 * 2 ** 30, true);
      const works = prevCache > 0 && prevMem > 0;
      memoryLimits = {
        works,
        detail: works
          ? `default limits: memory ${Math.round(prevMem / 2 ** 20)} MiB, cache ${Math.round(prevCache / 2 ** 20)} MiB`
          : 'setMemoryLimit/setCacheLimit are no-ops on this build (they return 0)',
      };
    }
  } catch (e) {
    memoryLimits = { works: false, detail: `failed: ${(e as Error).message}` };
  }
  emit({ memoryLimits });

  let compile = { available: typeof mx.compile === 'function', works: false, detail: '' };
  if (compile.available) {
    try {
      const f = (a: mx.array, b: mx.array) => mx.add(mx.multiply(a, mx.sigmoid(a)), b);
      const c = mx.compile(f as never) as unknown as (a: mx.array, b: mx.array) => mx.array;
      const a = rnd([4, 64]);
      const b = rnd([4, 64]);
      const err = maxRelErr(c(a, b), f(a, b));
      compile = { available: true, works: err < 1e-6, detail: err < 1e-6 ? 'mx.compile runs and matches the uncompiled function' : `mx.compile gives different results (${err})` };
    } catch (e) {
      compile = { available: true, works: false, detail: `mx.compile failed: ${(e as Error).message}` };
    }
  } else compile.detail = 'the binding has no mx.compile';
  emit({ compile });
}

/** Every op of the half-precision compute path, in dtype `d`, against the same op in float32. */
function half(name: string): void {
  const d = name === 'float16' ? mx.float16 : name === 'bfloat16' ? mx.bfloat16 : null;
  if (!d) throw new Error(`unknown dtype ${name}`);
  const tol = name === 'float16' ? 1e-2 : 6e-2;
  const x = rnd([8, 256]);
  const w = rnd([256, 256]);
  const q = rnd([1, 4, 8, 64]);
  const kk = rnd([1, 2, 8, 64]);
  const v = rnd([1, 2, 8, 64]);
  const mask = mx.where(
    mx.lessEqual(mx.arange(0, 8, 1, mx.int32).reshape(1, 8), mx.arange(0, 8, 1, mx.int32).reshape(8, 1)),
    mx.array(0, mx.float32),
    mx.array(-Infinity, mx.float32),
  );
  const nw = rnd([256]);
  mx.eval(x, w, q, kk, v, mask, nw);
  const [wq, sc, bi] = mx.quantize(w, 64, 4) as unknown as mx.array[];
  const wd = mx.dequantize(wq, sc, bi, 64, 4);
  const h = (a: mx.array) => a.astype(d);
  const ops: [string, () => mx.array, () => mx.array, boolean][] = [
    // [op, half version, float32 version, time it against float32]
    ['matmul', () => mx.matmul(h(x), h(w).T), () => mx.matmul(x, w.T), true],
    ['attention', () => mx.fast.scaledDotProductAttention(h(q), h(kk), h(v), 0.125, h(mask)), () => mx.fast.scaledDotProductAttention(q, kk, v, 0.125, mask), false],
    ['quantizedMatmul', () => qmm(h(x), wq, h(sc), h(bi), 64, 4), () => mx.matmul(x, wd.T), true],
    ['rmsNorm', () => mx.fast.rmsNorm(h(x), h(nw), 1e-6), () => mx.fast.rmsNorm(x, nw, 1e-6), false],
    ['rope', () => mx.fast.rope(h(q), 64, false, 10000, 1, 5), () => mx.fast.rope(q, 64, false, 10000, 1, 5), false],
  ];
  for (const [op, fh, ff, timed] of ops) {
    emit({ start: op });
    const got = fh();
    mx.eval(got); // an unsupported op aborts the process right here
    if (got.dtype !== d) {
      emit({ op, ok: false, detail: `${op} returned ${String(got.dtype)}` });
      return;
    }
    const err = maxRelErr(got, ff());
    if (!(err <= tol)) {
      emit({ op, ok: false, detail: `${op} relative error ${err.toExponential(1)} (limit ${tol})` });
      return;
    }
    if (timed) {
      const th = time(fh);
      const tf = time(ff);
      // A software fallback (e.g. CPU half arithmetic) is correct but many times slower: not usable.
      if (th > tf * 3 && th > 1) {
        emit({ op, ok: false, detail: `${op} runs but is ${(th / tf).toFixed(0)}x slower than float32` });
        return;
      }
    }
    emit({ op, ok: true, err });
  }
  emit({ done: true });
}

// The item: argv (run by hand) or MLXBAR_PROBE_ITEM (spawned by probe.ts through an EngineSpawner).
const item = process.argv[2] || process.env.MLXBAR_PROBE_ITEM || '';
try {
  if (item === 'basics') basics();
  else if (item.startsWith('half:')) half(item.slice(5));
  else throw new Error(`unknown probe item "${item}"`);
  emit({ end: true });
} catch (e) {
  emit({ error: (e as Error).message });
  process.exitCode = 1;
}
// A fork()ed child has an IPC channel to the parent; do not let it keep this process alive.
process.disconnect?.();
