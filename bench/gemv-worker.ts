// Child process of the engine bench: times ONE bare matrix-vector product x[1,K] @ W^T over a
// float32 W holding `bytes` bytes, i.e. the floor a decode step that reads every weight once
// cannot beat with this BLAS. Runs with the engine process environment (OpenBLAS forced), so
// the comparison is like for like. Prints one JSON line: { ms, gbPerS, blas }.
import { core as mx } from '@frost-beta/mlx';
import { performance } from 'node:perf_hooks';
import { detectLoadedBlas } from '../main/engine/process/blas.ts';

const bytes = Number(process.argv[2]);
const K = Number(process.argv[3] ?? 1024);
const reps = Number(process.argv[4] ?? 7);
const N = Math.max(1, Math.round(bytes / 4 / K));
const W = mx.random.normal([N, K], mx.float32);
const x = mx.random.normal([1, K], mx.float32);
mx.eval(W, x);
const times: number[] = [];
for (let i = 0; i < reps + 1; i++) {
  const t = performance.now();
  const y = mx.matmul(x, mx.transpose(W));
  mx.eval(y);
  if (i > 0) times.push(performance.now() - t); // first run warms caches/threads
  await new Promise((r) => setImmediate(r));
}
times.sort((a, b) => a - b);
// Best run: the box is shared, and the decode side is a best-of too, so the ratio compares like
// with like. The median is reported alongside.
const ms = times[0];
const medianMs = times[Math.floor(times.length / 2)];
process.stdout.write(JSON.stringify({ ms, medianMs, gbPerS: (N * K * 4) / (ms / 1000) / 1e9, rows: N, cols: K, blas: detectLoadedBlas() }) + '\n');
