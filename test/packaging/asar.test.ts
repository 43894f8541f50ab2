// Packaging offline: electron-builder --dir with a stand-in Electron dist (a two-line script named
// like the binary), then the app.asar contents are checked with @electron/asar: the bundled main
// code, the ONE-file preload and the built renderer are in; TypeScript sources, tests, source maps
// and the bundled-only packages (react, recharts, vite, electron…) are out; production
// dependencies and the tray assets are there. Also: the config passes electron-builder's schema
// validation, and a broken config is rejected.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { ensureMainBuilt, ensurePreloadBuilt, ensureRendererBuilt, repoRoot } from '../renderer/build-once.ts';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

function builderCli(): string | null {
  try {
    return path.join(path.dirname(require.resolve('electron-builder/package.json')), 'cli.js');
  } catch {
    return null;
  }
}
const cli = builderCli();
const skipReason = !cli || !existsSync(cli) ? 'electron-builder is not installed' : process.platform !== 'linux' ? 'the stub Electron dist is Linux-only' : false;

async function loadYamlConfig(): Promise<Record<string, unknown>> {
  const yaml = require('js-yaml') as { load(s: string): unknown };
  return yaml.load(readFileSync(path.join(repoRoot, 'electron-builder.yml'), 'utf8')) as Record<string, unknown>;
}

test('electron-builder.yml: valid for electron-builder, menu-bar app on macOS, AppImage + deb on Linux', { skip: skipReason }, async () => {
  const cfg = await loadYamlConfig();
  const { validateConfiguration } = require('app-builder-lib/out/util/config/config') as { validateConfiguration(c: unknown, log: unknown): Promise<void> };
  const { DebugLogger } = require('builder-util') as { DebugLogger: new (enabled: boolean) => unknown };
  await validateConfiguration(cfg, new DebugLogger(false));
  await assert.rejects(validateConfiguration({ ...cfg, linuxx: {} }, new DebugLogger(false)), /linuxx/);
  await assert.rejects(validateConfiguration({ ...cfg, asar: 'yes' }, new DebugLogger(false)), /asar/);

  const mac = cfg.mac as { target: { target: string; arch: string[] }[]; extendInfo: Record<string, unknown> };
  assert.deepEqual(mac.target, [{ target: 'dmg', arch: ['arm64'] }]);
  assert.equal(mac.extendInfo.LSUIElement, true);
  const linux = cfg.linux as { target: string[]; maintainer: string };
  assert.deepEqual(linux.target, ['AppImage', 'deb']);
  assert.match(linux.maintainer, /<.+@.+>/);
  assert.equal(cfg.npmRebuild, false);
  assert.equal(cfg.asar, true);
});

test('electron-builder --dir with a stub Electron dist: app.asar holds exactly the app', { skip: skipReason, timeout: 420_000 }, async (t) => {
  await Promise.all([ensureRendererBuilt(), ensurePreloadBuilt(), ensureMainBuilt()]);
  const work = mkdtempSync(path.join(tmpdir(), 'mlxbar-pack-'));
  try {
    const stub = path.join(work, 'electron-dist');
    mkdirSync(stub);
    writeFileSync(path.join(stub, 'electron'), '#!/bin/sh\necho "stub electron: packaging test only"\n');
    chmodSync(path.join(stub, 'electron'), 0o755);
    writeFileSync(path.join(stub, 'version'), '45.5.0');
    const out = path.join(work, 'out');
    const started = Date.now();
    await run(process.execPath, [cli!, '--dir', '--linux', '--x64', '--publish', 'never', `-c.electronDist=${stub}`, `-c.directories.output=${out}`], {
      cwd: repoRoot,
      timeout: 400_000,
      maxBuffer: 32 * 1024 * 1024,
      env: { ...process.env, ELECTRON_BUILDER_OFFLINE: '1', CSC_IDENTITY_AUTO_DISCOVERY: 'false' },
    });
    t.diagnostic(`electron-builder --dir took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const unpacked = path.join(out, 'linux-unpacked');
    const resources = path.join(unpacked, 'resources');
    assert.ok(existsSync(path.join(resources, 'app.asar')), 'app.asar written');
    assert.ok(readdirSync(unpacked).some((f) => f === 'mlx-bar'), 'the binary is renamed after the app');

    const asar = require('@electron/asar') as { listPackage(p: string, o?: object): string[]; extractFile(p: string, f: string): Buffer };
    const files = asar.listPackage(path.join(resources, 'app.asar'), { isPack: false }).map((f) => f.split(path.sep).join('/'));
    const has = (f: string) => files.includes(f);

    // in: the app
    for (const f of ['/package.json', '/dist/main/shell/index.js', '/dist/main/engine-main.js', '/dist/preload/index.cjs', '/dist/renderer/index.html', '/dist/renderer/favicon.png']) assert.ok(has(f), `${f} packaged`);
    assert.ok(files.some((f) => /^\/dist\/renderer\/assets\/index-[\w-]+\.js$/.test(f)), 'renderer bundle packaged');
    const pkg = JSON.parse(asar.extractFile(path.join(resources, 'app.asar'), 'package.json').toString('utf8'));
    assert.equal(pkg.main, 'dist/main/shell/index.js');
    assert.equal(pkg.type, 'module');
    // in: production dependencies the main bundle imports at run time
    for (const dep of ['electron-store', 'conf', 'fastify', 'ajv', 'prom-client', '@huggingface/tokenizers']) assert.ok(has(`/node_modules/${dep}/package.json`), `${dep} packaged`);
    // out: sources, tests, maps, and everything that is only bundled or only for development
    const ours = files.filter((f) => !f.startsWith('/node_modules/'));
    assert.deepEqual(ours.filter((f) => /\.(ts|tsx|map)$/.test(f)), [], 'no TypeScript sources or source maps of ours');
    assert.deepEqual(ours.filter((f) => /^\/(test|main|renderer\/src|preload\/|scripts|bench)/.test(f)), [], 'no source folders or tests');
    for (const dev of ['react', 'react-dom', 'recharts', 'vite', 'electron', 'electron-builder', 'playwright-core', 'typescript', 'esbuild', '@esbuild/linux-x64', 'tsx', 'openai'])
      assert.equal(has(`/node_modules/${dev}/package.json`), false, `${dev} must not be packaged (bundled or dev-only)`);
    // the native MLX binding is unpacked next to the asar (dlopen cannot read inside it)
    assert.ok(existsSync(path.join(resources, 'app.asar.unpacked', 'node_modules', '@frost-beta', 'mlx', 'package.json')), 'MLX binding unpacked');
    // tray assets as extra resources, incl. macOS template images
    for (const f of ['trayTemplate.png', 'trayTemplate@2x.png', 'tray-running.png', 'tray-error.png', 'icon.png'])
      assert.ok(existsSync(path.join(resources, 'assets', f)), `assets/${f}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('every package the bundled main code imports is a declared production dependency', { timeout: 120_000 }, async () => {
  // electron-builder packs `dependencies` (and what they pull in); a package that is only present
  // because npm hoisted someone else's dependency can vanish from the app with any lockfile change.
  const { build } = await import('esbuild');
  const r = await build({
    absWorkingDir: repoRoot,
    entryPoints: ['main/shell/index.ts', 'main/engine/process/engine-main.ts'],
    bundle: true,
    write: false,
    outdir: 'out',
    splitting: true,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    metafile: true,
    logLevel: 'silent',
  });
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const imported = new Set<string>();
  for (const input of Object.values(r.metafile.inputs)) {
    for (const imp of input.imports) {
      if (!imp.external || imp.path.startsWith('node:') || imp.path === 'electron') continue;
      imported.add(imp.path.split('/').slice(0, imp.path.startsWith('@') ? 2 : 1).join('/'));
    }
  }
  assert.ok(imported.has('electron-store') && imported.has('fastify'));
  assert.deepEqual([...imported].filter((p) => !(p in pkg.dependencies)).sort(), [], 'imported by main code but not in package.json dependencies');
});
