// `npm start`, then `kill <pid of npm>` — what systemd, Docker or a plain kill do. Nothing of the
// process tree may survive: not scripts/start.mjs, the server, its engine process or tsx's esbuild
// service. Real npm, real processes, the tree read from /proc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { alive, cmdline, descendants } from '../helpers/proc.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('kill <npm pid> stops the server, the engine and esbuild', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-npmkill-'));
  const npm = spawn('npm', ['start', '--', '--port', '0', '--data-dir', path.join(tmp, 'data')], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let tree: number[] = [];
  t.after(() => {
    for (const p of [npm.pid!, ...tree]) if (alive(p)) process.kill(p, 'SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  let out = '';
  npm.stdout.on('data', (c) => (out += c));
  npm.stderr.on('data', (c) => (out += c));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) (clearInterval(timer), resolve(m[1]));
      else if (npm.exitCode !== null) (clearInterval(timer), reject(new Error(`npm exited: ${out.slice(-800)}`)));
    }, 100);
  });
  assert.equal((await fetch(`${url}/health`)).status, 200);
  tree = descendants(npm.pid!);
  const cmds = tree.map(cmdline).join('\n');
  assert.match(cmds, /start\.mjs/);
  assert.match(cmds, /mlx-bar\.mjs serve/);
  assert.match(cmds, /engine/);
  // tsx's esbuild service is started lazily (only when a file is not in tsx's cache): in the tree when present

  process.kill(npm.pid!, 'SIGTERM');
  // wait (bounded) until every process of the tree is gone
  for (let i = 0; i < 600 && tree.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  const left = tree.filter(alive);
  assert.deepEqual(left.map(cmdline), [], 'processes left running after kill <npm pid>');
  await assert.rejects(fetch(`${url}/health`), 'the port still answers');
});
