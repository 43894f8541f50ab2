#!/usr/bin/env node
// Bundles the main-process code of the packaged app with esbuild (ESM, Node platform, every npm
// package external so node_modules stays the single copy of each dependency):
//   dist/main/shell/index.js   Electron main entry (package.json "main")
//   dist/main/engine-main.js   engine process entry
//   dist/main/mlx-probe.js     MLX capability probe child (run once per MLX build)
//   dist/main/prompt-worker.js prompt worker thread (main/server/prompt-pool.ts starts it: large prompts
//                              are rendered + tokenized there, off the server's event loop)
//   dist/main/<chunk>.js       code behind dynamic imports (serve core, engine client, demo writer…)
// Layout matters: modules locate files relative to themselves. The chunks sit two levels below the
// app root (like main/cli/serve.ts does in the sources), so serve's `../..` is the app root and its
// dashboard is <app>/dist/renderer; the engine client's defaultEngineEntry() finds engine-main.js
// next to its chunk.
// Prints a one-line summary; `--metafile` also writes dist/main/meta.json (used by the boundary test).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist', 'main');
// Chunk names carry content hashes: start clean so stale chunks never reach the package.
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

const started = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: {
    'shell/index': 'main/shell/index.ts',
    'engine-main': 'main/engine/process/engine-main.ts',
    // The MLX capability probe's child (main/engine/probe/probe.ts spawns it; may abort by design).
    'mlx-probe': 'main/engine/probe/probe-child.ts',
    // The server's prompt worker thread (main/server/prompt-pool.ts finds it next to its chunk).
    'prompt-worker': 'main/server/prompt-worker.ts',
  },
  outdir,
  bundle: true,
  // Dynamic imports stay separate chunks, so e.g. the demo-model writer (which loads the native MLX
  // binding) is never loaded into the Electron main process unless used.
  splitting: true,
  chunkNames: '[name]-[hash]',
  platform: 'node',
  target: 'node20',
  format: 'esm',
  packages: 'external',
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});
if (process.argv.includes('--metafile')) writeFileSync(path.join(root, 'dist', 'main', 'meta.json'), JSON.stringify(result.metafile));
const outs = Object.entries(result.metafile.outputs)
  .filter(([f]) => f.endsWith('.js'))
  .map(([f, o]) => `${path.relative(root, f)} ${(o.bytes / 1024).toFixed(0)} kB`);
console.log(`build-main: ${outs.join(', ')} in ${Date.now() - started} ms`);
