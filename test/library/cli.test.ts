// `mlx-bar pull` / `mlx-bar models` as a user runs them (the real bin, a child process) against the
// local fake hub, plus resolveModelArg (what `serve --model` uses).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { resolveModelArg } from '../../main/library/resolve.ts';
import { ApiError } from '../../main/common/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(root, 'bin', 'mlx-bar.mjs');
const REPO = 'mlx-community/Tiny-Cli-Model';
let hub: FakeHub;
let tmp: string;
let modelDir: string;

function cli(args: string[], env: Record<string, string>, opts: { onStdout?: (s: string, kill: () => void) => void } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      opts.onStdout?.(out, () => child.kill('SIGINT'));
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

before(async () => {
  modelDir = await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64 });
  hub = await startFakeHub();
  hub.addRepo(REPO, modelDir);
  tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-cli-'));
});

after(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('mlx-bar pull / models (CLI)', { timeout: 300_000 }, () => {
  it('pulls with plain progress lines when not a TTY, then `models` lists it (table and --json)', async () => {
    const dataDir = path.join(tmp, 'd1');
    const r = await cli(['pull', REPO, '--data-dir', dataDir], { HF_ENDPOINT: hub.endpoint, HF_TOKEN: '' });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Downloading mlx-community\/Tiny-Cli-Model @ [0-9a-f]{12}: \d+ files/);
    assert.match(r.out, /model\.safetensors .* ok/);
    assert.match(r.out, /Downloaded mlx-community\/Tiny-Cli-Model: \d+ files, .*verified/);
    assert.ok(!r.out.includes('\r') && !r.out.includes('\x1b['), 'no TTY control codes in a pipe');
    assert.ok(existsSync(path.join(dataDir, 'models', 'mlx-community--Tiny-Cli-Model', 'config.json')));

    const t = await cli(['models', '--data-dir', dataDir], {});
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /^ID\s+ARCH\s+QUANT\/DTYPE\s+PARAMS\s+SIZE\s+FITS \(NEED\)\s+CONTEXT\s+STATUS/m);
    // contextLength "auto" (default): the tiny model's own 4,096-token limit (its KV cache is tiny).
    assert.match(t.out, /mlx-community\/Tiny-Cli-Model\s+qwen3\s+bfloat16\s+\S+\s+\S+ MB\s+yes \([^)]*\)\s+4096\s+ready/);

    const j = await cli(['models', '--json', '--data-dir', dataDir], {});
    assert.equal(j.code, 0, j.err);
    const list = JSON.parse(j.out);
    assert.equal(list.length, 1);
    assert.equal(list[0].id, REPO);
    assert.equal(list[0].architecture, 'qwen3');
    assert.equal(list[0].ready, true);
  });

  it('clear errors and exit codes: 404 → 1, bad id → 2, gated → mentions HF_TOKEN', async () => {
    const dataDir = path.join(tmp, 'd2');
    const nf = await cli(['pull', 'mlx-community/Nope', '--data-dir', dataDir], { HF_ENDPOINT: hub.endpoint });
    assert.equal(nf.code, 1);
    assert.match(nf.err, /mlx-community\/Nope.*not found.*404/);
    const bad = await cli(['pull', '../../etc/passwd', '--data-dir', dataDir], { HF_ENDPOINT: hub.endpoint });
    assert.equal(bad.code, 2);
    assert.match(bad.err, /Invalid repository id/);
    hub.faults.requireToken = 'hf_x';
    try {
      const gated = await cli(['pull', REPO, '--data-dir', dataDir], { HF_ENDPOINT: hub.endpoint, HF_TOKEN: '' });
      assert.equal(gated.code, 1);
      assert.match(gated.err, /HF_TOKEN/);
    } finally {
      delete hub.faults.requireToken;
    }
    assert.ok(!existsSync(path.join(dataDir, 'models', 'mlx-community--Nope')));
  });

  it('Ctrl-C cancels with exit 130, keeps the partial file, and the same command resumes', async () => {
    const dataDir = path.join(tmp, 'd3');
    hub.faults.throttleBytesPerSec = 1_000_000;
    let sent = false;
    const r = await cli(['pull', REPO, '--data-dir', dataDir, '--json'], { HF_ENDPOINT: hub.endpoint }, {
      onStdout: (out, kill) => {
        // Interrupt once bytes of a large file have arrived.
        if (!sent && /"event":"progress".*"receivedBytes":[1-9]\d{5,}/.test(out)) {
          sent = true;
          kill();
        }
      },
    });
    delete hub.faults.throttleBytesPerSec;
    assert.equal(r.code, 130, r.err);
    assert.match(r.err, /resume/);
    const staging = path.join(dataDir, 'models', '.incoming', 'mlx-community--Tiny-Cli-Model.partial');
    assert.ok(readdirSync(staging).some((n) => n.endsWith('.part')), 'a .part file is kept');
    assert.ok(!existsSync(path.join(dataDir, 'models', 'mlx-community--Tiny-Cli-Model')));

    const cdnBefore = hub.log.length;
    const again = await cli(['pull', REPO, '--data-dir', dataDir], { HF_ENDPOINT: hub.endpoint });
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /resuming .* already downloaded/);
    assert.ok(hub.log.slice(cdnBefore).some((l) => l.server === 'cdn' && /^bytes=[1-9]\d*-$/.test(l.range ?? '')), 'resumed with Range');
  });
});

describe('resolveModelArg (serve --model)', { timeout: 120_000 }, () => {
  it('folder path, library id, missing repo (error or pull), and nonsense', async () => {
    const dataDir = path.join(tmp, 'r1');
    // A folder path is used as given.
    const f = await resolveModelArg(modelDir, dataDir);
    assert.equal(f.source, 'folder');
    assert.equal(f.dir, modelDir);
    // Not downloaded and pull not allowed → model_not_found with the pull command.
    await assert.rejects(resolveModelArg(REPO, dataDir), (e: unknown) => e instanceof ApiError && e.code === 'model_not_found' && /mlx-bar pull/.test(e.message));
    // With pull: downloaded into the library.
    let jobSeen = false;
    const p = await resolveModelArg(REPO, dataDir, { pull: true, endpoint: hub.endpoint, onPull: () => (jobSeen = true) });
    assert.equal(p.source, 'pulled');
    assert.equal(p.id, REPO);
    assert.equal(p.dir, path.join(dataDir, 'models', 'mlx-community--Tiny-Cli-Model'));
    assert.ok(jobSeen);
    // Next time it is a library hit, by repo id or folder name, without any hub request.
    const before = hub.log.length;
    assert.deepEqual(await resolveModelArg(REPO, dataDir, { pull: true, endpoint: hub.endpoint }), { id: REPO, dir: p.dir, source: 'library' });
    assert.equal((await resolveModelArg('mlx-community--Tiny-Cli-Model', dataDir)).id, REPO);
    assert.equal(hub.log.length, before);
    await assert.rejects(resolveModelArg('no such thing', dataDir), (e: unknown) => e instanceof ApiError && e.code === 'model_not_found');
    await assert.rejects(resolveModelArg('./does-not-exist', dataDir), /does not exist/);
  });
});
