#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's own test runner (through tsx, since Node 20 has no
// type stripping), prints the spec report, and closes with the `N passed, N failed` line CI reads.
// Usage: node scripts/run-tests.mjs [substring filters...]
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { if (e.name !== 'fixtures-out' && e.name !== 'node_modules') out.push(...walk(p)); }
    else if (e.name.endsWith('.test.ts') || e.name.endsWith('.test.tsx')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
// A filter that names an existing .ts file is run as given (the guard's own test runs a fixture
// outside test/ this way); the others are substrings of test/**/*.test.ts paths.
const direct = filters.filter((f) => f.endsWith('.ts') && existsSync(f) && statSync(f).isFile() && !/\.test\.tsx?$/.test(f));
const substrings = filters.filter((f) => !direct.includes(f));
const files = [
  ...walk(path.join(root, 'test'))
    .map((f) => path.relative(root, f))
    .filter((f) => (filters.length === 0 ? true : substrings.some((s) => f.includes(s)))),
  ...direct.map((f) => path.resolve(f)),
].sort();
if (files.length === 0) { console.error('no test files matched'); process.exit(1); }

// One temp folder per run: the TAP report and the MLX capability probe record (probed once per run,
// not once per test's temp data folder; see main/engine/probe).
const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-tap-'));
// Tests must never touch the user's real folders. They run with HOME and the XDG folders pointed at
// a throw-away home, so a test that forgets --data-dir writes there instead of ~/.config/MLX Bar;
// the run then FAILS, naming what was written (see the end of this script).
const fakeHome = path.join(tmp, 'home');
const homeEnv = {
  HOME: fakeHome,
  USERPROFILE: fakeHome,
  XDG_CONFIG_HOME: path.join(fakeHome, '.config'),
  XDG_DATA_HOME: path.join(fakeHome, '.local', 'share'),
  XDG_CACHE_HOME: path.join(fakeHome, '.cache'),
  APPDATA: path.join(fakeHome, 'AppData', 'Roaming'),
};
const dataDirs = [
  path.join(homeEnv.XDG_CONFIG_HOME, 'MLX Bar'),
  path.join(fakeHome, 'Library', 'Application Support', 'MLX Bar'),
  path.join(homeEnv.APPDATA, 'MLX Bar'),
];
// The data dir may come from the environment too: a test that wants one sets it explicitly.
const { MLXBAR_DATA_DIR: _ignored, ...parentEnv } = process.env;
const tapFile = path.join(tmp, 'report.tap');
const args = [
  '--import', 'tsx',
  '--test',
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '2'}`,
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
  ...files,
];
const child = spawn(process.execPath, args, {
  cwd: root,
  stdio: 'inherit',
  env: { ...parentEnv, ...homeEnv, MLXBAR_TEST: '1', MLXBAR_CAPABILITIES_DIR: process.env.MLXBAR_CAPABILITIES_DIR ?? path.join(tmp, 'mlx-capabilities') },
});
child.on('exit', (code, signal) => {
  let pass = 0, fail = 0, skip = 0, todo = 0;
  try {
    const tap = readFileSync(tapFile, 'utf8');
    const num = (k) => Number((tap.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
    // Tests node reports as `cancelled` (e.g. a file whose event loop ended early) are failures.
    pass = num('pass'); fail = num('fail') + num('cancelled'); skip = num('skipped'); todo = num('todo');
  } catch { fail = fail || 1; }
  const touched = dataDirs.filter((d) => existsSync(d));
  if (touched.length > 0) {
    fail += 1;
    console.error(`\nA test wrote to the default data folder (${touched.map((d) => path.relative(fakeHome, d)).join(', ')} under the test run's HOME):`);
    console.error('on a developer machine that is the real ~/.config/MLX Bar. Give every serve/check/pull a --data-dir (or MLXBAR_DATA_DIR).');
    try { console.error(`  written: ${readdirSync(touched[0]).slice(0, 10).join(', ') || '(empty folder)'}`); } catch {}
  }
  rmSync(tmp, { recursive: true, force: true });
  if (touched.length > 0 && code === 0) code = 1;
  if (signal || (code !== 0 && fail === 0)) fail = Math.max(fail, 1);
  console.log(`\n${pass} passed, ${fail} failed, ${skip} skipped${todo ? `, ${todo} todo` : ''}`);
  process.exit(code ?? 1);
});
