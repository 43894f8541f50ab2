// The model manager's release/load hooks (what prefix persistence uses to save a model's prompt
// prefixes before a switch and restore the next model's before its first request), against the
// REAL supervised engine process on tiny models: beforeRelease runs after the outgoing model's
// requests finished and while the engine still holds it (switch, idle, manual); new requests for
// the outgoing model are not admitted on it meanwhile; afterLoad runs with the new model before
// waiting requests proceed; a hanging or failing hook delays a switch by at most hookTimeoutMs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { createEngineClient, type SupervisedEngineClient } from '../../main/engine/index.ts';
import { createModelManager, type HookOutcome, type ModelManager, type ModelManagerOptions } from '../../main/library/model-manager.ts';

let qwenDir: string;
let llamaDir: string;
const engines: SupervisedEngineClient[] = [];
const managers: ModelManager[] = [];

function setup(opts: Partial<ModelManagerOptions> = {}): { engine: SupervisedEngineClient; m: ModelManager; hookEvents: HookOutcome[]; events: string[] } {
  const engine = createEngineClient({ log: () => {} });
  engines.push(engine);
  const m = createModelManager({
    engine,
    dataDir: path.dirname(qwenDir),
    library: { extraDirs: [qwenDir, llamaDir], contextTokens: 2048 },
    availableBytes: () => 16 * 1024 ** 3,
    idleUnloadMs: 0,
    ...opts,
  });
  managers.push(m);
  const hookEvents: HookOutcome[] = [];
  const events: string[] = [];
  m.on('release_hook', (e: HookOutcome) => hookEvents.push(e));
  m.on('load_hook', (e: HookOutcome) => hookEvents.push(e));
  for (const ev of ['loading', 'loaded', 'unloaded']) m.on(ev, (e: { id: string; reason?: string }) => events.push(`${ev} ${e.id}${e.reason ? ` ${e.reason}` : ''}`));
  return { engine, m, hookEvents, events };
}

before(async () => {
  qwenDir = await buildTinyModel({ family: 'qwen3' });
  llamaDir = await buildTinyModel({ family: 'llama' });
});

after(async () => {
  for (const m of managers) await Promise.race([m.close(), new Promise((r) => setTimeout(r, 10_000))]);
  await Promise.all(engines.map((e) => Promise.race([e.stop(), new Promise((r) => setTimeout(r, 10_000))])));
  for (const e of engines) if (e.pid) process.kill(e.pid, 'SIGKILL');
});

describe('model manager hooks (real engine process)', { timeout: 300_000 }, () => {
  it('beforeRelease sees the outgoing model after its requests finished; afterLoad sees the new one before the load resolves', async () => {
    const qwen = path.basename(qwenDir);
    const llama = path.basename(llamaDir);
    const calls: Record<string, unknown>[] = [];
    let late: Promise<unknown> | null = null;
    const { engine, m, events } = setup({
      beforeRelease: (id, reason) => {
        calls.push({ hook: 'beforeRelease', id, reason, state: engine.state, arch: engine.model?.architecture, active: m.status().activeRequests });
        // A request for the outgoing model arriving now must not be admitted on it.
        if (id === qwen && reason === 'switch' && !late) late = m.acquire(qwen);
        return new Promise((r) => setTimeout(r, 200));
      },
      afterLoad: (id, info) => {
        calls.push({ hook: 'afterLoad', id, arch: engine.model?.architecture, infoArch: info.architecture, loadedId: m.loadedId });
      },
    });
    await m.ensureLoaded(qwen);
    assert.deepEqual([...calls], [{ hook: 'afterLoad', id: qwen, arch: 'qwen3', infoArch: 'qwen3', loadedId: null }]);

    const lease = await m.acquire(qwen);
    const switched = m.ensureLoaded(llama).then((info) => {
      calls.push({ resolved: info.architecture });
      return info;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(calls.length, 1, 'no release while a request holds the model');
    lease.release();
    await switched;
    assert.deepEqual(calls.slice(1, 4), [
      { hook: 'beforeRelease', id: qwen, reason: 'switch', state: 'ready', arch: 'qwen3', active: 0 },
      { hook: 'afterLoad', id: llama, arch: 'llama', infoArch: 'llama', loadedId: null },
      { resolved: 'llama' },
    ]);
    // The late request for qwen queued behind the switch and got qwen loaded again (after llama's
    // own release), never a lease on the engine that was being replaced.
    const lateLease = (await late!) as { id: string; info: { architecture: string }; release(): void };
    assert.equal(lateLease.info.architecture, 'qwen3');
    assert.equal(engine.model?.architecture, 'qwen3');
    lateLease.release();
    assert.deepEqual(events, [
      'loading ' + qwen,
      'loaded ' + qwen,
      `unloaded ${qwen} switch`,
      'loading ' + llama,
      'loaded ' + llama,
      `unloaded ${llama} switch`,
      'loading ' + qwen,
      'loaded ' + qwen,
    ]);

    // Idle unload: the hook runs while the engine still holds the model.
    const unloaded = new Promise((r) => m.once('unloaded', r));
    m.setIdleUnloadMs(300);
    await unloaded;
    assert.deepEqual(calls.at(-1), { hook: 'beforeRelease', id: qwen, reason: 'idle', state: 'ready', arch: 'qwen3', active: 0 });
    assert.equal(engine.state, 'stopped');
  });

  it('a hanging or failing hook delays a switch by at most hookTimeoutMs, is reported without paths, and changes nothing else', async () => {
    const qwen = path.basename(qwenDir);
    const llama = path.basename(llamaDir);
    // The hook timeout's clock: records the time each hook is given, and fires on the next turn
    // (what 300 ms of a disk that never answers comes to, without waiting for it).
    const armed: number[] = [];
    const { engine, m, hookEvents } = setup({
      hookTimeoutMs: 300,
      hookTimer: (ms, fire) => {
        armed.push(ms);
        const t = setImmediate(fire);
        return () => clearImmediate(t);
      },
      beforeRelease: () => new Promise(() => {}), // a disk that never answers
      afterLoad: () => {
        throw new Error(`cannot read ${path.join(qwenDir, 'secret.entry')}`);
      },
    });
    const info = await m.ensureLoaded(qwen);
    assert.equal(info.architecture, 'qwen3', 'a failing afterLoad does not fail the load');
    assert.equal(m.loadedId, qwen);
    await m.ensureLoaded(llama);
    assert.equal(engine.model?.architecture, 'llama');
    await m.unload('manual');
    assert.equal(engine.state, 'stopped');
    assert.deepEqual(
      hookEvents.map((e) => [e.hook, e.id, e.reason ?? null, e.outcome]),
      [
        ['afterLoad', qwen, null, 'error'],
        ['beforeRelease', qwen, 'switch', 'timeout'],
        ['afterLoad', llama, null, 'error'],
        ['beforeRelease', llama, 'manual', 'timeout'],
      ],
    );
    // Every hook call was given hookTimeoutMs, and the switch went on only when that time was up.
    assert.deepEqual(armed, [300, 300, 300, 300]);
    const errors = hookEvents.filter((e) => e.outcome === 'error').map((e) => e.error ?? '');
    assert.ok(errors.every((msg) => msg.includes('cannot read') && !msg.includes(qwenDir)), errors.join(' | '));
  });
});
