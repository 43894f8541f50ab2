// Bounded concurrent pulls and a disk reservation across them (#11 item 6), against the local
// imitation of the hub (test/library/fake-hub.ts, real HTTP on loopback) and real tiny-model files:
// - with 2 download slots, a third pull waits (`queued`), sends no request to the hub until a slot
//   frees, then runs; a queued pull can be cancelled without ever touching the network; when the
//   waiting line is full a further pull is refused (`busy`);
// - free disk must cover the remaining bytes of every running pull plus a margin: a pull that would
//   overfill it fails with `no_space` before any file is requested, and the same pull with the same
//   free space starts once the other pull's reservation is gone (negative control).
// Free disk is the one thing injected (a real full disk cannot be made safely in a test).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { startPull, type PullJob, type PullStart } from '../../main/library/downloader.ts';
import { createPullScheduler, MAX_CONCURRENT_PULLS } from '../../main/library/pull-queue.ts';
import { HubError } from '../../main/library/hub-client.ts';

let hub: FakeHub;
let modelDir: string;
let root: string;
const fast = { minRetryDelayMs: 10, maxRetryDelayMs: 50, retries: 2 };
const repoIds = ['q-org/one', 'q-org/two', 'q-org/three', 'q-org/four', 'q-org/five', 'q-org/six', 'q-org/seven', 'd-org/big-a', 'd-org/big-b'];

before(async () => {
  modelDir = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
  hub = await startFakeHub();
  for (const id of repoIds) hub.addRepo(id, modelDir);
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-pullq-'));
});

after(async () => {
  await hub?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

// Hub requests for one repository: its listing (/api/models/<repo>/revision/…) and its files (/<repo>/resolve/…).
const requestsFor = (repo: string) => hub.log.filter((e) => e.server === 'hub' && e.path.includes(`/${repo}/`));
const resolvesFor = (repo: string) => hub.log.filter((e) => e.server === 'hub' && e.path.startsWith(`/${repo}/resolve/`));

async function settle(job: PullJob): Promise<HubError> {
  try {
    await job.result;
  } catch (err) {
    assert.ok(err instanceof HubError, String(err));
    return err;
  }
  assert.fail('expected the pull to fail');
}

describe('pull queue', { timeout: 240_000 }, () => {
  it('runs at most 2 pulls; the third waits (queued, no hub request) and starts when a slot frees; a queued pull cancels offline; a full line is refused', async () => {
    assert.equal(MAX_CONCURRENT_PULLS, 2);
    const scheduler = createPullScheduler({ maxWaiting: 1 });
    const dataDir = path.join(root, 'slots');
    hub.faults.throttleBytesPerSec = 128 * 1024; // the ~11 MB tokenizer takes long: the pulls stay active
    const opts = { dataDir, endpoint: hub.endpoint, scheduler, ...fast };
    try {
      const [a, b, c] = ['q-org/one', 'q-org/two', 'q-org/three'].map((r) => startPull(r, opts));
      assert.equal(a.queued, false, 'a free slot is taken at once');
      assert.equal(b.queued, false);
      assert.equal(c.queued, true, 'the third pull waits');
      await Promise.all([once(a, 'start'), once(b, 'start')]);
      assert.equal(scheduler.running, 2);
      assert.equal(scheduler.waiting, 1);
      assert.equal(c.queued, true);
      assert.deepEqual(requestsFor('q-org/three'), [], 'a queued pull sends nothing to the hub');
      assert.equal(c.progress.receivedBytes, 0);

      // The line (1 waiting) is full: one more is refused at once instead of piling up.
      assert.throws(() => startPull('q-org/four', opts), (e: unknown) => e instanceof HubError && e.code === 'busy' && /waiting/.test(e.message));

      // A slot frees: the queued pull starts.
      const cStarted = once(c, 'start');
      a.cancel();
      assert.equal((await settle(a)).code, 'cancelled');
      await cStarted;
      assert.equal(c.queued, false);
      assert.ok(requestsFor('q-org/three').length > 0, 'the pull that waited now talks to the hub');
      assert.equal(scheduler.running, 2);

      // Cancel a queued pull: it ends as cancelled and never sent a request.
      const d = startPull('q-org/five', opts);
      assert.equal(d.queued, true);
      d.cancel();
      assert.equal((await settle(d)).code, 'cancelled');
      assert.deepEqual(requestsFor('q-org/five'), []);
      assert.equal(scheduler.waiting, 0);

      b.cancel();
      c.cancel();
      await Promise.all([settle(b), settle(c)]);
      assert.equal(scheduler.running, 0, 'every slot is given back');
    } finally {
      delete hub.faults.throttleBytesPerSec;
    }
  });

  it('free disk must cover what every running pull still has to write plus a margin: the overfilling pull fails no_space before any file request', async () => {
    const MARGIN = 1024 * 1024;
    let free = 1e12;
    const scheduler = createPullScheduler({ marginBytes: MARGIN, freeBytes: async () => free });
    const dataDir = path.join(root, 'disk');
    hub.faults.throttleBytesPerSec = 128 * 1024;
    const opts = { dataDir, endpoint: hub.endpoint, scheduler, ...fast };
    try {
      const a = startPull('d-org/big-a', opts);
      const [startA] = (await once(a, 'start')) as [PullStart];
      const need = startA.totalBytes; // both repositories hold the same files
      assert.ok(need > 1_000_000, `need ${need}`);

      // Room for one more pull on its own, but not next to what A still has to write.
      free = need + Math.floor(need / 2) + MARGIN;
      const b = startPull('d-org/big-b', opts);
      const err = await settle(b);
      assert.equal(err.code, 'no_space');
      assert.match(err.message, /Not enough disk space: .* to download, .* free, .* still to come for the other downloads/);
      assert.deepEqual(resolvesFor('d-org/big-b'), [], 'no file of the refused pull was requested');

      // Negative control: the same free space is enough once A's reservation is gone.
      a.cancel();
      await settle(a);
      const again = startPull('d-org/big-b', opts);
      const started = await Promise.race([once(again, 'start').then(() => 'started'), again.result.then(() => 'done', (e: HubError) => e.code)]);
      assert.equal(started, 'started');
      again.cancel();
      await settle(again);
    } finally {
      delete hub.faults.throttleBytesPerSec;
    }
  });
});
