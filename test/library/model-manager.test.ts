// The model manager against the REAL supervised engine process (createEngineClient) on tiny
// random-weight models: single-flight loads, switching, idle unload + reload, fit refusal, errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { createEngineClient, loadTextPipeline, type SupervisedEngineClient } from '../../main/engine/index.ts';
import { createModelManager, type ModelManager } from '../../main/library/model-manager.ts';
import { ApiError } from '../../main/common/errors.ts';

let root: string;
let dataDir: string;
let qwenDir: string;
let llamaDir: string;
let brokenDir: string;
const engines: SupervisedEngineClient[] = [];
const managers: ModelManager[] = [];
const GiB = 1024 ** 3;

/** A real engine client with a spy counting start() calls (the engine itself is not replaced). */
function engineWithCounter(): { engine: SupervisedEngineClient; starts: string[] } {
  const engine = createEngineClient({ log: () => {}, backoff: { initialMs: 50, maxMs: 200 }, maxConsecutiveCrashes: 1 });
  engines.push(engine);
  const starts: string[] = [];
  const realStart = engine.start.bind(engine);
  engine.start = (dir: string) => {
    starts.push(dir);
    return realStart(dir);
  };
  return { engine, starts };
}

function manager(engine: SupervisedEngineClient, opts: Partial<Parameters<typeof createModelManager>[0]> = {}): ModelManager {
  const m = createModelManager({
    engine,
    dataDir,
    library: { extraDirs: [qwenDir, llamaDir, brokenDir], contextTokens: 2048 },
    availableBytes: () => 16 * GiB,
    ...opts,
  });
  managers.push(m);
  return m;
}

function waitFor<T>(m: ModelManager, event: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    m.once(event, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-mm-'));
  dataDir = path.join(root, 'data');
  qwenDir = await buildTinyModel({ family: 'qwen3' });
  llamaDir = await buildTinyModel({ family: 'llama' });
  // Listed as ready (all files present and valid) but the engine cannot load it.
  brokenDir = path.join(root, 'broken-arch');
  cpSync(qwenDir, brokenDir, { recursive: true });
  const cfg = JSON.parse(readFileSync(path.join(brokenDir, 'config.json'), 'utf8'));
  writeFileSync(path.join(brokenDir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'gpt2' }));
});

after(async () => {
  for (const m of managers) await Promise.race([m.close(), new Promise((r) => setTimeout(r, 10_000))]);
  await Promise.all(engines.map((e) => Promise.race([e.stop(), new Promise((r) => setTimeout(r, 10_000))])));
  for (const e of engines) if (e.pid) process.kill(e.pid, 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('model manager (real engine process)', { timeout: 300_000 }, () => {
  it('ten concurrent first requests cause exactly one load', async () => {
    const { engine, starts } = engineWithCounter();
    let extrasLoads = 0;
    const m = manager(engine, {
      loadExtras: (dir) => {
        extrasLoads++;
        return loadTextPipeline(dir);
      },
    });
    const events: string[] = [];
    for (const ev of ['loading', 'loaded', 'unloaded', 'load_failed']) m.on(ev, () => events.push(ev));
    const id = path.basename(qwenDir);
    const infos = await Promise.all(Array.from({ length: 10 }, () => m.ensureLoaded(id)));
    assert.equal(starts.length, 1);
    assert.equal(extrasLoads, 1, 'the per-model companion (text pipeline) is loaded once too');
    assert.deepEqual(events, ['loading', 'loaded']);
    for (const i of infos) assert.equal(i, infos[0]);
    assert.equal(infos[0].architecture, 'qwen3');
    assert.equal(engine.state, 'ready');
    assert.equal(m.status().modelId, id);
    // Already loaded: no further load.
    await m.ensureLoaded(id);
    assert.equal(starts.length, 1);

    // Switching: a request for another model waits for the lease on the first one, then loads once.
    const lease = await m.acquire(id);
    const pipeline = lease.extras as Awaited<ReturnType<typeof loadTextPipeline>>;
    assert.ok(pipeline.encode('hello').length > 0, 'the lease carries the loaded model\'s text pipeline');
    const switched = Promise.all([m.ensureLoaded(path.basename(llamaDir)), m.ensureLoaded(path.basename(llamaDir))]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(starts.length, 1, 'no switch while a request holds the current model');
    lease.release();
    const [a, b] = await switched;
    assert.equal(a, b);
    assert.equal(a.architecture, 'llama');
    assert.equal(starts.length, 2);
    assert.deepEqual(events, ['loading', 'loaded', 'unloaded', 'loading', 'loaded']);
  });

  it('unloads after the idle time, keeps the model while a request holds it, and reloads on the next request', async () => {
    const { engine, starts } = engineWithCounter();
    const m = manager(engine, { idleUnloadMs: 400 });
    const id = path.basename(qwenDir);
    const lease = await m.acquire(id);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(engine.state, 'ready', 'a request in progress prevents the idle unload');
    const unloaded = waitFor<{ id: string; reason: string }>(m, 'unloaded', 30_000);
    lease.release();
    const ev = await unloaded;
    assert.deepEqual(ev, { id, reason: 'idle' });
    assert.equal(engine.state, 'stopped');
    assert.equal(m.status().state, 'empty');
    const info = await m.ensureLoaded(id);
    assert.equal(info.architecture, 'qwen3');
    assert.equal(starts.length, 2, 'reloaded on the next request');
    m.setIdleUnloadMs(0); // 0 = never
    assert.equal(m.status().unloadAt, null);
  });

  it('when the engine dies and its supervisor gives up, the give-up sticks: requests get 503 engine_gave_up, an explicit load recovers', async () => {
    const { engine, starts } = engineWithCounter(); // maxConsecutiveCrashes: 1 → no automatic restart
    const m = manager(engine);
    const id = path.basename(qwenDir);
    await m.ensureLoaded(id);
    const unloaded = waitFor<{ id: string; reason: string }>(m, 'unloaded', 30_000);
    process.kill(engine.pid!, 'SIGKILL'); // a real kill of the real engine process
    assert.deepEqual(await unloaded, { id, reason: 'engine_stopped' });
    assert.equal(m.status().state, 'empty');
    // no silent reload of the model that keeps crashing: request-driven loads and leases are refused
    for (const attempt of [() => m.ensureLoaded(id), () => m.acquire(id)]) {
      await assert.rejects(attempt(), (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.code, 'engine_gave_up');
        assert.equal(err.status, 503);
        assert.match(err.message, /crashed 1 times in a row.*Load a model explicitly/);
        return true;
      });
    }
    assert.equal(starts.length, 1, 'the engine was not restarted behind the user\'s back');
    assert.ok(m.engineGaveUp);
    // the way back: an explicit load (POST /v1/models/load, the Models page, the tray)
    const info = await m.ensureLoaded(id, { explicit: true });
    assert.equal(info.architecture, 'qwen3');
    assert.equal(starts.length, 2);
    assert.equal(m.engineGaveUp, null);
    await m.ensureLoaded(id); // and requests work again
  });

  it('request-driven reloads of a model that fails to load back off (503 + Retry-After), an explicit load does not wait', async () => {
    const { engine, starts } = engineWithCounter();
    const m = manager(engine);
    const id = path.basename(brokenDir);
    await assert.rejects(m.ensureLoaded(id), (err: unknown) => err instanceof ApiError && err.code === 'model_load_failed');
    assert.equal(starts.length, 1);
    await assert.rejects(m.ensureLoaded(id), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'engine_unavailable');
      assert.equal(err.status, 503);
      assert.ok((err.retryAfter ?? 0) >= 1, 'says when to retry');
      assert.match(err.message, /failed 1 time\(s\) in a row/);
      return true;
    });
    assert.equal(starts.length, 1, 'the backoff kept the engine from another attempt');
    await assert.rejects(m.ensureLoaded(id, { explicit: true }), (err: unknown) => err instanceof ApiError && err.code === 'model_load_failed');
    assert.equal(starts.length, 2, 'an explicit load tries at once');
  });

  it('refuses a model that does not fit, saying why, without starting the engine', async () => {
    const { engine, starts } = engineWithCounter();
    const m = manager(engine, { availableBytes: () => 50 * 1024 * 1024 });
    const failed = waitFor<{ id: string; error: ApiError }>(m, 'load_failed', 5000);
    await assert.rejects(m.ensureLoaded(path.basename(qwenDir)), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'model_too_large');
      assert.equal(err.status, 400); // deterministic: SDKs must not retry it
      assert.match(err.message, /Too large: needs about .* \(weights .* in float32 \+ KV cache .* for 2048 tokens.*only .* is available/);
      return true;
    });
    assert.equal((await failed).error.code, 'model_too_large');
    assert.equal(starts.length, 0);
  });

  it('unknown or path-like model names are model_not_found and never reach the engine', async () => {
    const { engine, starts } = engineWithCounter();
    const m = manager(engine);
    for (const bad of ['../../etc/passwd', qwenDir, 'nope']) {
      await assert.rejects(m.ensureLoaded(bad), (err: unknown) => err instanceof ApiError && err.code === 'model_not_found' && err.status === 404);
    }
    assert.equal(starts.length, 0);
  });

  it('an engine load failure is model_load_failed, without paths, and the next request can load another model', async () => {
    const { engine } = engineWithCounter();
    const m = manager(engine);
    const failed = waitFor<{ id: string; error: ApiError }>(m, 'load_failed', 60_000);
    await assert.rejects(m.ensureLoaded('broken-arch'), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'model_load_failed');
      assert.ok(!err.message.includes(root), err.message);
      return true;
    });
    assert.equal((await failed).id, 'broken-arch');
    assert.equal(m.status().state, 'empty');
    const info = await m.ensureLoaded(path.basename(qwenDir));
    assert.equal(info.architecture, 'qwen3');
  });
});
