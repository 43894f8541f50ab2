// Only main/shell/ and preload/ may import `electron` (or electron-store, which imports it at load):
// importing it in plain Node throws, so anything headless must never reach it. Checked two ways:
// a source scan of every import form, and esbuild's import graph from the headless entry points.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { build } from 'esbuild';
import { repoRoot } from '../renderer/build-once.ts';

// test/shell exercises the shell's own modules (electron-store through the stub hook).
const ALLOWED = ['main/shell/', 'preload/', 'test/shell/'];
const SCANNED = ['main', 'preload', 'renderer', 'bench', 'scripts', 'bin', 'test'];
const EXT = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;
// import x from 'electron' | import 'electron' | export … from 'electron' | import('electron') | require('electron')
const VALUE_IMPORT = /(?:^|[\s;])(?:import(?!\s+type\b)[^'"`;]*?from\s*|import\s*|export(?!\s+type\b)[^'"`;]*?from\s*)['"](electron|electron-store)['"]|(?:import|require)\s*\(\s*['"](electron|electron-store)['"]\s*\)/m;

/** Drops comments (a mention of require('electron') in prose is not an import). */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    if (e === 'node_modules' || e === 'dist' || e === 'electron-stub') continue;
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (EXT.test(e)) out.push(p);
  }
  return out;
}

describe('electron import boundary', () => {
  test('the regex sees every import form (self-check)', () => {
    for (const src of ["import { app } from 'electron';", 'import electron from "electron"', "import 'electron';", "const e = await import('electron')", "const e = require('electron')", "export { app } from 'electron'", "import Store from 'electron-store'"]) {
      assert.match(src, VALUE_IMPORT, src);
    }
    for (const src of ["import type { WebPreferences } from 'electron';", "const s = 'electron';", "import x from 'electron-builder'", '// electron'])
      assert.doesNotMatch(src, VALUE_IMPORT, src);
  });

  test('no source outside main/shell and preload imports electron or electron-store', () => {
    const offenders: string[] = [];
    let scanned = 0;
    for (const top of SCANNED) {
      for (const file of walk(path.join(repoRoot, top))) {
        const rel = path.relative(repoRoot, file).split(path.sep).join('/');
        scanned++;
        if (ALLOWED.some((a) => rel.startsWith(a))) continue;
        if (VALUE_IMPORT.test(stripComments(readFileSync(file, 'utf8')))) offenders.push(rel);
      }
    }
    assert.ok(scanned > 50, `scanned ${scanned} files`);
    assert.deepEqual(offenders, []);
  });

  test('the headless entry points never reach electron (esbuild import graph)', { timeout: 60_000 }, async () => {
    const entries = ['main/cli/index.ts', 'main/server/index.ts', 'main/engine/process/engine-main.ts', 'main/shell/controller.ts', 'main/shell/app-models.ts', 'main/shell/core-api.ts', 'main/shell/core.ts', 'main/settings/service.ts', 'main/shell/tray-model.ts', 'main/shell/url-policy.ts', 'main/shell/ipc-guard.ts', 'main/shell/window-options.ts', 'main/shell/utility-spawner.ts'].filter((e) => existsSync(path.join(repoRoot, e)));
    assert.ok(entries.includes('main/shell/controller.ts'));
    const r = await build({ absWorkingDir: repoRoot, entryPoints: entries, bundle: true, write: false, outdir: 'out', platform: 'node', format: 'esm', packages: 'external', metafile: true, logLevel: 'silent', splitting: true });
    const reach: string[] = [];
    for (const [file, info] of Object.entries(r.metafile.inputs)) {
      for (const imp of info.imports) if (imp.path === 'electron' || imp.path === 'electron-store') reach.push(`${file} -> ${imp.path}`);
    }
    assert.deepEqual(reach, []);
    // And the shell entry does reach it (the check is not vacuous).
    const shell = await build({ absWorkingDir: repoRoot, entryPoints: ['main/shell/index.ts'], bundle: true, write: false, outdir: 'out', platform: 'node', format: 'esm', packages: 'external', metafile: true, logLevel: 'silent', splitting: true });
    const shellImports = Object.values(shell.metafile.inputs).flatMap((i) => i.imports.map((x) => x.path));
    assert.ok(shellImports.includes('electron') && shellImports.includes('electron-store'));
  });
});
