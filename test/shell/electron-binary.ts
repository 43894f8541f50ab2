// Finds a runnable Electron binary WITHOUT require('electron') (which tries to download it and
// throws here). Returns the binary, or why the Electron tests must be skipped.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { repoRoot } from '../renderer/build-once.ts';

export type ElectronLookup = { binary: string } | { skip: string };

export function findElectron(): ElectronLookup {
  let pkgDir: string;
  try {
    pkgDir = path.dirname(createRequire(path.join(repoRoot, 'package.json')).resolve('electron/package.json'));
  } catch {
    return { skip: 'electron package not installed' };
  }
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  let rel = '';
  try {
    rel = readFileSync(path.join(pkgDir, 'path.txt'), 'utf8').trim();
  } catch {
    /* no path.txt: the binary was never downloaded */
  }
  const name = rel || (process.platform === 'darwin' ? 'Electron.app/Contents/MacOS/Electron' : process.platform === 'win32' ? 'electron.exe' : 'electron');
  const bin = override ? path.join(override, name) : path.join(pkgDir, 'dist', name);
  if (!existsSync(bin)) {
    return {
      skip: override
        ? `no Electron binary at ELECTRON_OVERRIDE_DIST_PATH (${name} missing)`
        : 'no Electron binary (node_modules/electron/dist missing; the binary is downloaded lazily from GitHub, which this machine cannot reach)',
    };
  }
  if (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) {
    return { skip: 'Electron binary present but no display: run under xvfb-run' };
  }
  return { binary: bin };
}
