// `mlx-bar models` as a user runs it (the real bin, a child process) with remote models in the
// settings: each is listed with a "remote" badge and the health its upstream shows right now (a
// live fake upstream, one not serving the configured model name, and a port nobody listens on),
// in the table and in --json, and nothing of an upstream's URL or key is printed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(root, 'bin', 'mlx-bar.mjs');
const KEY = 'cli-upstream-key-77665544';
let fake: FakeUpstream;
let dataDir: string;
let deadURL: string;

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

before(async () => {
  fake = await startFakeUpstream();
  // A port that was free a moment ago: connection refused.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  deadURL = `http://127.0.0.1:${port}/v1`;
  dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-remote-cli-'));
  writeFileSync(
    path.join(dataDir, 'config.json'),
    JSON.stringify({
      remotes: [
        // The fake lists whatever `model` a request names; a GET names none, so it lists "upstream-model".
        { id: 'gpu-box', baseURL: fake.baseURL, apiKey: KEY, model: 'upstream-model' },
        { id: 'renamed', baseURL: fake.baseURL, apiKey: KEY, model: 'not-there' },
        { id: 'offline-box', baseURL: deadURL, apiKey: KEY },
      ],
    }),
  );
});

after(async () => {
  await fake.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('mlx-bar models lists remote models with a remote badge and their health; never a URL or key', { timeout: 120_000 }, async () => {
  const t = await cli(['models', '--data-dir', dataDir]);
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /Remote models/);
  assert.match(t.out, /^ID\s+BADGE\s+UPSTREAM MODEL\s+HEALTH$/m);
  assert.match(t.out, /^gpu-box\s+remote\s+upstream-model\s+up$/m);
  assert.match(t.out, /^renamed\s+remote\s+not-there\s+up \(model "not-there" not listed upstream\)$/m);
  assert.match(t.out, /^offline-box\s+remote\s+offline-box\s+down \(unreachable\)$/m);
  const models = fake.requests.filter((r) => r.method === 'GET' && r.url === '/v1/models');
  assert.ok(models.length >= 2, 'each live upstream was asked');
  assert.ok(models.every((r) => r.headers.authorization === `Bearer ${KEY}`), 'with its key');

  const j = await cli(['models', '--json', '--data-dir', dataDir]);
  assert.equal(j.code, 0, j.err);
  const list = JSON.parse(j.out) as Array<Record<string, unknown>>;
  const byId = Object.fromEntries(list.filter((m) => m.remote === true).map((m) => [m.id, m]));
  assert.deepEqual(byId['gpu-box'], { id: 'gpu-box', remote: true, upstreamModel: 'upstream-model', health: 'up', note: null });
  assert.equal(byId['offline-box'].health, 'down');

  const o = await cli(['models', '--offline', '--json', '--data-dir', dataDir]);
  assert.equal(o.code, 0, o.err);
  assert.ok((JSON.parse(o.out) as Array<{ remote?: boolean; health?: string }>).filter((m) => m.remote).every((m) => m.health === 'unchecked'));

  for (const text of [t.out, t.err, j.out, j.err]) {
    for (const secret of [KEY, fake.baseURL, deadURL, String(new URL(fake.url).port)]) assert.ok(!text.includes(secret), `printed ${secret}`);
  }
});
