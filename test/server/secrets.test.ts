// Secrets stay out of places other processes can read: the engine process (which runs model code)
// never gets the API key or other credentials in /proc/<engine>/environ; the key can come from a
// file readable only by its owner (--api-key-file / MLXBAR_API_KEY_FILE), so it is not in
// /proc/<serve>/cmdline; --help warns that --api-key is visible. Real `mlx-bar serve` processes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { alive, cmdline, descendants, environ } from '../helpers/proc.ts';
import { TINY } from './helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'mlx-bar.mjs');
const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-secrets-'));
const pids: number[] = [];
after(() => {
  for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function serve(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--data-dir', path.join(tmp, `data-${pids.length}`), ...args], {
    cwd: root,
    env: { ...process.env, MLXBAR_MODEL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  pids.push(child.pid!);
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) (clearInterval(timer), resolve(m[1]));
      else if (child.exitCode !== null) (clearInterval(timer), reject(new Error(`exited ${child.exitCode}: ${out.slice(-600)}`)));
    }, 100);
  });
  listening.catch(() => {}); // awaited only by the tests that expect a server
  return { child, exited, listening, output: () => out };
}

function enginePid(servePid: number): number {
  const pid = descendants(servePid).find((p) => /engine-main/.test(cmdline(p)));
  assert.ok(pid, 'the engine process is running');
  return pid;
}

const KEY = 'sk-local-test-0123456789abcdef';
const chat = (url: string, key?: string) =>
  fetch(`${url}/v1/models`, { headers: key ? { authorization: `Bearer ${key}` } : {} }).then((r) => r.status);

describe('secrets', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  test('MLXBAR_API_KEY and other credentials are not in the engine process environment', async () => {
    const model = await buildTinyModel(TINY);
    const s = serve(['--model', model], { MLXBAR_API_KEY: KEY, HF_TOKEN: 'hf_secret_token_value', OPENAI_API_KEY: 'sk-openai-secret', MLXBAR_KEEP_ME: 'visible' });
    const url = await s.listening;
    assert.equal(await chat(url), 401, 'the key is in force');
    const env = environ(enginePid(s.child.pid!));
    assert.equal(env.MLXBAR_API_KEY, undefined);
    assert.equal(env.HF_TOKEN, undefined);
    assert.equal(env.OPENAI_API_KEY, undefined);
    assert.equal(env.MLXBAR_KEEP_ME, 'visible', 'ordinary variables are still passed');
    assert.ok(env.PATH);
    for (const v of Object.values(env)) assert.ok(!v.includes(KEY), 'the key appears in no variable');
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  });

  test('--api-key-file (0600): the key is enforced and appears in no command line or engine environment', async () => {
    const model = await buildTinyModel(TINY);
    const keyFile = path.join(tmp, 'key');
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    const s = serve(['--model', model, '--api-key-file', keyFile], {});
    const url = await s.listening;
    assert.equal(await chat(url), 401);
    assert.equal(await chat(url, KEY), 200, 'the trailing newline of the file is not part of the key');
    const tree = [s.child.pid!, ...descendants(s.child.pid!)];
    for (const p of tree) assert.ok(!cmdline(p).includes(KEY), `key visible in ${cmdline(p).slice(0, 80)}`);
    for (const v of Object.values(environ(enginePid(s.child.pid!)))) assert.ok(!v.includes(KEY));
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  });

  test('MLXBAR_API_KEY_FILE works too; a key file other users can read is refused with the fix', async () => {
    const model = await buildTinyModel(TINY);
    const keyFile = path.join(tmp, 'key-env');
    writeFileSync(keyFile, KEY, { mode: 0o600 });
    const s = serve(['--model', model], { MLXBAR_API_KEY_FILE: keyFile });
    const url = await s.listening;
    assert.equal(await chat(url), 401);
    assert.equal(await chat(url, KEY), 200);
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);

    chmodSync(keyFile, 0o644);
    const bad = serve(['--model', model, '--api-key-file', keyFile], {});
    assert.equal(await bad.exited, 2);
    assert.match(bad.output(), /--api-key-file.*other users.*chmod 600/);
    assert.ok(!bad.output().includes(KEY));
    assert.ok(!bad.output().includes(tmp), 'no path in the message');
  });

  test('serve --help says --api-key is visible to other local users and offers --api-key-file', async () => {
    const s = serve(['--help'], {});
    assert.equal(await s.exited, 0);
    assert.match(s.output(), /--api-key <key>[\s\S]*visible to other local users/i);
    assert.match(s.output(), /--api-key-file <file>.*chmod 600/);
    assert.match(s.output(), /MLXBAR_API_KEY_FILE/);
  });
});
