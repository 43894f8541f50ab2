// #11 item 7 over HTTP, on a real server in library mode (`startServe`: real supervised engine
// process, tiny models in <data-dir>/models, real HTTP on loopback): what a user sees when
//   - a model keeps failing to load: the first request gets the load error, the next ones 503
//     engine_unavailable + Retry-After while the backoff runs, and the engine is not started again;
//   - the engine crashes 4 times in a row (real SIGKILLs of the real engine process) and its
//     supervisor gives up: every request gets 503 engine_gave_up (no Retry-After: waiting does not
//     help) and nothing reloads the model behind the user's back, until an explicit
//     POST /v1/models/load brings it back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';

const A = 'tiny-qwen3';
const BROKEN = 'broken-arch';
let root: string;
let running: RunningServe | null = null;
const loads: string[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function post(p: string, body: unknown) {
  const res = await fetch(`${running!.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { error?: { code: string; message: string } } & Record<string, unknown> };
}
const chat = (model: string) => post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });

async function until(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    assert.ok(Date.now() - t0 < ms, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-gaveup-http-'));
  const dataDir = path.join(root, 'data');
  const spec = { family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 } as const;
  await buildTinyModel(spec, path.join(dataDir, 'models', A));
  // Listed as ready (every file present and valid) but the engine cannot load it.
  const broken = path.join(dataDir, 'models', BROKEN);
  cpSync(path.join(dataDir, 'models', A), broken, { recursive: true });
  const cfg = JSON.parse(readFileSync(path.join(broken, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(broken, 'config.json'), JSON.stringify({ ...cfg, model_type: 'gpt2' }));
  const settings = { ...DEFAULT_SETTINGS, dataDir, contextLength: 2048 };
  running = await startServe(serveOptionsFor(path.join(dataDir, 'models', A), dataDir, { settings, idleUnloadMs: 0 }), () => {});
  assert.ok(running.models, 'library mode');
  running.models.on('loading', (e: { id: string }) => loads.push(e.id));
});

after(async () => {
  await stopServeHard(running);
  rmSync(root, { recursive: true, force: true });
});

describe('library mode over HTTP: load backoff and a sticky give-up', { timeout: 600_000 }, () => {
  it('a model that fails to load: the error, then 503 + Retry-After without another attempt', async () => {
    const first = await chat(BROKEN);
    assert.equal(first.body.error?.code, 'model_load_failed', JSON.stringify(first.body));
    assert.equal(loads.filter((id) => id === BROKEN).length, 1);
    for (let i = 0; i < 3; i++) {
      const again = await chat(BROKEN);
      assert.equal(again.status, 503, JSON.stringify(again.body));
      assert.equal(again.body.error?.code, 'engine_unavailable');
      assert.match(again.body.error!.message, /failed 1 time\(s\) in a row; the next attempt is allowed in \d+ s/);
      assert.ok(Number(again.retryAfter) >= 1, `Retry-After: ${again.retryAfter}`);
    }
    assert.equal(loads.filter((id) => id === BROKEN).length, 1, 'no load attempt during the backoff');
    // The working model still loads on request.
    const ok = await chat(A);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  it('after 4 consecutive engine crashes the give-up sticks until an explicit load', async () => {
    const engine = running!.engine as unknown as { pid?: number; state: string };
    assert.equal(engine.state, 'ready');
    // Four real crashes in a row: each restart is killed as soon as it is ready again.
    for (let crash = 1; crash <= 4; crash++) {
      const pid = engine.pid;
      assert.ok(pid, `engine pid before crash ${crash}`);
      process.kill(pid, 'SIGKILL');
      if (crash < 4) await until(() => engine.state === 'ready' && engine.pid !== pid, `the restart after crash ${crash}`);
    }
    await until(() => engine.state === 'failed', 'the supervisor to give up');
    await until(() => running!.models!.engineGaveUp !== null, 'the model manager to see the give-up');
    const loadsAtGiveUp = loads.length;

    for (let i = 0; i < 3; i++) {
      const r = await chat(A);
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, 'engine_gave_up');
      assert.match(r.body.error!.message, /crashed 4 times in a row.*Load a model explicitly/);
      assert.equal(r.retryAfter, null, 'no Retry-After: waiting does not bring the model back');
      await sleep(300);
    }
    // A request without `model`, and one for another model, do not reload anything either.
    assert.equal((await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).body.error?.code, 'engine_gave_up');
    assert.equal((await chat(BROKEN)).body.error?.code, 'engine_gave_up');
    assert.equal(loads.length, loadsAtGiveUp, 'nothing was reloaded behind the user\'s back');
    assert.equal(engine.state, 'failed');

    // The way back: an explicit load.
    const load = await post('/v1/models/load', { model: A });
    assert.equal(load.status, 200, JSON.stringify(load.body));
    assert.equal(load.body.loaded, true);
    assert.equal(loads.length, loadsAtGiveUp + 1);
    const ok = await chat(A);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(running!.models!.engineGaveUp, null);
  });
});
