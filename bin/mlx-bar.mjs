#!/usr/bin/env node
// `mlx-bar` command. Runs the built CLI (dist/main/cli/index.js) when it exists; otherwise runs the
// TypeScript sources through tsx's ESM loader (development checkouts, `npm link`).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = path.join(root, 'dist', 'main', 'cli', 'index.js');

async function load() {
  if (existsSync(built)) return import(pathToFileURL(built).href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(pathToFileURL(path.join(root, 'main', 'cli', 'index.ts')).href);
}

try {
  const { runCli } = await load();
  const code = await runCli(process.argv.slice(2));
  process.exitCode = code;
  // Leftover library timers must not keep a finished command alive.
  setImmediate(() => process.exit(code));
} catch (err) {
  // No stack traces for users; the message is kept short.
  const msg = String(err?.message ?? err)
    .split('\n')[0]
    .replace(/(?:file:\/\/)?(?:[A-Za-z]:)?[\\/][^\s'"`]*[\\/][^\s'"`]*/g, '[path]')
    .slice(0, 300);
  console.error(`mlx-bar: ${msg}`);
  process.exit(2);
}
