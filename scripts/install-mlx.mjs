#!/usr/bin/env node
// Runs after `npm ci` / `npm install` for this project (root lifecycle script).
//
// @frost-beta/mlx 0.0.7 ships a Linux x64 CPU build of mlx.node inside its tarball, but its own
// install script unconditionally downloads a per-platform binary from GitHub. package.json
// denies that script ("allowScripts": {"@frost-beta/mlx": false}, honoured by npm >= 11.19) so a
// plain `npm ci` works offline here. This script then decides whether the bundled binary fits:
//   - linux-x64 and the bundled file is an x86-64 ELF: keep it, nothing to download;
//   - any other platform (macOS arm64 wants the Metal build + mlx.metallib): run the package's
//     own downloader, exactly as the package would have.
// Set MLXBAR_SKIP_MLX_DOWNLOAD=1 to skip the download anyway (e.g. air-gapped CI on macOS).
import { spawnSync } from 'node:child_process';
import { openSync, readSync, closeSync, existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
let pkgDir;
try {
  pkgDir = path.dirname(require.resolve('@frost-beta/mlx/package.json'));
} catch {
  console.log('[mlx-bar] @frost-beta/mlx is not installed; nothing to do.');
  process.exit(0);
}
const binary = path.join(pkgDir, 'build', 'Release', 'mlx.node');

function bundledFitsThisPlatform() {
  if (process.platform !== 'linux' || process.arch !== 'x64' || !existsSync(binary)) return false;
  const fd = openSync(binary, 'r');
  try {
    const head = Buffer.alloc(20);
    readSync(fd, head, 0, 20, 0);
    const isElf = head.readUInt32BE(0) === 0x7f454c46;
    const machine = head.readUInt16LE(18); // e_machine: 0x3e = x86-64
    return isElf && machine === 0x3e;
  } finally {
    closeSync(fd);
  }
}

// Type declarations: the package's lib/index.d.ts re-exports its nn/optimizers/utils *sources*
// (.ts files), which then get type-checked under our strict settings and fail. We only use `core`,
// so write a copy of the declarations without those three re-exports where tsconfig's `paths`
// points (node_modules/.mlx-types), generated from the installed package, never vendored.
try {
  const src = readFileSync(path.join(pkgDir, 'lib', 'index.d.ts'), 'utf8');
  const stripped = src.replace(/^export \* as (nn|optimizers|utils) from '\.\/[a-z]+';$/gm, '');
  const outDir = path.join(pkgDir, '..', '..', '.mlx-types');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'index.d.ts'), stripped);
} catch (err) {
  console.warn(`[mlx-bar] could not write MLX type declarations: ${err.message}`);
}

if (bundledFitsThisPlatform()) {
  console.log('[mlx-bar] using the Linux x64 CPU build of MLX bundled in @frost-beta/mlx.');
  process.exit(0);
}
if (process.env.MLXBAR_SKIP_MLX_DOWNLOAD === '1') {
  console.log('[mlx-bar] MLXBAR_SKIP_MLX_DOWNLOAD=1: not downloading the MLX binary for this platform.');
  process.exit(0);
}
console.log(`[mlx-bar] ${process.platform}-${process.arch}: fetching the MLX build for this platform with the package's downloader.`);
const r = spawnSync(process.execPath, ['install.js'], { cwd: pkgDir, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
// The Metal build finds its GPU kernels in mlx.metallib NEXT TO mlx.node (MLX looks beside the
// binary that contains it); the package's downloader writes both into build/Release. Check it, so a
// half-finished download fails here and not at the first request.
const metallib = path.join(pkgDir, 'build', 'Release', 'mlx.metallib');
if (!existsSync(binary) || (process.platform === 'darwin' && process.arch === 'arm64' && !existsSync(metallib))) {
  console.error(`[mlx-bar] the MLX download is incomplete: expected build/Release/mlx.node${process.platform === 'darwin' ? ' and mlx.metallib' : ''} in @frost-beta/mlx. Run \`npm rebuild @frost-beta/mlx\` or \`node scripts/install-mlx.mjs\` again.`);
  process.exit(1);
}
console.log(`[mlx-bar] MLX for ${process.platform}-${process.arch} installed${existsSync(metallib) ? ' (with mlx.metallib next to mlx.node)' : ''}.`);
process.exit(0);
