// Packaging offline: electron-builder --dir with a stand-in Electron dist (a two-line script named
// like the binary), then the app.asar contents are checked with @electron/asar: the bundled main
// code, the ONE-file preload and the built renderer are in; TypeScript sources, tests, source maps
// and the bundled-only packages (react, recharts, vite, electron…) are out; production
// dependencies and the tray assets are there. Also: the config passes electron-builder's schema
// validation, and a broken config is rejected.
// Fuses: the stub binary also carries a fuse wire laid out as in a real Electron 45 binary
// (sentinel, version, length, one byte per fuse, Electron's defaults), so electron-builder's own
// fuse step (@electron/fuses flipFuses) really runs on it; the packaged binary is read back with
// getCurrentFuseWire and every fuse must be in the state electron-builder.yml asks for.
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
const skipReason = !cli || !existsSync(cli) ? 'electron-builder is not installed' : !loadFuses() ? '@electron/fuses (an electron-builder dependency) is not installed' : process.platform !== 'linux' ? 'the stub Electron dist is Linux-only' : false;

// The very copy electron-builder flips with (resolved from app-builder-lib, not from the hoisting).
function loadFuses(): FusesModule | null {
  try {
    return createRequire(require.resolve('app-builder-lib/package.json'))('@electron/fuses');
  } catch {
    return null;
  }
}
interface FusesModule {
  FuseVersion: { V1: string };
  FuseV1Options: Record<string, number | string>;
  getCurrentFuseWire(p: string): Promise<Record<string, number | string>>;
  flipFuses(p: string, cfg: Record<string, unknown>): Promise<number>;
}
const fuses = loadFuses()!;
// Where @electron/fuses (dist/index.js) finds the wire: the first occurrence of this sentinel, then
// one byte fuse-schema version, one byte wire length, then one byte per fuse ('0' off, '1' on).
const FUSE_SENTINEL = 'dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX';
const OFF = 0x30;
const ON = 0x31;
// Electron 45's wire, unflipped (docs/tutorial/fuses.md "Default:" of each fuse): RunAsNode on,
// cookie encryption off, NODE_OPTIONS on, --inspect on, asar integrity off, only-app.asar off,
// browser V8 snapshot off, file:// privileges on, and a ninth fuse @electron/fuses 1.8 has no
// name for (WasmTrapHandlers, on), which the config leaves alone.
const ELECTRON_45_DEFAULT_WIRE = [ON, OFF, ON, ON, OFF, OFF, OFF, ON, ON];

/** A stand-in Electron binary: a runnable shell script, then (after `exit`) a real fuse wire. */
function stubElectronBinary(): Buffer {
  return Buffer.concat([
    Buffer.from('#!/bin/sh\necho "stub electron: packaging test only"\nexit 0\n', 'latin1'),
    Buffer.from(FUSE_SENTINEL, 'latin1'),
    Buffer.from([1, ELECTRON_45_DEFAULT_WIRE.length, ...ELECTRON_45_DEFAULT_WIRE]),
    Buffer.from('\n', 'latin1'),
  ]);
}

/** electron-builder's `electronFuses` keys are the FuseV1Options names with a lower-case first letter. */
function fuseIndex(key: string): number {
  const idx = fuses.FuseV1Options[key[0].toUpperCase() + key.slice(1)];
  assert.equal(typeof idx, 'number', `electronFuses.${key} is not a fuse @electron/fuses knows`);
  return idx as number;
}

function expectedFuseWire(config: Record<string, boolean>): number[] {
  const wire = [...ELECTRON_45_DEFAULT_WIRE];
  for (const [key, on] of Object.entries(config)) if (key !== 'resetAdHocDarwinSignature') wire[fuseIndex(key)] = on ? ON : OFF;
  return wire;
}

const fuseName = (state: number) => (state === ON ? 'on' : state === OFF ? 'off' : `0x${state.toString(16)}`);
const wireStates = (wire: Record<string, number | string>) =>
  Object.keys(wire)
    .filter((k) => /^\d+$/.test(k))
    .sort((a, b) => Number(a) - Number(b))
    .map((k) => fuseName(wire[k] as number));

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

  // Fuses per Electron's security checklist, every one named explicitly (none left to inherit).
  const f = cfg.electronFuses as Record<string, boolean>;
  assert.deepEqual(f, {
    runAsNode: false,
    enableCookieEncryption: true,
    enableNodeOptionsEnvironmentVariable: false,
    enableNodeCliInspectArguments: false,
    enableEmbeddedAsarIntegrityValidation: true,
    onlyLoadAppFromAsar: true,
    loadBrowserProcessSpecificV8Snapshot: false,
    grantFileProtocolExtraPrivileges: false,
    resetAdHocDarwinSignature: true,
  });
  const named = Object.keys(fuses.FuseV1Options).filter((k) => !/^\d+$/.test(k)).map((k) => k[0].toLowerCase() + k.slice(1));
  assert.deepEqual(named.filter((k) => !(k in f)), [], 'a fuse @electron/fuses knows is not configured');
  await assert.rejects(validateConfiguration({ ...cfg, electronFuses: { ...f, runAsNode: 'no' } }, new DebugLogger(false)), /runAsNode/);
  // onlyLoadAppFromAsar needs the app in an asar.
  assert.equal(f.onlyLoadAppFromAsar && cfg.asar, true);
});

test('electron-builder --dir with a stub Electron dist: app.asar holds exactly the app', { skip: skipReason, timeout: 420_000 }, async (t) => {
  await Promise.all([ensureRendererBuilt(), ensurePreloadBuilt(), ensureMainBuilt()]);
  const work = mkdtempSync(path.join(tmpdir(), 'mlxbar-pack-'));
  try {
    const stub = path.join(work, 'electron-dist');
    mkdirSync(stub);
    writeFileSync(path.join(stub, 'electron'), stubElectronBinary());
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
    // ...the native module itself as a real file, not inside the asar, and the capability probe's
    // child entry packaged next to engine-main.js (probe.ts resolves it there).
    assert.ok(existsSync(path.join(resources, 'app.asar.unpacked', 'node_modules', '@frost-beta', 'mlx', 'build', 'Release', 'mlx.node')), 'mlx.node unpacked');
    assert.ok(has('/dist/main/mlx-probe.js'), 'the MLX capability probe entry is packaged');
    assert.ok(has('/dist/main/prompt-worker.js'), 'the prompt worker thread entry is packaged (main/server/prompt-pool.ts)');
    // On macOS the downloader adds build/Release/mlx.metallib, which MLX loads from beside mlx.node:
    // it must be unpacked by the same rule. (This Linux machine has no metallib to pack; check the
    // configured rule with electron-builder's own matcher.)
    const { minimatch } = createRequire(require.resolve('app-builder-lib/package.json'))('minimatch') as { minimatch: (p: string, g: string, o?: object) => boolean };
    const unpackRules = ((await loadYamlConfig()).asarUnpack ?? []) as string[];
    for (const f of ['node_modules/@frost-beta/mlx/build/Release/mlx.metallib', 'node_modules/@frost-beta/mlx/build/Release/mlx.node']) {
      assert.ok(unpackRules.some((g) => minimatch(f, g, { dot: true })), `${f} matches asarUnpack`);
    }
    // tray assets as extra resources, incl. macOS template images
    for (const f of ['trayTemplate.png', 'trayTemplate@2x.png', 'tray-running.png', 'tray-error.png', 'icon.png'])
      assert.ok(existsSync(path.join(resources, 'assets', f)), `assets/${f}`);

    // fuses: electron-builder flipped the packaged binary's wire to exactly the configured states
    const cfg = await loadYamlConfig();
    const binary = path.join(unpacked, 'mlx-bar');
    const wire = await fuses.getCurrentFuseWire(binary);
    const expected = expectedFuseWire(cfg.electronFuses as Record<string, boolean>);
    assert.equal(wire.version, fuses.FuseVersion.V1);
    assert.deepEqual(wireStates(wire), expected.map(fuseName), 'every fuse in its configured state');
    assert.notDeepEqual(expected, ELECTRON_45_DEFAULT_WIRE, 'the config changes fuses (the flip is observable)');
    const packaged = readFileSync(binary);
    assert.equal(packaged.length, stubElectronBinary().length, 'only fuse bytes change, in place');
    assert.ok(packaged.toString('latin1').startsWith('#!/bin/sh'), 'the rest of the binary is untouched');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

/** The app's two entry points (shell + engine process) bundled in memory, packages external: what ships. */
async function bundleMainMetafile() {
  const { build } = await import('esbuild');
  return build({
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
}

test('every package the bundled main code imports is a declared production dependency', { timeout: 120_000 }, async () => {
  // electron-builder packs `dependencies` (and what they pull in); a package that is only present
  // because npm hoisted someone else's dependency can vanish from the app with any lockfile change.
  const r = await bundleMainMetafile();
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

test('the packaged app needs nothing the fuses switch off (ELECTRON_RUN_AS_NODE, NODE_OPTIONS, --inspect, file://)', { timeout: 120_000 }, async () => {
  await ensurePreloadBuilt();
  const r = await bundleMainMetafile();
  const sources = Object.keys(r.metafile.inputs).filter((f) => f.startsWith('main/') || f.startsWith('preload/'));
  const text = (f: string) => readFileSync(path.join(repoRoot, f), 'utf8');
  // No code of ours reads or sets what runAsNode / nodeOptions / nodeCliInspect disable.
  for (const f of sources) assert.doesNotMatch(text(f), /ELECTRON_RUN_AS_NODE|NODE_OPTIONS|NODE_EXTRA_CA_CERTS|--inspect/, f);
  // Re-running the Electron binary as Node (process.execPath) needs runAsNode: only the CLI's
  // preflight does it (`mlx-bar check`/`serve` under plain Node). The shell starts the core
  // (main/core/serve.ts startServe) directly, so the preflight is not even in the app bundle.
  assert.ok(existsSync(path.join(repoRoot, 'main/core/preflight.ts')));
  assert.deepEqual(sources.filter((f) => /process\.execPath/.test(text(f))), []);
  assert.ok(!sources.includes('main/cli/serve.ts'), 'the shell does not bundle the CLI');
  assert.doesNotMatch(text('main/shell/index.ts'), /\brun\(|preflight/, 'the shell does not go through the CLI entry');
  // The engine runs in a utilityProcess in the app (child_process.fork of the Electron binary
  // would need ELECTRON_RUN_AS_NODE).
  assert.ok(r.metafile.inputs['main/shell/index.ts'].imports.some((x) => x.path === 'main/engine/process/utility-spawner.ts'));
  assert.match(text('main/shell/index.ts'), /engineSpawn/, 'the shell hands the utilityProcess spawner to the core');
  // Its packaged entry gets no --inspect/--import/--require; only --expose-gc, which it does not
  // depend on: getGc() enables gc at run time when the flag did not make it through.
  const { engineExecArgv } = await import('../../main/engine/process/spawn.ts');
  assert.deepEqual(engineExecArgv(path.join(repoRoot, 'dist', 'main', 'engine-main.js')), ['--expose-gc']);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const gc = await run(process.execPath, ['--import', 'tsx', '-e', "const m = await import('./main/engine/model/memory.ts'); m.getGc()({ type: 'minor' }); console.log(typeof globalThis.gc, 'gc ok')"], { cwd: repoRoot, env, timeout: 60_000 });
  assert.match(gc.stdout, /^undefined gc ok/, 'gc works without --expose-gc');
  // The sandboxed preload is one CommonJS file: its only require is electron (it is read from
  // app.asar, the only place onlyLoadAppFromAsar lets the app load from).
  const preload = readFileSync(path.join(repoRoot, 'dist', 'preload', 'index.cjs'), 'utf8');
  assert.deepEqual([...new Set([...preload.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1]))], ['electron']);
  // Pages come from the mlxbar:// scheme, never file:// (grantFileProtocolExtraPrivileges is off).
  for (const f of sources.filter((s) => s.startsWith('main/shell/'))) assert.doesNotMatch(text(f), /\.loadFile\(|loadURL\([^)]*file:/, f);
});
