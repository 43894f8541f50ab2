#!/usr/bin/env node
// `npm start`: the desktop app where an Electron binary exists; otherwise (this Linux box, CI, a
// server) the headless server on the embedded DEMO model, with the endpoint and dashboard URLs
// printed. Electron is detected WITHOUT require('electron') (which throws when the binary download
// failed): resolve electron/package.json, read its path.txt, check dist/<binary> exists.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

export function findElectronBinary(from = root) {
  try {
    const req = createRequire(path.join(from, 'package.json'));
    const pkgDir = path.dirname(req.resolve('electron/package.json'));
    const rel = readFileSync(path.join(pkgDir, 'path.txt'), 'utf8').trim();
    if (!rel) return null;
    const bin = path.join(pkgDir, 'dist', rel);
    return existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

function run(cmd, argv) {
  const child = spawn(cmd, argv, { cwd: root, stdio: 'inherit' });
  let killTimer = null;
  const forward = (sig) => {
    child.kill(sig);
    // a server that does not shut down cleanly in time is stopped anyway (it stops its engine itself)
    killTimer ??= setTimeout(() => child.kill('SIGKILL'), 15_000);
    killTimer.unref();
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward);
  // `kill <pid of npm>` (systemd, Docker, a plain kill): npm passes SIGTERM to its `sh -c`, which dies
  // without passing it on, and this script is orphaned with the server still running. So stop the
  // server as soon as our parent is gone (on Linux/macOS the orphan is re-parented: ppid changes).
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watch);
      forward('SIGTERM');
    }
  }, 250);
  watch.unref();
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
  child.on('error', (err) => {
    console.error(`start: could not launch (${err.code ?? 'error'})`);
    process.exit(2);
  });
}

/** `npm ci && npm start` must be enough: build what is missing (once) before starting. */
function ensureBuilt(marker, script) {
  if (existsSync(path.join(root, marker))) return;
  console.log(`First start: building (npm run ${script})…`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['run', '-s', script], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`start: npm run ${script} failed`);
    process.exit(2);
  }
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const electron = findElectronBinary();
  if (electron) {
    ensureBuilt(path.join('dist', 'main', 'shell', 'index.js'), 'build');
    run(electron, [root, ...args]);
  } else {
    const userModel = args.includes('--model') || args.some((a) => a.startsWith('--model=')) || !!process.env.MLXBAR_MODEL;
    console.log('No Electron binary on this machine: starting the headless server instead.');
    ensureBuilt(path.join('dist', 'renderer', 'index.html'), 'build:renderer'); // the dashboard
    if (!userModel) console.log('No --model given: using the embedded DEMO model (random weights, gibberish output).');
    run(process.execPath, [path.join(root, 'bin', 'mlx-bar.mjs'), 'serve', ...(userModel ? [] : ['--demo']), ...args]);
  }
}
