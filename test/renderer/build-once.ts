// Builds what the app tests need (renderer with vite, preload and main with esbuild) at most once
// per source change: a stamp of the newest source mtime is kept next to the output, and a
// directory lock serializes concurrent test files (node --test runs files in parallel).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function newestMtime(dirs: string[]): number {
  let newest = 0;
  const walk = (p: string) => {
    let st;
    try { st = statSync(p); } catch { return; }
    if (st.isDirectory()) {
      if (p.endsWith('node_modules')) return;
      for (const e of readdirSync(p)) walk(path.join(p, e));
    } else if (st.mtimeMs > newest) newest = st.mtimeMs;
  };
  for (const d of dirs) walk(path.join(repoRoot, d));
  return newest;
}

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(repoRoot, 'node_modules', '.cache', 'mlxbar', `${name}.lock`);
  mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than 3 minutes belongs to a build that died.
      try { if (Date.now() - statSync(lock).mtimeMs > 180_000) rmSync(lock, { recursive: true, force: true }); } catch { /* gone */ }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the ${name} build lock`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

async function buildIfStale(name: string, sources: string[], output: string, cmd: string[]): Promise<void> {
  await withLock(name, async () => {
    const stampFile = path.join(repoRoot, 'node_modules', '.cache', 'mlxbar', `${name}.stamp`);
    const newest = String(newestMtime(sources));
    const stamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8') : '';
    if (stamp === newest && existsSync(path.join(repoRoot, output))) return;
    await run(process.execPath, cmd, { cwd: repoRoot, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
    writeFileSync(stampFile, newest);
  });
}

export async function ensureRendererBuilt(): Promise<string> {
  await buildIfStale(
    'renderer',
    ['renderer', 'main/settings/schema.ts', 'main/common/metrics-types.ts', 'preload/api.ts'],
    'dist/renderer/index.html',
    [path.join(repoRoot, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'renderer/vite.config.ts'],
  );
  return path.join(repoRoot, 'dist/renderer');
}

export async function ensurePreloadBuilt(): Promise<string> {
  // Same command as `npm run build:preload` (esbuild's JS API through node, no shell).
  await buildIfStale('preload', ['preload', 'main/common/metrics-types.ts'], 'dist/preload/index.cjs', [
    '-e',
    "require('esbuild').buildSync({entryPoints:['preload/index.ts'],bundle:true,platform:'node',format:'cjs',external:['electron'],outfile:'dist/preload/index.cjs',logLevel:'warning'})",
  ]);
  return path.join(repoRoot, 'dist/preload/index.cjs');
}

export async function ensureMainBuilt(): Promise<string> {
  await buildIfStale('main', ['main', 'preload', 'scripts/build-main.mjs'], 'dist/main/shell/index.js', [path.join(repoRoot, 'scripts/build-main.mjs')]);
  return path.join(repoRoot, 'dist/main');
}
