// Preflight of the native dependencies: MLX is loaded and runs one float32 matmul in a child process
// (an abort cannot kill the checker), with the engine's environment, and which BLAS it loaded.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { engineProcessEnv, detectLoadedBlas } from '../engine/process/blas.ts';
import type { PreflightCheck } from './preflight-report.ts';

const PROBE_SCRIPT = `
const t0 = Date.now();
const out = { loaded: false, matmul: false, ms: 0, blasFiles: [] };
try {
  const mlx = require(process.env.MLXBAR_PROBE_MLX);
  out.loaded = true;
  const mx = mlx.core;
  const a = mx.ones([32, 32], mx.float32);
  const b = mx.matmul(a, a);
  mx.eval(b);
  out.matmul = b.index(0, 0).item() === 32;
} catch (e) {
  out.error = String(e && e.message || e).split('\\n')[0].slice(0, 200);
}
try {
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  const files = new Set();
  for (const l of maps.split('\\n')) { const i = l.indexOf('/'); if (i >= 0 && /blas|lapack/i.test(l)) files.add(l.slice(i).trim()); }
  out.blasFiles = [...files];
} catch {}
out.ms = Date.now() - t0;
process.stdout.write(JSON.stringify(out));
`;

export interface NativeProbeResult {
  status: 'ok' | 'missing' | 'failed' | 'crashed' | 'timeout';
  blas: 'openblas' | 'reference' | 'unknown';
  detail: string;
  ms: number;
}

/** Loads MLX and runs one float32 matmul in a child process with the engine's environment
 *  (OpenBLAS first on LD_LIBRARY_PATH, see main/engine/process/blas.ts). */
export function probeNative(env: NodeJS.ProcessEnv = process.env, timeoutMs = 30_000): Promise<NativeProbeResult> {
  let mlxPath: string;
  try {
    mlxPath = createRequire(import.meta.url).resolve('@frost-beta/mlx');
  } catch {
    return Promise.resolve({ status: 'missing', blas: 'unknown', detail: '@frost-beta/mlx is not installed', ms: 0 });
  }
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['-e', PROBE_SCRIPT], {
      env: { ...engineProcessEnv(env), MLXBAR_PROBE_MLX: mlxPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout = (stdout + d).slice(-1_000_000)));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', () => {
      clearTimeout(timer);
      resolve({ status: 'failed', blas: 'unknown', detail: 'could not start a child process', ms: Date.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (timedOut) return resolve({ status: 'timeout', blas: 'unknown', detail: `no answer within ${Math.round(timeoutMs / 1000)} s`, ms });
      let r: { loaded?: boolean; matmul?: boolean; error?: string; blasFiles?: string[] } = {};
      try {
        r = JSON.parse(stdout);
      } catch {
        // crashed before printing
      }
      const blas = process.platform === 'linux' && r.blasFiles ? detectLoadedBlas(r.blasFiles.map((f) => `0-0 r-xp 0 0:0 0 ${f}`).join('\n')) : 'unknown';
      if (signal || (code !== 0 && !r.loaded)) {
        const last = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
        return resolve({ status: 'crashed', blas, detail: `the MLX binding aborted (${signal ?? `exit ${code}`})${last ? `: ${last.slice(0, 160)}` : ''}`, ms });
      }
      if (!r.loaded) return resolve({ status: 'failed', blas, detail: `the MLX binding did not load${r.error ? `: ${r.error}` : ''}`, ms });
      if (!r.matmul) return resolve({ status: 'failed', blas, detail: `a float32 matmul failed${r.error ? `: ${r.error}` : ''}`, ms });
      resolve({ status: 'ok', blas, detail: 'MLX loaded and a float32 matmul ran', ms });
    });
  });
}

export async function checkNative(env: NodeJS.ProcessEnv, out: PreflightCheck[], timeoutMs: number): Promise<void> {
  const r = await probeNative(env, timeoutMs);
  if (r.status === 'ok') out.push({ id: 'native-mlx', status: 'ok', message: `${r.detail} (${r.ms} ms, in a child process)`, hint: null });
  else
    out.push({
      id: 'native-mlx',
      status: 'error',
      message: `MLX is not usable: ${r.detail}`,
      hint: r.status === 'missing' ? 'Run npm ci in the app folder' : 'Install the runtime libraries: apt-get install libblas3 liblapack3 libopenblas0-pthread',
    });
  if (process.platform !== 'linux') return;
  if (r.blas === 'openblas') out.push({ id: 'blas', status: 'ok', message: 'OpenBLAS is active', hint: null });
  else if (r.blas === 'reference')
    out.push({
      id: 'blas',
      status: 'warn',
      message: 'The reference BLAS is in use: prompt processing will be 30–70× slower than with OpenBLAS',
      hint: 'apt-get install libopenblas0-pthread, or set MLXBAR_BLAS_DIR to a folder with an OpenBLAS libblas.so.3',
    });
  else if (r.status === 'ok') out.push({ id: 'blas', status: 'warn', message: 'Could not tell which BLAS library MLX loaded', hint: null });
}

