// Pulls real tiny-model folders from a local imitation of the hub (test/library/fake-hub.ts):
// redirects to a second "CDN" origin, Range resume, injected failures. Never the internet.
import { after, before, beforeEach, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeHub, type FakeHub, type FakeRepo } from './fake-hub.ts';
import { activePulls, pullModel, startPull, type PullProgress, type PullRetry } from '../../main/library/downloader.ts';
import { HubError } from '../../main/library/hub-client.ts';

const REPO = 'mlx-community/Tiny-Qwen3-bf16';
let modelDir: string;
let hub: FakeHub;
let repo: FakeRepo;
let dataDir: string;
const fast = { minRetryDelayMs: 10, maxRetryDelayMs: 50, retries: 4 };

function sha(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
function modelsEntries(): string[] {
  const d = path.join(dataDir, 'models');
  return existsSync(d) ? readdirSync(d).filter((n) => n !== '.incoming') : [];
}
async function rejectsWith(p: Promise<unknown>, code: string): Promise<HubError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof HubError, `expected HubError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

before(async () => {
  modelDir = await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64 });
});

beforeEach(async () => {
  hub = await startFakeHub();
  repo = hub.addRepo(REPO, modelDir);
  dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-pull-'));
});

afterEach(async () => {
  await hub.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('pull from the hub', () => {
  it('downloads every model file into models/<owner>--<name>/ with matching sha256, atomically', async () => {
    const progress: PullProgress[] = [];
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, token: 'hf_secret_token', ...fast, progressIntervalMs: 0 });
    let start: { totalBytes: number; files: Array<{ path: string }> } | undefined;
    job.on('start', (s) => (start = s));
    job.on('progress', (p) => progress.push(p));
    const res = await job.result;

    const dir = path.join(dataDir, 'models', 'mlx-community--Tiny-Qwen3-bf16');
    assert.equal(res.dir, dir);
    assert.equal(res.id, REPO);
    assert.equal(res.alreadyPresent, false);
    for (const f of repo.files) {
      assert.equal(sha(path.join(dir, f.name)), f.sha256, f.name);
    }
    // Only model files: no .gitattributes, no images, no leftovers (.part, state, lock).
    const names = readdirSync(dir).sort();
    assert.deepEqual(names, [...repo.files.map((f) => f.name), '.mlx-bar.json'].sort());
    const manifest = JSON.parse(readFileSync(path.join(dir, '.mlx-bar.json'), 'utf8'));
    assert.equal(manifest.commit, repo.commit);
    assert.deepEqual(readdirSync(path.join(dataDir, 'models', '.incoming')), []);

    // Progress: totals known up front, monotonic, ending at 100 %.
    const total = repo.files.reduce((s, f) => s + f.data.length, 0);
    assert.equal(start?.totalBytes, total);
    assert.ok(progress.length > 2);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].receivedBytes >= progress[i - 1].receivedBytes);
    assert.equal(progress.at(-1)!.receivedBytes, total);

    // Token to the hub origin only; the CDN (another origin) never sees it.
    const hubReqs = hub.log.filter((l) => l.server === 'hub');
    const cdnReqs = hub.log.filter((l) => l.server === 'cdn');
    assert.ok(hubReqs.length > 0 && cdnReqs.length > 0, 'LFS files must go through the CDN redirect');
    for (const l of hubReqs) assert.equal(l.authorization, 'Bearer hf_secret_token');
    for (const l of cdnReqs) assert.equal(l.authorization, undefined);

    // A second pull of the same commit downloads nothing.
    const before = hub.log.filter((l) => l.server === 'cdn').length;
    const again = await pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.equal(again.alreadyPresent, true);
    assert.equal(hub.log.filter((l) => l.server === 'cdn').length, before);

    // A damaged folder (file truncated after the download) is repaired by pulling again.
    truncateSync(path.join(dir, 'model.safetensors'), 1000);
    const repaired = await pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.equal(repaired.alreadyPresent, false);
    for (const f of repo.files) assert.equal(sha(path.join(dir, f.name)), f.sha256, f.name);
    assert.deepEqual(readdirSync(path.join(dataDir, 'models', '.incoming')), [], 'the replaced folder is cleaned up');
  });

  it('an embedding model also brings modules.json and 1_Pooling/config.json, and the engine reads its pooling', async () => {
    const src = mkdtempSync(path.join(tmpdir(), 'mlxbar-embsrc-'));
    try {
      for (const f of readdirSync(modelDir)) writeFileSync(path.join(src, f), readFileSync(path.join(modelDir, f)));
      writeFileSync(path.join(src, 'modules.json'), JSON.stringify([
        { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
        { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
      ]));
      mkdirSync(path.join(src, '1_Pooling'));
      writeFileSync(path.join(src, '1_Pooling', 'config.json'), JSON.stringify({ word_embedding_dimension: 64, pooling_mode_mean_tokens: true }));
      mkdirSync(path.join(src, 'assets'));
      writeFileSync(path.join(src, 'assets', 'diagram.json'), '{}'); // other subfolders stay skipped
      hub.addRepo('mlx-community/Tiny-Embed', src);
      const res = await pullModel('mlx-community/Tiny-Embed', { dataDir, endpoint: hub.endpoint, ...fast });
      assert.ok(existsSync(path.join(res.dir, 'modules.json')));
      assert.equal(readFileSync(path.join(res.dir, '1_Pooling', 'config.json'), 'utf8'), readFileSync(path.join(src, '1_Pooling', 'config.json'), 'utf8'));
      assert.ok(!existsSync(path.join(res.dir, 'assets')));
      const { readEmbeddingConfig } = await import('../../main/engine/model/embed.ts');
      assert.deepEqual(readEmbeddingConfig(res.dir), { pooling: 'mean', source: 'pooling_config' });
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });

  it('honours HF_ENDPOINT and HF_TOKEN from the environment, and @revision in the folder name', async () => {
    const saved = { e: process.env.HF_ENDPOINT, t: process.env.HF_TOKEN };
    process.env.HF_ENDPOINT = hub.endpoint;
    process.env.HF_TOKEN = 'hf_env_token';
    hub.faults.requireToken = 'hf_env_token';
    try {
      const res = await pullModel(`${REPO}@${repo.commit}`, { dataDir, ...fast });
      assert.equal(path.basename(res.dir), `mlx-community--Tiny-Qwen3-bf16@${repo.commit}`);
      assert.equal(res.id, `${REPO}@${repo.commit}`);
      assert.ok(existsSync(path.join(res.dir, 'config.json')));
      assert.ok(hub.log.some((l) => l.path.includes(`/revision/${repo.commit}`)));
    } finally {
      if (saved.e === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved.e;
      if (saved.t === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved.t;
    }
  });

  it('resumes a file with Range after the connection drops mid-file, and the sha256 still matches', async () => {
    const big = repo.files.find((f) => f.name === 'model.safetensors')!;
    hub.faults.dropAfterBytes = { 'model.safetensors': 300_000 };
    const retries: PullRetry[] = [];
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    job.on('retry', (r) => retries.push(r));
    const res = await job.result;
    assert.equal(sha(path.join(res.dir, 'model.safetensors')), big.sha256);
    assert.ok(retries.some((r) => r.file === 'model.safetensors'), 'a retry was reported');
    const blobReqs = hub.log.filter((l) => l.server === 'cdn' && l.path === `/blobs/${big.sha256}`);
    assert.equal(blobReqs.length, 2);
    assert.equal(blobReqs[0].range, undefined);
    const m = /^bytes=(\d+)-$/.exec(blobReqs[1].range ?? '');
    assert.ok(m, `second request resumes with Range (got ${blobReqs[1].range})`);
    assert.ok(Number(m[1]) > 0 && Number(m[1]) <= 300_000, `resumed at ${m[1]}`);
    assert.equal(blobReqs[1].status, 206);
  });

  it('a transfer that stalls (socket open, no bytes) is aborted and resumed', async () => {
    const big = repo.files.find((f) => f.name === 'model.safetensors')!;
    hub.faults.stallAfterBytes = { 'model.safetensors': 100_000 };
    const retries: PullRetry[] = [];
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast, stallTimeoutMs: 500 });
    job.on('retry', (r) => retries.push(r));
    const res = await job.result;
    assert.equal(sha(path.join(res.dir, 'model.safetensors')), big.sha256);
    assert.ok(retries.some((r) => /stalled/.test(r.message)), JSON.stringify(retries));
    const blobReqs = hub.log.filter((l) => l.server === 'cdn' && l.path === `/blobs/${big.sha256}`);
    assert.match(blobReqs.at(-1)!.range ?? '', /^bytes=[1-9]\d*-$/);
  });

  it('restarts the file when the server ignores Range (200 instead of 206)', async () => {
    const big = repo.files.find((f) => f.name === 'model.safetensors')!;
    hub.faults.dropAfterBytes = { 'model.safetensors': 200_000 };
    hub.faults.ignoreRange = true;
    const res = await pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.equal(sha(path.join(res.dir, 'model.safetensors')), big.sha256);
    const blobReqs = hub.log.filter((l) => l.server === 'cdn' && l.path === `/blobs/${big.sha256}`);
    assert.equal(blobReqs.at(-1)!.status, 200);
  });

  it('retries a 500 and a 429 (Retry-After) and then succeeds', async () => {
    hub.faults.infoStatuses = [503];
    hub.faults.resolveStatuses = {
      'config.json': [500],
      'tokenizer_config.json': [{ status: 429, headers: { 'retry-after': '1' } }],
    };
    const retries: PullRetry[] = [];
    // The wait asked for is checked, not the clock: the sleep records it and returns at once.
    const waits: number[] = [];
    const sleep = async (ms: number) => void waits.push(ms);
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast, sleep });
    job.on('retry', (r) => retries.push(r));
    const res = await job.result;
    assert.ok(existsSync(path.join(res.dir, 'config.json')));
    assert.ok(retries.some((r) => r.file === null), 'model-info retry');
    assert.ok(retries.some((r) => r.file === 'config.json'));
    const r429 = retries.find((r) => r.file === 'tokenizer_config.json');
    assert.equal(r429?.delayMs, 1000);
    assert.deepEqual(waits, [1000], 'Retry-After (1 s) was waited for, and only after the 429');
    const tok = hub.log.filter((l) => l.server === 'hub' && l.path.includes('tokenizer_config.json'));
    assert.deepEqual(tok.slice(0, 2).map((l) => l.status === 429), [true, false], 'answered 429, then retried');
  });

  it('gives up after the retries on a persistent 503, placing nothing', async () => {
    hub.faults.resolveStatuses = { 'config.json': [503, 503, 503, 503, 503, 503] };
    const err = await rejectsWith(pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast, retries: 2 }), 'server_error');
    assert.match(err.message, /503/);
    assert.deepEqual(modelsEntries(), []);
  });

  it('a missing repository is a clear 404 error and nothing is placed', async () => {
    const err = await rejectsWith(pullModel('mlx-community/Does-Not-Exist', { dataDir, endpoint: hub.endpoint, ...fast }), 'not_found');
    assert.match(err.message, /mlx-community\/Does-Not-Exist/);
    assert.match(err.message, /404/);
    assert.deepEqual(modelsEntries(), []);
    // Not retried: one request only.
    assert.equal(hub.log.filter((l) => l.path.includes('Does-Not-Exist')).length, 1);
  });

  it('a missing revision is a clear 404', async () => {
    const err = await rejectsWith(pullModel(`${REPO}@no-such-branch`, { dataDir, endpoint: hub.endpoint, ...fast }), 'not_found');
    assert.match(err.message, /revision not found/);
  });

  it('a gated repository (401) says to accept the license and set HF_TOKEN, and nothing is placed', async () => {
    hub.faults.requireToken = 'hf_right';
    const err = await rejectsWith(pullModel(REPO, { dataDir, endpoint: hub.endpoint, token: 'hf_wrong', ...fast }), 'unauthorized');
    assert.match(err.message, /HF_TOKEN/);
    assert.match(err.message, /licen[cs]e/);
    assert.ok(!err.message.includes('hf_wrong'), 'the token never appears in messages');
    assert.deepEqual(modelsEntries(), []);
  });

  it('a wrong checksum is an integrity error; the corrupt part is discarded and nothing is placed', async () => {
    hub.faults.corrupt = new Set(['model.safetensors']);
    const err = await rejectsWith(pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast }), 'integrity');
    assert.match(err.message, /model\.safetensors/);
    assert.deepEqual(modelsEntries(), []);
    const staging = path.join(dataDir, 'models', '.incoming', 'mlx-community--Tiny-Qwen3-bf16.partial');
    assert.ok(!existsSync(path.join(staging, 'model.safetensors.part')));
    assert.ok(!existsSync(path.join(staging, 'model.safetensors')));
  });

  it('cancellation leaves no ready model but a resumable part, and the next pull resumes it', async () => {
    hub.faults.throttleBytesPerSec = 2_000_000;
    const ac = new AbortController();
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, signal: ac.signal, ...fast, progressIntervalMs: 0 });
    let cancelledFile = '';
    job.on('progress', (p: PullProgress) => {
      // Cancel inside the first large (LFS, via the CDN) file.
      const f = repo.files.find((x) => x.name === p.file);
      if (f?.lfs && !ac.signal.aborted) {
        cancelledFile = f.name;
        ac.abort();
      }
    });
    await rejectsWith(job.result, 'cancelled');
    assert.deepEqual(modelsEntries(), []);
    const staging = path.join(dataDir, 'models', '.incoming', 'mlx-community--Tiny-Qwen3-bf16.partial');
    const big = repo.files.find((f) => f.name === cancelledFile)!;
    const part = path.join(staging, `${big.name}.part`);
    assert.ok(existsSync(part), 'the part is kept');
    const partSize = statSync(part).size;
    assert.ok(partSize > 0 && partSize < big.data.length);
    assert.ok(!existsSync(path.join(dataDir, 'models', '.incoming', 'mlx-community--Tiny-Qwen3-bf16.lock')), 'lock released');

    delete hub.faults.throttleBytesPerSec;
    const res = await pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.equal(sha(path.join(res.dir, big.name)), big.sha256);
    const last = hub.log.filter((l) => l.server === 'cdn' && l.path === `/blobs/${big.sha256}`).at(-1)!;
    assert.equal(last.range, `bytes=${partSize}-`);
    assert.equal(last.status, 206);
  });

  it('refuses a listing with traversal names and writes nothing outside the data dir', async () => {
    for (const evil of ['../evil.safetensors', '/etc/evil.safetensors', '..\\evil.safetensors', 'a/../../evil.safetensors']) {
      hub.faults.extraSiblings = [{ rfilename: evil, size: 4, lfs: { sha256: 'a'.repeat(64), size: 4 } }];
      const err = await rejectsWith(pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast }), 'bad_response');
      assert.match(err.message, /unsafe file names/);
      assert.deepEqual(modelsEntries(), []);
      assert.ok(!existsSync(path.join(dataDir, 'evil.safetensors')));
      assert.ok(!existsSync(path.join(dataDir, 'models', 'evil.safetensors')));
    }
  });

  it('rejects malformed repo ids and revisions before any request', async () => {
    for (const bad of ['../etc', 'a/../b', 'a/b/c', 'noslash', '/abs/x', 'a/b@../../x', 'a/b@', 'a /b', 'a/b\u0000']) {
      assert.throws(() => startPull(bad, { dataDir, endpoint: hub.endpoint }), /Invalid|Expected/, bad);
    }
    assert.equal(hub.log.length, 0);
  });

  it('a local disk failure is an io_error, not retried as a network error, and names no path', async () => {
    writeFileSync(path.join(dataDir, 'models'), 'not a folder');
    const retries: PullRetry[] = [];
    const job = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    job.on('retry', (r) => retries.push(r));
    const err = await rejectsWith(job.result, 'io_error');
    assert.equal(retries.length, 0);
    assert.ok(!err.message.includes(dataDir), err.message);
  });

  it('another process pulling the same model (live lock) is refused as busy; a stale lock is taken over', async () => {
    const incoming = path.join(dataDir, 'models', '.incoming');
    mkdirSync(incoming, { recursive: true });
    const lock = path.join(incoming, 'mlx-community--Tiny-Qwen3-bf16.lock');
    writeFileSync(lock, String(process.ppid)); // a live process that is not us
    await rejectsWith(pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast }), 'busy');
    assert.deepEqual(modelsEntries(), []);
    writeFileSync(lock, '2147483646'); // no such process
    const res = await pullModel(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.ok(existsSync(path.join(res.dir, 'config.json')));
    assert.ok(!existsSync(lock));
  });

  it('concurrent pulls of the same model share one download', async () => {
    const a = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    const b = startPull(REPO, { dataDir, endpoint: hub.endpoint, ...fast });
    assert.equal(a, b);
    assert.deepEqual(activePulls(), [a]);
    await a.result;
    assert.deepEqual(activePulls(), []);
    assert.equal(a.progress.receivedBytes, a.progress.totalBytes);
    assert.ok(a.progress.totalBytes > 0);
    assert.equal(hub.log.filter((l) => l.path.startsWith('/api/models/')).length, 1);
  });
});

after(() => {});
