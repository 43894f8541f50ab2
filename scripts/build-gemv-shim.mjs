#!/usr/bin/env node
// Runs after `npm ci` (package.json postinstall, after install-mlx.mjs). On Linux, compiles the
// engine's one-row product shim (main/engine/process/gemv-shim.c: a one-row cblas_sgemm becomes
// cblas_sgemv — ~2.6x the speed of OpenBLAS 0.3.21's sgemm for a decode step's products) into
// node_modules/.mlx-bar/, where the engine process preloads it from (blas.ts). Needs a C compiler
// (`cc`, or $CC); without one the engine runs without the shim (slower decoding, same results)
// and this script says so. Never fails the install. Elsewhere (macOS: Metal) nothing to do.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'main', 'engine', 'process', 'gemv-shim.c');
const outDir = path.join(root, 'node_modules', '.mlx-bar');
const out = path.join(outDir, 'libmlxbar-gemv.so');

if (process.platform !== 'linux') process.exit(0);
if (!existsSync(src)) {
  console.warn('[mlx-bar] gemv-shim.c not found; skipping the one-row product shim.');
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
const cc = process.env.CC || 'cc';
const r = spawnSync(cc, ['-O2', '-fPIC', '-shared', '-Wall', '-o', tmp, src, '-ldl', '-lpthread'], { encoding: 'utf8' });
if (r.status === 0) {
  renameSync(tmp, out);
  console.log('[mlx-bar] built the engine\'s one-row product shim (faster CPU decoding).');
} else {
  rmSync(tmp, { force: true });
  const why = r.error ? `${cc} not found` : (r.stderr || '').trim().split('\n').slice(-3).join(' | ');
  console.warn(`[mlx-bar] could not build the one-row product shim (${why}); the engine will decode without it (slower on the CPU build). Install a C compiler (e.g. apt-get install gcc) and run npm ci again.`);
}
