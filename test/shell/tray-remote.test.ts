// Remote models in the tray, end to end on the real core: AppController + startCoreFromSettings
// (a tiny random-weight model in the library, real HTTP on loopback) with two remote models in
// config.json — one whose upstream is the tests' fake OpenAI server, one pointing at a port nobody
// listens on. The tray menu is built exactly as main/shell/index.ts builds it
// (trayMenu(trayInputFrom(controller state, snapshot))).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppController } from '../../main/shell/controller.ts';
import { readableStartError, startCoreFromSettings } from '../../main/shell/core.ts';
import { SettingsService } from '../../main/settings/service.ts';
import { trayInputFrom, trayMenu, type TrayMenuItem } from '../../main/shell/tray-model.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeUpstream, type FakeUpstream } from '../server/remote/fake-upstream.ts';

const API_KEY = 'tray-remote-key-0123';
let root: string;
let dataDir: string;
let controller: AppController;
let fake: FakeUpstream;

function remoteLabels(): string[] {
  const menu = trayMenu(trayInputFrom(controller.state, controller.snapshot));
  const sub = menu.find((m) => m.type === 'submenu' && m.id === 'model') as Extract<TrayMenuItem, { type: 'submenu' }>;
  return sub.items.filter((x) => x.type === 'normal' && x.id === 'remote-model').map((x) => (x.type === 'normal' ? x.label : ''));
}
function statusLine(): string {
  const first = trayMenu(trayInputFrom(controller.state, controller.snapshot))[0];
  return first.type === 'normal' ? first.label : '';
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; models: ${JSON.stringify(controller.state.models)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-trayremote-'));
  dataDir = path.join(root, 'data');
  await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 }, path.join(dataDir, 'models', 'tiny-local'));
  fake = await startFakeUpstream();
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const deadPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  writeFileSync(
    path.join(dataDir, 'config.json'),
    JSON.stringify({
      model: path.join(dataDir, 'models', 'tiny-local'),
      port: 0,
      apiKey: API_KEY,
      contextLength: 1024,
      idleUnloadMinutes: 0,
      remotes: [
        { id: 'gpu-box', baseURL: fake.baseURL },
        { id: 'gone-box', baseURL: `http://127.0.0.1:${deadPort}/v1` },
      ],
    }),
  );
  controller = new AppController({
    settings: new SettingsService({ dataDir, write: (v: object) => writeFileSync(path.join(dataDir, 'config.json'), JSON.stringify(v)) }),
    startCore: (s) => startCoreFromSettings(s, { log: () => {} }),
    describeError: (e, s) => readableStartError(e, s),
    pollMs: 200,
  });
});

after(async () => {
  await Promise.race([controller?.dispose(), new Promise((r) => setTimeout(r, 30_000))]);
  await fake?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('remote models in the tray on the real core', { timeout: 300_000 }, () => {
  it('stopped: the settings\' remote models are listed, health not checked', async () => {
    const models = await controller.refreshModels();
    assert.deepEqual(models.map((m) => [m.id, m.remote?.health ?? 'local']), [['tiny-local', 'local'], ['gpu-box', 'unchecked'], ['gone-box', 'unchecked']]);
    assert.deepEqual(remoteLabels(), ['gpu-box — remote · not checked', 'gone-box — remote · not checked']);
  });

  it('running: health from the server; an upstream that keeps failing shows down, and the status line says a remote model is down', async () => {
    const st = await controller.start();
    assert.equal(st.server, 'running', st.error ?? '');
    await controller.refreshModels();
    assert.deepEqual(remoteLabels(), ['gpu-box — remote · up', 'gone-box — remote · up']);
    assert.equal(controller.state.models.find((m) => m.current)?.id, 'tiny-local', 'a remote is never the checked model');
    // Three failed requests (connection refused) open gone-box's circuit breaker.
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${controller.state.endpoint}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gone-box', messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(r.status, 502);
    }
    await controller.refreshModels();
    assert.deepEqual(remoteLabels(), ['gpu-box — remote · up', 'gone-box — remote · down']);
    await until('the snapshot to show upstream_down', () => controller.snapshot?.degradation.state === 'upstream_down');
    assert.equal(statusLine(), 'Running — Remote model down');
  });
});
