// Child of gemv-shim.test.ts, started with the shim preloaded (LD_PRELOAD). Computes one-row
// products in every form MLX hands to cblas_sgemm, with the shim off (MLXBAR_GEMV_SHIM=0) and in
// trace mode, plus a float64 reference; prints JSON. Writes "case <name>" to stderr before each
// case so the parent can attribute the shim's trace lines (stderr to a pipe is synchronous here).
import { core as mx } from '@frost-beta/mlx';
import { gemvShimLoaded } from '../../main/engine/process/blas.ts';

type Mat = number[][];
const mat = (a: mx.array): Mat => a.tolist() as Mat;
const mul = (A: Mat, B: Mat): Mat => A.map((r) => B[0].map((_, j) => r.reduce((s, v, k) => s + v * B[k][j], 0)));
const T = (A: Mat): Mat => A[0].map((_, j) => A.map((r) => r[j]));

mx.random.seed(7);
const K = 64, N = 48;
const x = mx.random.normal([1, K]);
const X4 = mx.random.normal([4, K]);
const W = mx.random.normal([N, K]);
const Wt = mx.add(W.T, mx.array(0)); // [K, N] row-major
const c = mx.random.normal([1, N]);
const xb = mx.random.normal([3, 1, K]);
const Wb = mx.random.normal([3, K, N]);
const Y = mx.random.normal([K, 5]);
const w1 = mx.random.normal([K, 1]);
mx.eval(x, X4, W, Wt, c, xb, Wb, Y, w1);

const cases: Record<string, { run: () => mx.array; ref: () => number[] }> = {
  nt: { run: () => mx.matmul(x, W.T), ref: () => mul(mat(x), T(mat(W))).flat() },
  nn: { run: () => mx.matmul(x, Wt), ref: () => mul(mat(x), mat(Wt)).flat() },
  addmm: {
    run: () => mx.addmm(c, x, W.T, 0.5, 2),
    ref: () => mul(mat(x), T(mat(W)))[0].map((v, j) => 0.5 * v + 2 * mat(c)[0][j]),
  },
  batched: {
    run: () => mx.matmul(xb, Wb),
    ref: () => [0, 1, 2].flatMap((b) => mul(mat(xb.index(b)), mat(Wb.index(b))).flat()),
  },
  column: {
    run: () => mx.matmul(Y.index(mx.Slice(), mx.Slice(2, 3)).T, W.T),
    ref: () => mul([mat(Y).map((r) => r[2])], T(mat(W))).flat(),
  },
  n1: { run: () => mx.matmul(x, w1), ref: () => mul(mat(x), mat(w1)).flat() },
  rows4: { run: () => mx.matmul(X4, W.T), ref: () => mul(mat(X4), T(mat(W))).flat() },
};

const out: Record<string, { off: number[]; on: number[]; ref: number[] }> = {};
for (const [name, k] of Object.entries(cases)) {
  process.env.MLXBAR_GEMV_SHIM = '0';
  const off = k.run();
  mx.eval(off);
  process.stderr.write(`case ${name}\n`);
  process.env.MLXBAR_GEMV_SHIM = 'trace';
  const on = k.run();
  mx.eval(on);
  out[name] = { off: (mx.flatten(off).tolist() as number[]), on: (mx.flatten(on).tolist() as number[]), ref: k.ref() };
}
process.stdout.write(JSON.stringify({ loaded: gemvShimLoaded(), cases: out }));
