// Model management over HTTP end to end (`startServe`: real supervised engine on a tiny model, real
// loopback HTTP, the local fake hub standing in for Hugging Face via HF_ENDPOINT): POST
// /v1/models/pull downloads into the library with progress visible in GET /v1/models/pulls, the
// model then appears in GET /v1/models, POST /v1/models/load switches to it and a chat request is
// answered by it; bad repo ids → 400, unknown models → 404, DELETE cancels a running download.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';

const START = 'tiny-start';
const PULLED = 'test-org/tiny-pulled';
const SLOW = 'test-org/tiny-slow';

let root: string;
let dataDir: string;
let hub: FakeHub | null = null;
let hubModel = '';
let running: RunningServe | null = null;
const savedEndpoint = process.env.HF_ENDPOINT;

async function api(method: string, route: string, body?: unknown) {
  const res = await fetch(`${running!.url}${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as Record<string, any> };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-admin-'));
  dataDir = path.join(root, 'data');
  const small = { family: 'qwen3' as const, hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64 };
  await buildTinyModel(small, path.join(dataDir, 'models', START));
  hubModel = await buildTinyModel({ ...small, layers: 1 });
  hub = await startFakeHub();
  hub.addRepo(PULLED, hubModel);
  hub.addRepo(SLOW, hubModel, { commit: 'b'.repeat(40) });
  process.env.HF_ENDPOINT = hub.endpoint;
  running = await startServe(
    serveOptionsFor(path.join(dataDir, 'models', START), dataDir, { settings: { ...DEFAULT_SETTINGS, dataDir, contextLength: 2048 }, idleUnloadMs: 0 }),
    () => {},
  );
}, { timeout: 240_000 });

after(async () => {
  await running?.stop().catch(() => {});
  await hub?.close().catch(() => {});
  if (savedEndpoint === undefined) delete process.env.HF_ENDPOINT;
  else process.env.HF_ENDPOINT = savedEndpoint;
  rmSync(root, { recursive: true, force: true });
}, { timeout: 60_000 });

describe('model management over HTTP', { timeout: 300_000 }, () => {
  it('pulls from the hub with progress, lists the model, loads it and answers a chat request with it', async () => {
    const before = await api('GET', '/v1/models');
    assert.equal(before.status, 200);
    assert.ok(!before.body.data.some((m: { id: string }) => m.id === PULLED), 'not in the library before the pull');

    const started = await api('POST', '/v1/models/pull', { repo: PULLED });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const job = started.body.job;
    assert.match(job.id, /^[0-9a-f]{16}$/);
    assert.equal(job.model, PULLED);
    assert.ok(['running', 'done'].includes(job.state));

    const done = await waitFor('the pull to finish', async () => {
      const r = await api('GET', '/v1/models/pulls');
      assert.equal(r.status, 200);
      const j = r.body.data.find((x: { id: string }) => x.id === job.id);
      assert.ok(j, 'the job is listed');
      assert.notEqual(j.state, 'failed', JSON.stringify(j.error));
      return j.state === 'done' ? j : null;
    });
    assert.ok(done.totalBytes > 1_000_000, `total bytes ${done.totalBytes}`); // tokenizer.json alone is ~11 MB
    assert.equal(done.receivedBytes, done.totalBytes);
    assert.equal(done.filesDone, done.filesTotal);
    assert.equal(done.error, null);
    assert.ok(existsSync(path.join(dataDir, 'models', 'test-org--tiny-pulled', 'config.json')));

    const listed = await api('GET', '/v1/models');
    const entry = listed.body.data.find((m: { id: string }) => m.id === PULLED);
    assert.ok(entry, `pulled model listed: ${listed.body.data.map((m: { id: string }) => m.id).join(', ')}`);
    assert.equal(entry.loaded, false);
    assert.ok(!JSON.stringify(listed.body).includes(root), 'no local paths in /v1/models');

    const loaded = await api('POST', '/v1/models/load', { model: PULLED });
    assert.equal(loaded.status, 200, JSON.stringify(loaded.body));
    assert.equal(loaded.body.id, PULLED);
    assert.equal(loaded.body.loaded, true);
    assert.ok(!JSON.stringify(loaded.body).includes(root), 'no local paths in the load answer');
    const health = await api('GET', '/health');
    assert.equal(health.body.model, PULLED);

    const after = await api('GET', '/v1/models');
    assert.equal(after.body.data.find((m: { id: string }) => m.id === PULLED).loaded, true);
    assert.equal(after.body.data.find((m: { id: string }) => m.id === START).loaded, false);

    // A request without `model` gets the model loaded from the dashboard.
    const chat = await api('POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    assert.equal(chat.status, 200, JSON.stringify(chat.body));
    assert.equal(chat.body.model, PULLED);
    assert.equal(chat.body.object, 'chat.completion');
  });

  it('refuses malformed repo ids (400) and unknown models (404) with API errors', async () => {
    for (const repo of ['../../etc', 'no-slash', 'a/b/c', 'x/y@..']) {
      const r = await api('POST', '/v1/models/pull', { repo });
      assert.equal(r.status, 400, repo);
      assert.equal(r.body.error.param, 'repo');
    }
    const missing = await api('POST', '/v1/models/pull', {});
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'missing_required_parameter');

    for (const model of ['nope/nothing', '../models/tiny-start', path.join(dataDir, 'models', START)]) {
      const r = await api('POST', '/v1/models/load', { model });
      assert.equal(r.status, 404, model);
      assert.equal(r.body.error.code, 'model_not_found');
      assert.ok(!r.body.error.message.includes(root));
    }
    // A repo the hub does not have: the job fails with the hub's readable message (no paths).
    const gone = await api('POST', '/v1/models/pull', { repo: 'test-org/does-not-exist' });
    assert.equal(gone.status, 202);
    const failed = await waitFor('the failure', async () => {
      const r = await api('GET', '/v1/models/pulls');
      const j = r.body.data.find((x: { id: string }) => x.id === gone.body.job.id);
      return j && j.state !== 'running' ? j : null;
    }, 60_000);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.error.code, 'not_found');
    assert.match(failed.error.message, /not found/i);
    assert.ok(!failed.error.message.includes(root));

    const unknownJob = await api('DELETE', '/v1/models/pulls/0123456789abcdef');
    assert.equal(unknownJob.status, 404);
    const wrongMethod = await api('GET', '/v1/models/pull');
    assert.equal(wrongMethod.status, 405);

    // A web page in the user's browser cannot start downloads or switch models (Origin gate, CSRF).
    for (const [route, body] of [['/v1/models/pull', { repo: PULLED }], ['/v1/models/load', { model: START }]] as const) {
      const res = await fetch(`${running!.url}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 403, route);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'forbidden_origin');
    }
  });

  it('a second pull of the same repo joins the running job; DELETE cancels it and nothing half-done is listed', async () => {
    hub!.faults.throttleBytesPerSec = 256 * 1024; // ~11 MB tokenizer → ~45 s: plenty of time to cancel
    try {
      const first = await api('POST', '/v1/models/pull', { repo: SLOW });
      assert.equal(first.status, 202);
      const again = await api('POST', '/v1/models/pull', { repo: SLOW });
      assert.equal(again.status, 200);
      assert.equal(again.body.job.id, first.body.job.id);

      const moving = await waitFor('bytes to arrive', async () => {
        const r = await api('GET', '/v1/models/pulls');
        const j = r.body.data.find((x: { id: string }) => x.id === first.body.job.id);
        return j && j.state === 'running' && j.receivedBytes > 0 && j.totalBytes > j.receivedBytes ? j : null;
      }, 60_000);
      assert.ok(moving.totalBytes > 0);

      const cancel = await api('DELETE', `/v1/models/pulls/${first.body.job.id}`);
      assert.equal(cancel.status, 200);
      const cancelled = await waitFor('the cancellation', async () => {
        const r = await api('GET', '/v1/models/pulls');
        const j = r.body.data.find((x: { id: string }) => x.id === first.body.job.id);
        return j && j.state !== 'running' ? j : null;
      }, 30_000);
      assert.equal(cancelled.state, 'cancelled');
      assert.equal(cancelled.error.code, 'cancelled');
      const listed = await api('GET', '/v1/models');
      assert.ok(!listed.body.data.some((m: { id: string }) => m.id === SLOW), 'a cancelled pull is not a model');
      assert.ok(!existsSync(path.join(dataDir, 'models', 'test-org--tiny-slow')));
    } finally {
      delete hub!.faults.throttleBytesPerSec;
    }
  });

  it('two downloads run at once: a third is listed as queued, can be cancelled while queued, and starts when a slot frees (#11 item 6)', async () => {
    const repos = ['test-org/q-one', 'test-org/q-two', 'test-org/q-three', 'test-org/q-four'];
    repos.forEach((r, i) => hub!.addRepo(r, hubModel, { commit: String(i + 1).repeat(40) }));
    hub!.faults.throttleBytesPerSec = 128 * 1024;
    const job = async (id: string) => (await api('GET', '/v1/models/pulls')).body.data.find((x: { id: string }) => x.id === id);
    try {
      const started: Array<{ id: string; state: string }> = [];
      for (const repo of repos) {
        const r = await api('POST', '/v1/models/pull', { repo });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        started.push(r.body.job);
      }
      assert.deepEqual(started.map((j) => j.state), ['running', 'running', 'queued', 'queued']);
      const listed = await job(started[2].id);
      assert.equal(listed.state, 'queued');
      assert.equal(listed.receivedBytes, 0);
      assert.ok(!hub!.log.some((e) => e.path.includes('/test-org/q-three/')), 'a queued download has not contacted the hub');

      // Cancelled while waiting: it ends as cancelled and the line moves on without it.
      assert.equal((await api('DELETE', `/v1/models/pulls/${started[3].id}`)).status, 200);
      await waitFor('the queued job to be cancelled', async () => ((await job(started[3].id))?.state === 'cancelled' ? true : null), 30_000);

      // A running one is cancelled: the first queued one gets its slot.
      assert.equal((await api('DELETE', `/v1/models/pulls/${started[0].id}`)).status, 200);
      const moving = await waitFor('the queued download to start', async () => {
        const j = await job(started[2].id);
        return j && j.state === 'running' ? j : null;
      }, 30_000);
      assert.equal(moving.state, 'running');
      assert.equal((await job(started[3].id)).state, 'cancelled', 'the cancelled queued job never started');
    } finally {
      for (const j of (await api('GET', '/v1/models/pulls')).body.data) {
        if (j.state === 'running' || j.state === 'queued') await api('DELETE', `/v1/models/pulls/${j.id}`);
      }
      await waitFor('every download to stop', async () => ((await api('GET', '/v1/models/pulls')).body.data.every((j: { state: string }) => j.state !== 'running' && j.state !== 'queued') ? true : null), 30_000);
      delete hub!.faults.throttleBytesPerSec;
    }
  });
});
