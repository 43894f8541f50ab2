// Settings in the desktop app: an invalid file is shown (not silently repaired), edits are
// validated against THE schema before saving, a valid save goes through the real electron-store
// (its `electron` import resolved to a tiny stub) and the headless loader reads the same file.
// The controller refuses to start the server while the settings are invalid.
import './electron-stub/register.mjs';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { loadSettings } from '../../main/settings/load.ts';
import { openSettingsStore } from '../../main/settings/store.ts';
import { SETTINGS_SCHEMA, type StoredSettings } from '../../main/settings/schema.ts';
import { AppController } from '../../main/shell/controller.ts';
import { SettingsService } from '../../main/settings/service.ts';
import { modelSettingCheck } from '../../main/core/model-setting.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'mlxbar-shell-settings-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function electronStoreWriter(dataDir: string) {
  process.env.MLXBAR_STUB_USERDATA = dataDir;
  const { default: ElectronStore } = await import('electron-store');
  return (values: StoredSettings) => {
    const store = new ElectronStore<StoredSettings>({ cwd: dataDir, name: 'config', schema: SETTINGS_SCHEMA as never, clearInvalidConfig: false });
    store.store = values;
  };
}

describe('desktop settings service', () => {
  test('missing file: defaults, valid', async () => {
    const dir = tmp();
    const svc = new SettingsService({ dataDir: dir, write: await electronStoreWriter(dir) });
    const r = svc.read();
    assert.equal(r.file, 'missing');
    assert.deepEqual(r.issues, []);
    assert.equal(r.settings?.port, 8080);
    assert.equal(r.settings?.dataDir, dir);
  });

  test('invalid file: shown field by field, left on disk untouched, saved only when valid', async () => {
    const dir = tmp();
    const file = path.join(dir, 'config.json');
    const bad = JSON.stringify({ port: 70000, logLevel: 'loud', responseCache: { enabled: 'yes' }, host: '127.0.0.1' });
    writeFileSync(file, bad);
    const svc = new SettingsService({ dataDir: dir, write: await electronStoreWriter(dir) });

    const r = svc.read();
    assert.equal(r.file, 'invalid');
    assert.equal(r.settings, null, 'no server with invalid settings');
    assert.deepEqual(r.issues.map((i) => i.path).sort(), ['/logLevel', '/port', '/responseCache/enabled']);
    assert.match(r.issues.find((i) => i.path === '/port')!.message, /65535/);
    assert.equal(r.values.port, 70000, 'the form shows what the file says');
    assert.equal(r.values.maxQueue, 16, 'missing settings show their defaults');
    assert.equal(readFileSync(file, 'utf8'), bad, 'reading never rewrites the file');

    // Still invalid edit: refused, nothing written.
    const stillBad = svc.save({ ...r.values, logLevel: 'info', responseCache: { enabled: false, maxEntries: 256, maxBytes: 256 * 1024 * 1024 } });
    assert.equal(stillBad.ok, false);
    assert.deepEqual(stillBad.issues.map((i) => i.path), ['/port']);
    assert.equal(readFileSync(file, 'utf8'), bad);

    // Fixed: saved through electron-store, the bad file kept aside for the user.
    const ok = svc.save({ ...r.values, port: 9090, logLevel: 'debug', responseCache: { enabled: true, maxEntries: 100, maxBytes: 256 * 1024 * 1024 } });
    assert.deepEqual(ok, { ok: true, issues: [] });
    const after = svc.read();
    assert.equal(after.file, 'ok');
    assert.equal(after.settings?.port, 9090);
    assert.ok(readdirSync(dir).some((f) => f.startsWith('config.json.invalid-')), 'old file kept aside');

    // The headless side reads the same file with the same schema.
    const headless = loadSettings({ dataDir: dir, env: {}, flags: {}, repair: false });
    assert.equal(headless.file.status, 'ok');
    assert.equal(headless.settings.port, 9090);
    assert.equal(headless.settings.logLevel, 'debug');
    assert.equal(headless.settings.responseCache.enabled, true);
    assert.equal(openSettingsStore(dir).get('port'), 9090, 'conf opens the electron-store file');
  });

  test('corrupt JSON: one clear issue, defaults in the form', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'config.json'), '{"port": 80');
    const svc = new SettingsService({ dataDir: dir, write: await electronStoreWriter(dir) });
    const r = svc.read();
    assert.equal(r.file, 'corrupt');
    assert.equal(r.settings, null);
    assert.equal(r.issues.length, 1);
    assert.match(r.issues[0].message, /not valid JSON/);
    assert.doesNotMatch(r.issues[0].message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no path in the message');
    assert.equal(svc.save(r.values).ok, true, 'saving the defaults repairs it');
  });

  test('controller: invalid settings keep the server stopped until they are fixed', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ port: -1 }));
    const svc = new SettingsService({ dataDir: dir, write: await electronStoreWriter(dir) });
    const started: number[] = [];
    const controller = new AppController({
      settings: svc,
      startCore: async (s) => {
        started.push(s.port);
        return { url: `http://127.0.0.1:${s.port}`, model: 'm', stop: async () => {} };
      },
      fetchImpl: (async () => new Response('{}', { status: 503 })) as typeof fetch,
    });
    const states: string[] = [];
    controller.on('state', (s) => states.push(s.server));
    assert.deepEqual(controller.state.settingsIssues.map((i) => i.path), ['/port']);
    const st = await controller.start();
    assert.equal(st.server, 'error');
    assert.match(st.error ?? '', /settings are invalid/);
    assert.deepEqual(started, [], 'the core was never started');

    const saved = await controller.saveSettings({ ...controller.getSettings().values, port: 0 });
    assert.equal(saved.ok, true);
    assert.equal(controller.state.server, 'stopped');
    assert.deepEqual(controller.state.settingsIssues, []);
    const st2 = await controller.start();
    assert.equal(st2.server, 'running');
    assert.equal(st2.endpoint, 'http://127.0.0.1:0/v1');
    assert.deepEqual(started, [0]);
    await controller.dispose();
    assert.equal(controller.state.server, 'stopped');
    assert.deepEqual(states, ['error', 'stopped', 'starting', 'running', 'stopping', 'stopped']);
  });

  test("the app's settings page: a model that is not a model folder or a library id is refused and not saved (#11 item 4)", { timeout: 120_000 }, async () => {
    const dir = tmp();
    const modelDir = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    // The same hook the shell passes (main/shell/index.ts): the core's check over this data folder.
    const svc = new SettingsService({ dataDir: dir, write: await electronStoreWriter(dir), checkModel: modelSettingCheck(dir) });
    const controller = new AppController({
      settings: svc,
      startCore: async () => assert.fail('no start while saving'),
      fetchImpl: (async () => new Response('{}', { status: 503 })) as typeof fetch,
    });
    const file = path.join(dir, 'config.json');
    for (const bad of ['/etc', '../../etc/passwd', 'file:///etc', dir]) {
      const r = await controller.saveSettings({ ...controller.getSettings().values, model: bad });
      assert.equal(r.ok, false, bad);
      assert.deepEqual(r.issues.map((i) => i.path), ['/model'], bad);
      assert.equal(existsSync(file), false, `${bad}: nothing written`);
    }
    const ok = await controller.saveSettings({ ...controller.getSettings().values, model: modelDir });
    assert.equal(ok.ok, true, JSON.stringify(ok.issues));
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { model: string }).model, modelDir);
    await controller.dispose();
  });
});
