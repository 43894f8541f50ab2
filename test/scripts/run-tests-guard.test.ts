// Tests must never touch the user's real folders: scripts/run-tests.mjs runs them with HOME and the
// XDG folders pointed at a throw-away home and fails the run when anything landed in the default
// data folder. Here a real run of the script over a careless fixture, with a stand-in "real" home.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('a test that writes to the default data folder fails the run and leaves the real home untouched', async (t) => {
  const realHome = mkdtempSync(path.join(tmpdir(), 'mlxbar-realhome-'));
  t.after(() => rmSync(realHome, { recursive: true, force: true }));
  // NODE_TEST_CONTEXT would make the inner runner think it is nested in this test and skip its files
  const { NODE_TEST_CONTEXT: _nested, ...outer } = process.env;
  const env = { ...outer, HOME: realHome, XDG_CONFIG_HOME: path.join(realHome, '.config'), MLXBAR_DATA_DIR: '' };
  const child = spawn(process.execPath, ['scripts/run-tests.mjs', 'test/scripts/fixtures/forgets-data-dir.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(existsSync(path.join(realHome, '.config', 'MLX Bar')), false, 'the real data folder was written');
  assert.notEqual(code, 0, out);
  assert.match(out, /wrote to the default data folder/);
  assert.match(out, /config\.json/);
  assert.match(out, /1 passed, 1 failed/);
});
