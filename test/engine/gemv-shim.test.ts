// The engine's one-row product shim (main/engine/process/gemv-shim.c, preloaded into the engine
// process on Linux): MLX's one-row cblas_sgemm calls become cblas_sgemv. Checked in a real child
// process with the built shim preloaded: every form MLX passes (A·Wᵀ, A·W, addmm with alpha/beta,
// batched, a column view as A — MLX copies it to a row, so the shim's transposed-A branch is not
// reachable through MLX — and N = 1) gives the float64 reference's result with the shim on and off,
// the shim rewrote exactly the one-row calls (its trace), and several rows pass through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { engineProcessEnv, gemvShimPath } from '../../main/engine/process/blas.ts';

const hasCompiler = process.platform === 'linux' && spawnSync(process.env.CC || 'cc', ['--version']).status === 0;

test('one-row products through the shim equal the float64 reference; only one-row calls are rewritten', {
  skip: !hasCompiler && 'Linux with a C compiler only (the shim is built by npm ci where one exists)',
}, async () => {
  const shim = gemvShimPath();
  assert.ok(shim, 'npm ci built node_modules/.mlx-bar/libmlxbar-gemv.so (scripts/build-gemv-shim.mjs)');
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gemv-shim-child.ts');
  const env = engineProcessEnv(process.env, shim);
  assert.match(env.LD_PRELOAD ?? '', /libmlxbar-gemv\.so/);
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child], { env, timeout: 60_000 });
  const r = JSON.parse(stdout) as { loaded: boolean; cases: Record<string, { off: number[]; on: number[]; ref: number[] }> };
  assert.equal(r.loaded, true, 'the child has the shim mapped');

  // Trace lines per case (the child writes "case <name>" before the shim-on run of each case).
  const traced: Record<string, number> = {};
  let current = '';
  for (const line of stderr.split('\n')) {
    if (line.startsWith('case ')) traced[(current = line.slice(5))] = 0;
    else if (line.startsWith('mlxbar-gemv-shim: sgemv')) traced[current || 'before any case'] = (traced[current || 'before any case'] ?? 0) + 1;
  }
  assert.equal(traced['before any case'], undefined, 'nothing rewritten with MLXBAR_GEMV_SHIM=0');
  for (const name of ['nt', 'nn', 'addmm', 'column', 'n1']) assert.ok(traced[name] >= 1, `${name}: rewritten (${traced[name]})`);
  assert.ok(traced.batched >= 3, `batched: one rewrite per batch element (${traced.batched})`);
  assert.equal(traced.rows4, 0, 'four rows go to sgemm unchanged');

  for (const [name, c] of Object.entries(r.cases)) {
    assert.equal(c.on.length, c.ref.length, name);
    for (let i = 0; i < c.ref.length; i++) {
      assert.ok(Math.abs(c.on[i] - c.ref[i]) <= 1e-4 * (1 + Math.abs(c.ref[i])), `${name}[${i}] shim on: ${c.on[i]} vs ${c.ref[i]}`);
      assert.ok(Math.abs(c.off[i] - c.ref[i]) <= 1e-4 * (1 + Math.abs(c.ref[i])), `${name}[${i}] shim off: ${c.off[i]} vs ${c.ref[i]}`);
    }
  }
});

test('engine environment (Linux): the shim is preloaded ahead of a user\'s own LD_PRELOAD; MLXBAR_GEMV_SHIM=0 leaves it out', { skip: process.platform !== 'linux' && 'Linux only' }, () => {
  const shim = '/opt/x/libmlxbar-gemv.so';
  assert.equal(engineProcessEnv({}, shim).LD_PRELOAD, shim);
  assert.equal(engineProcessEnv({ LD_PRELOAD: '/a.so:/b.so' }, shim).LD_PRELOAD, `${shim} /a.so /b.so`);
  assert.equal(engineProcessEnv({ LD_PRELOAD: `${shim} /a.so` }, shim).LD_PRELOAD, `${shim} /a.so`, 'not twice');
  assert.equal(engineProcessEnv({ MLXBAR_GEMV_SHIM: '0' }, shim).LD_PRELOAD, undefined);
  assert.equal(engineProcessEnv({ MLXBAR_GEMV_SHIM: '0', LD_PRELOAD: '/a.so' }, shim).LD_PRELOAD, '/a.so', 'a user\'s own preload stays');
  assert.equal(engineProcessEnv({}, null).LD_PRELOAD, undefined, 'not built: nothing preloaded');
});
