// #11 item 2 through the real server: a FIFO named like a cache entry in cache/response/ and in
// cache/prefix-kv/ (real mkfifo) kept `mlx-bar serve` from ever starting — the startup scan opened
// it, and an open of a FIFO waits for a writer. `startServe` (the core's start function: real
// engine process, tiny model, temp data dir) with the default settings — the response store is
// scanned even while the response cache is off, prefix persistence is on — must start, answer
// /health and /v1/models, say in its log that it skipped the files, and leave them where they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, lstatSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

/** A reader blocked in open() on a FIFO returns once a writer opens it: frees the stuck thread after a failure. */
function releaseBlockedReaders(fifos: string[]): void {
  for (const f of fifos) {
    try {
      closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no reader waiting (ENXIO), or already gone
    }
  }
}

test('FIFOs named like entries in both cache folders: serve starts, answers, reports and leaves them', { timeout: 300_000 }, async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'mlxbar-fifo-serve-'));
  const dataDir = path.join(root, 'data');
  const fifos = ['response', 'prefix-kv'].map((kind) => {
    mkdirSync(path.join(dataDir, 'cache', kind), { recursive: true });
    const f = path.join(dataDir, 'cache', kind, `${'a'.repeat(40)}.entry`);
    execFileSync('mkfifo', [f]);
    return f;
  });
  let running: RunningServe | null = null;
  const log: string[] = [];
  try {
    const modelDir = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 }, path.join(root, 'model'));
    const starting = startServe(serveOptionsFor(modelDir, dataDir, { idleUnloadMs: 0 }), (l) => log.push(l));
    const started = await Promise.race([starting, sleep(180_000).then(() => 'timed out' as const)]);
    if (started === 'timed out') {
      releaseBlockedReaders(fifos);
      running = await starting.catch(() => null);
      assert.fail(`the server did not start within 180 s (blocked on a FIFO?); log:\n${log.join('\n')}`);
    }
    running = started;

    const health = await fetch(`${running.url}/health`);
    assert.equal(health.status, 200, await health.clone().text());
    const models = (await (await fetch(`${running.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.ok(models.data.length >= 1, 'the model is listed');

    // Each store reports what it skipped (the prefix store opens once the model is loaded).
    for (let i = 0; !log.some((l) => /^prefix cache: skipped 1 file/.test(l)); i++) {
      assert.ok(i < 600, `no "prefix cache: skipped" line in the log:\n${log.join('\n')}`);
      await sleep(100);
    }
    assert.ok(log.some((l) => /^cache: skipped 1 file\(s\) named like entries that are not regular files \(left alone\)$/.test(l)), log.join('\n'));
    for (const f of fifos) assert.ok(lstatSync(f).isFIFO(), `${path.basename(path.dirname(f))}: the FIFO is left where it was`);
    // Still serving after the scans.
    assert.equal((await fetch(`${running.url}/health`)).status, 200);
  } finally {
    releaseBlockedReaders(fifos);
    await stopServeHard(running);
    rmSync(root, { recursive: true, force: true });
  }
});
