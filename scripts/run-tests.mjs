#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's own test runner (through tsx, since Node 20 has no
// type stripping), prints the spec report, and closes with the `N passed, N failed` line CI reads.
// Usage: node scripts/run-tests.mjs [substring filters...]
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
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
const files = walk(path.join(root, 'test'))
  .map((f) => path.relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) { console.error('no test files matched'); process.exit(1); }

const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-tap-'));
const tapFile = path.join(tmp, 'report.tap');
const args = [
  '--import', 'tsx',
  '--test',
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '2'}`,
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
  ...files,
];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, MLXBAR_TEST: '1' } });
child.on('exit', (code, signal) => {
  let pass = 0, fail = 0, skip = 0, todo = 0;
  try {
    const tap = readFileSync(tapFile, 'utf8');
    const num = (k) => Number((tap.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
    // Tests node reports as `cancelled` (e.g. a file whose event loop ended early) are failures.
    pass = num('pass'); fail = num('fail') + num('cancelled'); skip = num('skipped'); todo = num('todo');
  } catch { fail = fail || 1; }
  rmSync(tmp, { recursive: true, force: true });
  if (signal || (code !== 0 && fail === 0)) fail = Math.max(fail, 1);
  console.log(`\n${pass} passed, ${fail} failed, ${skip} skipped${todo ? `, ${todo} todo` : ''}`);
  process.exit(code ?? 1);
});
