// `npm start`, then `kill <pid of npm>` — what systemd, Docker or a plain kill do. Nothing of the
// process tree may survive: not scripts/start.mjs, the server, its engine process or tsx's esbuild
// service. Real npm, real processes, the tree read from /proc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** pid → parent pid, for every process we can see. */
function processTable(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.set(Number(name), ppid);
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function descendants(pid: number): number[] {
  const table = processTable();
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    for (const [child, parent] of table) if (parent === p) (found.push(child), queue.push(child));
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '(gone)';
  }
};

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
