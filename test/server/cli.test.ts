// The headless CLI as a user runs it: `mlx-bar serve` (bin/mlx-bar.mjs → tsx → main/cli) and
// `npm start`'s fallback (scripts/start.mjs) on this Electron-less box. Real processes, real engine.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { TINY } from './helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'mlx-bar.mjs');
const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-cli-'));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    async waitFor(re: RegExp, timeoutMs = 120_000): Promise<RegExpMatchArray> {
      const t0 = Date.now();
      for (;;) {
        const m = re.exec(stdout);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr.slice(0, 500)}`);
        if (Date.now() - t0 > timeoutMs) throw new Error(`timeout waiting for ${re}; stdout: ${stdout.slice(0, 500)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what} timed out`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer!);
  }
}

describe('mlx-bar serve', () => {
  test('prints the listening line, answers /health, exits 0 on SIGTERM', async () => {
    const model = await buildTinyModel(TINY);
    const p = run([bin, 'serve', '--port', '0', '--model', model, '--data-dir', path.join(tmp, 'data')]);
    const m = await p.waitFor(/^MLX Bar listening on (http:\/\/127\.0\.0\.1:(\d+))$/m);
    const url = m[1];
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { status: string; model: string; uptime_seconds: number };
    assert.equal(body.status, 'ok');
    assert.equal(body.model, path.basename(model));
    assert.equal(typeof body.uptime_seconds, 'number');
    // the folder name is accepted as the model id; metrics are mounted
    const chatRes = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: path.basename(model), messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });
    assert.equal(chatRes.status, 200);
    const metrics = await fetch(`${url}/v1/metrics`);
    assert.equal(metrics.status, 200);
    p.child.kill('SIGTERM');
    assert.equal(await withTimeout(p.exited, 30_000, 'shutdown'), 0);
    assert.doesNotMatch(p.stderr, /\n\s+at /);
  });

  test('startup errors: a readable message or preflight report, exit code 2, no stack trace', async () => {
    // Always an explicit data dir: without one, serve reads and writes the user's real ~/.config/MLX Bar
    // (and fails there when it holds a `model`). scripts/run-tests.mjs also fails any run that does.
    const data = ['--data-dir', path.join(tmp, 'startup-errors')];
    const cases: [string[], RegExp][] = [
      [['serve', ...data, '--port', '0', '--model', path.join(tmp, 'does-not-exist')], /model folder does not exist/],
      [['serve', ...data, '--port', '0'], /No model/],
      // serve runs the preflight first: its report names the host/API-key policy problem.
      [['serve', ...data, '--host', '0.0.0.0', '--port', '0', '--model', tmp], /(non-loopback|reachable from other machines).*API key/i],
      [['serve', ...data, '--port', 'eighty'], /--port must be an integer/],
      [['serve', '--bogus'], /Unknown option/],
      [['frobnicate'], /Unknown command/],
    ];
    for (const [args, re] of cases) {
      const p = run([bin, ...args], { MLXBAR_MODEL: '' });
      const code = await withTimeout(p.exited, 60_000, args.join(' '));
      assert.equal(code, 2, `${args.join(' ')}: ${p.stderr}`);
      assert.match(p.stderr, re);
      assert.doesNotMatch(p.stderr, /\n\s+at |node_modules|\/tmp\//);
    }
  });

  test('port already in use → exit 2 with advice', async () => {
    const net = await import('node:net');
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const model = await buildTinyModel(TINY);
      const p = run([bin, 'serve', '--port', String(port), '--model', model, '--data-dir', path.join(tmp, 'data')]);
      assert.equal(await withTimeout(p.exited, 120_000, 'busy port'), 2);
      assert.match(p.stderr, /already in use/);
    } finally {
      blocker.close();
    }
  });
});

describe('npm start without Electron', () => {
  test('falls back to the headless server on the labelled DEMO model', async () => {
    const p = run([path.join(root, 'scripts', 'start.mjs'), '--port', '0', '--data-dir', path.join(tmp, 'demo-data')]);
    const m = await p.waitFor(/^MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)$/m, 240_000);
    assert.match(p.stdout, /No Electron binary/);
    assert.match(p.stdout, /DEMO model/);
    assert.match(p.stdout, /Dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard\//);
    const models = (await (await fetch(`${m[1]}/v1/models`)).json()) as { data: { owned_by: string; demo?: boolean }[] };
    assert.equal(models.data[0].demo, true);
    assert.match(models.data[0].owned_by, /demo/i);
    p.child.kill('SIGTERM');
    assert.equal(await withTimeout(p.exited, 30_000, 'shutdown'), 0);
  });
});
