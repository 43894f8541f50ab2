// Switching models from the tray, end to end on the real core: AppController + startCoreFromSettings
// (startServe → supervised engine process on tiny random-weight models, real Qwen3 tokenizer, real
// HTTP on loopback) over a data dir whose models/ folder holds the library. Every switch is driven
// the way a tray click is: the menu is built with trayMenu(trayInputFrom(controller state)) and the
// clicked radio item's id goes through clickModelItem (index → library id → switchModel), exactly
// what main/shell/index.ts wires. Checked from the outside: GET /v1/metrics, a chat completion
// through the official openai client, config.json on disk, the tray model, the server's own log.
import assert from 'node:assert/strict';
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { AppController } from '../../main/shell/controller.ts';
import { readableStartError, startCoreFromSettings } from '../../main/shell/core.ts';
import { SettingsService } from '../../main/settings/service.ts';
import { clickModelItem, trayInputFrom, trayMenu, type TrayMenuItem } from '../../main/shell/tray-model.ts';
import type { AppState } from '../../preload/api.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';

const API_KEY = 'tray-test-key-0123';
const A = 'tiny-a';
const B = 'tiny-b';
const BROKEN = 'tiny-broken';
const HUGE = 'tiny-huge';
const MISMATCH = 'tiny-mismatch';

let root: string;
let dataDir: string;
let controller: AppController;
const serverLog: string[] = [];
const requests: string[] = [];
let coreStarts = 0;

const modelDir = (id: string) => path.join(dataDir, 'models', id);
const configModel = () => (JSON.parse(readFileSync(path.join(dataDir, 'config.json'), 'utf8')) as { model: string }).model;
const loadsOf = (id: string) => serverLog.filter((l) => l === `model: loaded ${id}` || l.startsWith(`model: loaded ${id} in `)).length;

/** The tray's menu for the controller's current state, as index.ts builds it. */
function trayNow() {
  const input = trayInputFrom(controller.state, controller.snapshot);
  const menu = trayMenu(input);
  const sub = menu.find((m) => m.type === 'submenu' && m.id === 'model');
  assert.ok(sub && sub.type === 'submenu', 'the tray has the Model submenu');
  const radios = sub.items.filter((m): m is Extract<TrayMenuItem, { type: 'radio' }> => m.type === 'radio');
  const status = menu[0].type === 'normal' ? menu[0].label : '';
  return { input, menu, sub, radios, status };
}

/** The ids of the checked radio items (exactly one when a model is loaded/selected). */
function checkedIds(): string[] {
  return trayNow().radios.filter((r) => r.checked).map((r) => r.label.split(' ')[0]);
}

/** A click on the radio item labelled with `id`: the same path as the Electron click handler. */
function click(id: string): Promise<AppState> | null {
  const { input, radios } = trayNow();
  const item = radios.find((r) => r.label.startsWith(`${id} (`));
  assert.ok(item, `the tray lists ${id}`);
  return clickModelItem(item.id, input.models, (x) => controller.switchModel(x));
}

async function metricsModel(): Promise<string | null> {
  const res = await fetch(`${controller.state.endpoint}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { model: { id: string | null } }).model.id;
}

async function chatModel(model?: string): Promise<string> {
  const client = new OpenAI({ baseURL: controller.state.endpoint!, apiKey: API_KEY, maxRetries: 0, timeout: 120_000 });
  const r = await client.chat.completions.create({ ...(model ? { model } : {}), messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } as never);
  return (r as { model: string }).model;
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; state: ${JSON.stringify(controller.state)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A model folder next to `from` sharing its weights (hard links) with some files replaced. */
function variant(from: string, to: string, edit: (dir: string) => void): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) linkSync(path.join(from, f), path.join(to, f));
  edit(to);
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-traymodels-'));
  dataDir = path.join(root, 'data');
  const tiny = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 };
  await buildTinyModel({ family: 'qwen3', ...tiny }, modelDir(A));
  await buildTinyModel({ family: 'llama', ...tiny }, modelDir(B));
  // In the library (all files present) but not loadable: the tokenizer is not JSON.
  variant(modelDir(A), modelDir(BROKEN), (d) => {
    rmSync(path.join(d, 'tokenizer.json'));
    writeFileSync(path.join(d, 'tokenizer.json'), '{ this is not json');
  });
  // Loadable files, but the fit check says the KV cache alone needs ~0.5 TB.
  variant(modelDir(A), modelDir(HUGE), (d) => {
    const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
    rmSync(path.join(d, 'config.json'));
    writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 1_000_000 }));
  });
  // Complete files, but config.json names a third layer the weights do not have: the library lists
  // it, the tokenizer loads, and the engine fails (missing tensor) after the old model was unloaded.
  variant(modelDir(A), modelDir(MISMATCH), (d) => {
    const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
    rmSync(path.join(d, 'config.json'));
    writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
  });
  const write = (v: object) => writeFileSync(path.join(dataDir, 'config.json'), JSON.stringify(v));
  write({ model: modelDir(A), port: 0, apiKey: API_KEY, contextLength: 2048, idleUnloadMinutes: 0 });
  const countingFetch: typeof fetch = (input, init) => {
    const url = new URL(String(input));
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    return fetch(input, init);
  };
  controller = new AppController({
    settings: new SettingsService({ dataDir, write }),
    startCore: (s) => {
      coreStarts++;
      return startCoreFromSettings(s, { log: (l) => serverLog.push(l) });
    },
    describeError: (e, s) => readableStartError(e, s),
    pollMs: 200,
    fetchImpl: countingFetch,
  });
});

after(async () => {
  await Promise.race([controller?.dispose(), new Promise((r) => setTimeout(r, 30_000))]);
  rmSync(root, { recursive: true, force: true });
});

describe('tray model switcher on the real core', { timeout: 600_000 }, () => {
  it('stopped: lists the models folder (settings model checked, too-large disabled with the reason)', async () => {
    const models = await controller.refreshModels();
    assert.deepEqual(models.map((m) => m.id), [A, B, BROKEN, HUGE, MISMATCH]);
    const { radios, sub } = trayNow();
    assert.equal(sub.label, `Model: ${A}`);
    assert.deepEqual(checkedIds(), [A]);
    assert.deepEqual(radios.map((r) => r.enabled), [true, true, true, false, true]);
    assert.match(radios[3].label, /^tiny-huge \(.+\) — too large: needs \d/);
    assert.match(models[3].fitReason ?? '', /^Too large/);
    assert.ok(!JSON.stringify(controller.state.models).includes(root), 'no paths in the model list');
    assert.equal(controller.state.model, A, 'the state names the model by its library id');
  });

  it('running: the list comes from the server (/v1/models with the key), the loaded model checked', async () => {
    const st = await controller.start();
    assert.equal(st.server, 'running', st.error ?? '');
    await until('the server list', () => requests.includes('GET /v1/models') && controller.state.models.some((m) => m.current));
    const { radios } = trayNow();
    assert.deepEqual(radios.map((r) => [r.label.split(' ')[0], r.checked, r.enabled]), [
      [A, true, true],
      [B, false, true],
      [BROKEN, false, true],
      [HUGE, false, false],
      [MISMATCH, false, true],
    ]);
    assert.equal(await metricsModel(), A);
  });

  it('ten rapid clicks on B: one load, no restart; metrics, the openai client, config.json and the tray all say B', async () => {
    const endpoint = controller.state.endpoint;
    const startsBefore = coreStarts;
    const loadsBefore = loadsOf(B);
    const postsBefore = requests.filter((r) => r === 'POST /v1/models/load').length;
    const duringSwitch: ReturnType<typeof trayNow>[] = [];
    const onState = (s: AppState) => {
      if (s.switchingTo) duringSwitch.push(trayNow());
    };
    controller.on('state', onState);
    try {
      // One menu, clicked ten times before it is rebuilt (what a fast user on a stale menu does).
      const { input, radios } = trayNow();
      const itemB = radios.find((r) => r.label.startsWith(`${B} (`))!;
      const clicks = Array.from({ length: 10 }, () => clickModelItem(itemB.id, input.models, (x) => controller.switchModel(x)));
      assert.ok(clicks.every((p) => p === clicks[0]), 'every click while switching joins the same switch');
      const st = await clicks[0]!;
      assert.equal(st.modelError, null);
    } finally {
      controller.off('state', onState);
    }
    assert.equal(loadsOf(B) - loadsBefore, 1, 'ten clicks caused one load');
    assert.equal(requests.filter((r) => r === 'POST /v1/models/load').length - postsBefore, 1);
    assert.equal(coreStarts, startsBefore, 'the server was not restarted');
    assert.equal(controller.state.endpoint, endpoint);
    // While it was loading the tray said so and nothing could be clicked.
    assert.ok(duringSwitch.length > 0);
    assert.equal(duringSwitch[0].sub.label, `Model: switching to ${B}…`);
    assert.ok(duringSwitch.every((t) => t.radios.every((r) => !r.enabled)));

    assert.equal(await metricsModel(), B);
    assert.equal(await chatModel(), B, 'a request without `model` gets the new model');
    assert.equal(configModel(), modelDir(B), 'config.json records the choice');
    const { radios, sub, status } = trayNow();
    assert.equal(sub.label, `Model: ${B}`);
    assert.deepEqual(checkedIds(), [B]);
    assert.deepEqual(radios.map((r) => r.enabled), [true, true, true, false, true]);
    assert.equal(status, 'Running');
    assert.equal(controller.state.switchingTo, null);
  });

  it('a model that cannot load (broken tokenizer; too large): the old model keeps serving, a readable error without paths', async () => {
    const st = await click(BROKEN)!;
    assert.match(st.modelError ?? '', /Could not load "tiny-broken"/);
    assert.doesNotMatch(st.modelError ?? '', /\/tmp\/|mlxbar-traymodels|\(.*:\d+:\d+\)/);
    assert.equal(await metricsModel(), B);
    assert.equal(await chatModel(B), B);
    assert.equal(configModel(), modelDir(B), 'the failed choice is not saved');
    const tray = trayNow();
    assert.match(tray.status, /^Switch failed: Could not load "tiny-broken"/);
    assert.deepEqual(checkedIds(), [B]);

    // The too-large model is disabled in the tray; asked for anyway, the server's fit check refuses.
    assert.equal(tray.radios[3].enabled, false);
    const st2 = await controller.switchModel(HUGE);
    assert.match(st2.modelError ?? '', /was not loaded\. Too large: needs about/);
    assert.doesNotMatch(st2.modelError ?? '', /\/tmp\//);
    assert.equal(await metricsModel(), B);
    assert.deepEqual(checkedIds(), [B]);

    // A later successful switch clears the error.
    const st3 = await click(A)!;
    assert.equal(st3.modelError, null);
    assert.equal(await metricsModel(), A);
    assert.equal(configModel(), modelDir(A));
  });

  it('an engine failure (weights missing a layer) unloads the old model on the server: the controller loads it back', async () => {
    assert.equal(await metricsModel(), A);
    const loadsBefore = loadsOf(A);
    const st = await click(MISMATCH)!;
    assert.match(st.modelError ?? '', /tiny-mismatch.*missing tensor/);
    assert.doesNotMatch(st.modelError ?? '', /\/tmp\/|mlxbar-traymodels|\(.*:\d+:\d+\)/);
    assert.equal(loadsOf(A) - loadsBefore, 1, 'the previous model was loaded again');
    assert.equal(await metricsModel(), A);
    assert.equal(await chatModel(), A);
    assert.equal(configModel(), modelDir(A));
    assert.deepEqual(checkedIds(), [A]);
    assert.match(trayNow().status, /^Switch failed: .*tiny-mismatch/);
  });

  it("a client's request switches the model: the tray follows the metrics snapshot, without polling /v1/models every second", async () => {
    assert.equal(await chatModel(B), B);
    await until('the tray to show B', () => controller.state.models.find((m) => m.current)?.id === B);
    assert.deepEqual(checkedIds(), [B]);
    const lists = () => requests.filter((r) => r === 'GET /v1/models').length;
    const metrics = () => requests.filter((r) => r === 'GET /v1/metrics').length;
    const [l0, m0] = [lists(), metrics()];
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(metrics() - m0 >= 3, 'metrics are polled');
    assert.equal(lists() - l0, 0, 'the model list is not');
  });

  it('stopped: picking a model saves it and starts the server on it; a model that fails to start is not kept as the choice', async () => {
    await controller.stop();
    assert.equal(controller.state.server, 'stopped');
    await until('the disk list', () => controller.state.models.length === 5 && controller.state.models.find((m) => m.current)?.id === A);

    const failed = await click(BROKEN)!;
    assert.equal(failed.server, 'error');
    assert.match(failed.modelError ?? '', /tiny-broken/);
    assert.doesNotMatch(`${failed.error} ${failed.modelError}`, /\/tmp\//);
    assert.equal(configModel(), modelDir(A), 'the previous choice is restored');

    const st = await click(B)!;
    assert.equal(st.server, 'running', st.error ?? '');
    assert.equal(st.modelError, null);
    assert.equal(configModel(), modelDir(B));
    assert.equal(await metricsModel(), B);
    assert.equal(await chatModel(), B);
    await until('the tray to show B', () => controller.state.models.find((m) => m.current)?.id === B);
  });
});
