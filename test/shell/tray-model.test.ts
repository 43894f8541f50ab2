// The tray's status and menu for every app state, as plain data (main/shell/tray-model.ts).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  clickModelItem,
  menuTemplate,
  trayActions,
  modelIdForItem,
  trayIconFile,
  trayInputFrom,
  trayMenu,
  trayStatus,
  trayTooltip,
  type TrayInput,
  type TrayMenuItem,
} from '../../main/shell/tray-model.ts';
import type { AppModel, AppState } from '../../preload/api.ts';
import { DASHBOARD_URL, MODELS_URL, SETTINGS_URL } from '../../main/shell/app-origin.ts';
import { repoRoot } from '../renderer/build-once.ts';

const base: TrayInput = {
  server: 'running',
  degradation: { state: 'normal', reason: null },
  endpoint: 'http://127.0.0.1:8080/v1',
  model: 'Qwen3-0.6B-4bit',
  error: null,
  settingsIssueCount: 0,
  startAtLogin: false,
  models: [],
  switchingTo: null,
  modelError: null,
};

const GB = 1e9;
function model(id: string, over: Partial<AppModel> = {}): AppModel {
  return { id, sizeBytes: 0.5 * GB, architecture: 'qwen3', fits: true, fitReason: null, needBytes: 2 * GB, current: false, ...over };
}
const library: AppModel[] = [
  model('mlx-community/Qwen3-0.6B-4bit', { current: true, sizeBytes: 335e6 }),
  model('my-llama', { architecture: 'llama', sizeBytes: 1.2 * GB }),
  model('mlx-community/Qwen3-235B-A22B-4bit', { sizeBytes: 132 * GB, fits: false, needBytes: 940 * GB, fitReason: 'Too large: needs about 940 GB …' }),
];

function submenu(menu: TrayMenuItem[]): TrayMenuItem[] {
  const m = menu.find((x) => x.type === 'submenu' && x.id === 'model');
  assert.ok(m && m.type === 'submenu', 'the Model submenu exists');
  return m.items;
}
function radios(items: TrayMenuItem[]) {
  return items.filter((x): x is Extract<TrayMenuItem, { type: 'radio' }> => x.type === 'radio');
}

function item(menu: TrayMenuItem[], id: string) {
  const it = menu.find((m) => m.type !== 'separator' && m.id === id);
  assert.ok(it && it.type !== 'separator', `menu has ${id}`);
  return it;
}

describe('tray model', () => {
  test('running: stop toggle, endpoint with copy, model, dashboard, settings, login item, quit', () => {
    const menu = trayMenu(base);
    assert.deepEqual(
      menu.map((m) => (m.type === 'separator' ? '---' : m.id)),
      ['status', '---', 'toggle-server', 'endpoint', 'copy-endpoint', 'model', '---', 'open-dashboard', 'open-settings', 'start-at-login', '---', 'quit'],
    );
    assert.equal(item(menu, 'status').label, 'Running');
    assert.equal(item(menu, 'toggle-server').label, 'Stop Server');
    assert.equal(item(menu, 'toggle-server').enabled, true);
    assert.equal(item(menu, 'endpoint').label, 'http://127.0.0.1:8080/v1');
    assert.equal(item(menu, 'copy-endpoint').enabled, true);
    assert.equal(item(menu, 'model').label, 'Model: Qwen3-0.6B-4bit');
    assert.equal(item(menu, 'model').type, 'submenu');
    assert.equal(item(menu, 'open-settings').label, 'Settings…');
    const login = item(menu, 'start-at-login');
    assert.equal(login.type, 'checkbox');
    assert.equal(login.type === 'checkbox' && login.checked, false);
    assert.equal(trayStatus(base), 'running');
  });

  test('degraded: status line and icon say so, with the reason in the tooltip', () => {
    const s: TrayInput = { ...base, degradation: { state: 'cache_disabled', reason: 'Cache errors: disk full' } };
    assert.equal(trayStatus(s), 'degraded');
    assert.equal(item(trayMenu(s), 'status').label, 'Running — Cache disabled');
    assert.match(trayTooltip(s), /Cache errors: disk full/);
    assert.equal(trayIconFile('degraded', 'linux'), 'tray-degraded.png');
    assert.equal(trayIconFile('degraded', 'darwin'), 'trayAlertTemplate.png');
    assert.equal(trayStatus({ ...base, degradation: { state: 'engine_failed', reason: 'gave up' } }), 'error');
  });

  test('stopped: start toggle, no copy', () => {
    const s: TrayInput = { ...base, server: 'stopped', endpoint: null, degradation: null };
    const menu = trayMenu(s);
    assert.equal(trayStatus(s), 'stopped');
    assert.equal(item(menu, 'status').label, 'Stopped');
    assert.equal(item(menu, 'toggle-server').label, 'Start Server');
    assert.equal(item(menu, 'toggle-server').enabled, true);
    assert.equal(item(menu, 'copy-endpoint').enabled, false);
    assert.equal(item(menu, 'endpoint').label, 'Endpoint: not running');
  });

  test('error and invalid settings: start is disabled until the settings are fixed', () => {
    const err: TrayInput = { ...base, server: 'error', endpoint: null, degradation: null, error: 'Port 8080 is already in use' };
    assert.equal(trayStatus(err), 'error');
    assert.equal(item(trayMenu(err), 'status').label, 'Error: Port 8080 is already in use');
    assert.equal(item(trayMenu(err), 'toggle-server').enabled, true, 'retry after an error');
    const invalid: TrayInput = { ...err, settingsIssueCount: 2 };
    assert.equal(item(trayMenu(invalid), 'status').label, 'Settings invalid (2 problems)');
    assert.equal(item(trayMenu(invalid), 'toggle-server').enabled, false);
    assert.equal(item(trayMenu(invalid), 'open-settings').enabled, true);
  });

  test('transitions disable the toggle; start at login is reflected', () => {
    assert.equal(item(trayMenu({ ...base, server: 'starting' }), 'toggle-server').enabled, false);
    assert.equal(item(trayMenu({ ...base, server: 'stopping' }), 'toggle-server').enabled, false);
    const login = item(trayMenu({ ...base, startAtLogin: true }), 'start-at-login');
    assert.equal(login.type === 'checkbox' && login.checked, true);
  });

  test('every icon the model can name exists in assets/', () => {
    for (const status of ['running', 'degraded', 'stopped', 'error'] as const) {
      for (const platform of ['darwin', 'linux', 'win32'] as const) {
        const file = trayIconFile(status, platform);
        assert.ok(existsSync(path.join(repoRoot, 'assets', file)), file);
        const at2x = file.replace(/\.png$/, '@2x.png');
        assert.ok(existsSync(path.join(repoRoot, 'assets', at2x)), at2x);
      }
    }
  });

  test('model submenu: the library as radio items (short label + size), the loaded one checked, too-large ones disabled with the reason, Manage Models…', () => {
    const input = { ...base, models: library };
    const menu = trayMenu(input);
    const top = menu.find((m) => m.type === 'submenu');
    assert.equal(top?.type === 'submenu' && top.label, 'Model: Qwen3-0.6B-4bit');
    const items = submenu(menu);
    const r = radios(items);
    assert.deepEqual(r.map((x) => x.id), ['model:0', 'model:1', 'model:2']);
    assert.deepEqual(r.map((x) => x.label), ['Qwen3-0.6B-4bit (335 MB)', 'my-llama (1.20 GB)', 'Qwen3-235B-A22B-4bit (132 GB) — too large: needs 940 GB']);
    assert.deepEqual(r.map((x) => x.checked), [true, false, false]);
    assert.deepEqual(r.map((x) => x.enabled), [true, true, false]);
    const last = items[items.length - 1];
    assert.ok(last.type === 'normal' && last.id === 'manage-models' && last.enabled && last.label === 'Manage Models…');
    assert.equal(items[items.length - 2].type, 'separator');
    // Ids map back through the list the menu was built from, and only through it.
    assert.equal(modelIdForItem('model:1', input.models), 'my-llama');
    for (const bad of ['model:3', 'model:-1', 'model:1.0', 'model:01x', 'my-llama', '../model:1', 'model:', 'model:9999999']) {
      assert.equal(modelIdForItem(bad, input.models), null, bad);
    }
    const clicked: string[] = [];
    assert.equal(clickModelItem('model:0', input.models, (id) => clicked.push(id)), 1);
    assert.equal(clickModelItem('model:7', input.models, (id) => clicked.push(id)), null);
    assert.deepEqual(clicked, ['mlx-community/Qwen3-0.6B-4bit']);
  });

  test('model ids are indexes even when a library id looks like a path; same short names show the full ids', () => {
    const odd = [model('../../etc/passwd'), model('a/Qwen3-4bit'), model('b/Qwen3-4bit'), model('x'.repeat(200))];
    const r = radios(submenu(trayMenu({ ...base, models: odd })));
    assert.deepEqual(r.map((x) => x.id), ['model:0', 'model:1', 'model:2', 'model:3']);
    assert.equal(r[0].label, 'passwd (500 MB)');
    assert.equal(r[1].label, 'a/Qwen3-4bit (500 MB)');
    assert.equal(r[2].label, 'b/Qwen3-4bit (500 MB)');
    assert.ok(r[3].label.length < 70, 'long ids are shortened');
    assert.equal(modelIdForItem(r[0].id, odd), '../../etc/passwd', 'the exact library id, never parsed from the label');
  });

  test('switching: "Switching to X…" in the submenu and the status line, every model item disabled', () => {
    const s: TrayInput = { ...base, models: library, switchingTo: 'my-llama' };
    const menu = trayMenu(s);
    const top = menu.find((m) => m.type === 'submenu');
    assert.equal(top?.type === 'submenu' && top.label, 'Model: switching to my-llama…');
    const items = submenu(menu);
    assert.ok(items[0].type === 'normal' && items[0].label === 'Switching to my-llama…' && !items[0].enabled);
    assert.ok(radios(items).every((x) => !x.enabled));
    assert.equal(item(menu, 'status').label, 'Running — switching to my-llama…');
    const manage = items.find((x) => x.type === 'normal' && x.id === 'manage-models');
    assert.equal(manage?.type === 'normal' && manage.enabled, true);
    // Also while the server starts or stops.
    assert.ok(radios(submenu(trayMenu({ ...base, models: library, server: 'starting' }))).every((x) => !x.enabled));
  });

  test('a failed switch: readable line in the status, the submenu and the tooltip; the loaded model stays checked', () => {
    const s: TrayInput = { ...base, models: library, modelError: 'Could not load "broken": tokenizer.json is not valid JSON' };
    const menu = trayMenu(s);
    assert.match(item(menu, 'status').label, /^Switch failed: Could not load "broken"/);
    assert.ok(item(menu, 'status').label.length <= 80);
    const items = submenu(menu);
    assert.ok(items[0].type === 'normal' && /Could not load/.test(items[0].label));
    assert.deepEqual(radios(items).map((x) => x.checked), [true, false, false]);
    assert.match(trayTooltip(s), /tokenizer\.json is not valid JSON/);
    assert.equal(trayStatus(s), 'running', 'the previous model still serves');
    // A degradation outranks the note.
    assert.equal(item(trayMenu({ ...s, degradation: { state: 'shedding', reason: 'busy' } }), 'status').label, 'Running — Shedding load');
  });

  test('empty library: "No models" and Manage Models…; stopped with invalid settings: models cannot be picked', () => {
    const items = submenu(trayMenu({ ...base, models: [] }));
    assert.deepEqual(items.map((x) => (x.type === 'separator' ? '---' : x.id)), ['models-empty', '---', 'manage-models']);
    assert.ok(items[0].type === 'normal' && /^No models/.test(items[0].label) && !items[0].enabled);
    const top = trayMenu({ ...base, model: null, models: [] }).find((m) => m.type === 'submenu');
    assert.equal(top?.type === 'submenu' && top.label, 'Model: none selected');
    const stopped: TrayInput = { ...base, server: 'stopped', endpoint: null, degradation: null, models: library.map((m, i) => ({ ...m, current: i === 1 })) };
    assert.deepEqual(radios(submenu(trayMenu(stopped))).map((x) => [x.checked, x.enabled]), [[false, true], [true, true], [false, false]]);
    assert.ok(radios(submenu(trayMenu({ ...stopped, server: 'error', settingsIssueCount: 1 }))).every((x) => !x.enabled));
  });

  test('remote models: listed after the library with a remote badge and their health, never radio items, never switched to', () => {
    const models = [
      library[0],
      model('gpu-box', { sizeBytes: 0, needBytes: null, architecture: null, remote: { health: 'up' } }),
      library[1],
      model('team-llm', { sizeBytes: 0, needBytes: null, architecture: null, remote: { health: 'down' } }),
      model('lab', { sizeBytes: 0, needBytes: null, architecture: null, remote: { health: 'unchecked' } }),
    ];
    const input = { ...base, models };
    const items = submenu(trayMenu(input));
    const r = radios(items);
    // The local models keep their index in the full list (what a click maps back through).
    assert.deepEqual(r.map((x) => x.id), ['model:0', 'model:2']);
    assert.deepEqual(r.map((x) => x.label), ['Qwen3-0.6B-4bit (335 MB)', 'my-llama (1.20 GB)']);
    const labels = items.filter((x) => x.type === 'normal').map((x) => (x.type === 'normal' ? [x.id, x.label, x.enabled] : null));
    assert.deepEqual(labels, [
      ['remote-models', 'Remote models (pick by id in the client)', false],
      ['remote-model', 'gpu-box — remote · up', false],
      ['remote-model', 'team-llm — remote · down', false],
      ['remote-model', 'lab — remote · not checked', false],
      ['manage-models', 'Manage Models…', true],
    ]);
    assert.equal(modelIdForItem('model:1', models), null, 'a remote is never a switch target');
    assert.equal(modelIdForItem('model:2', models), 'my-llama');
    // Only remote models: the library part says it is empty, the remotes still show.
    const onlyRemote = submenu(trayMenu({ ...base, models: [models[1]] }));
    assert.ok(onlyRemote.some((x) => x.type === 'normal' && x.id === 'models-empty'));
    assert.ok(onlyRemote.some((x) => x.type === 'normal' && x.label === 'gpu-box — remote · up'));
  });

  test('upstream_down: the tray says a remote model is down, the reason in the tooltip; degraded, not an error', () => {
    const input: TrayInput = { ...base, degradation: { state: 'upstream_down', reason: 'remote model "gpu-box" unavailable (upstream circuit open); local models keep serving' } };
    assert.equal(trayStatus(input), 'degraded');
    assert.equal(item(trayMenu(input), 'status').label, 'Running — Remote model down');
    assert.match(trayTooltip(input), /"gpu-box" unavailable/);
  });

  test('trayInputFrom: the app state + snapshot as the tray sees them', () => {
    const st: AppState = {
      server: 'running',
      endpoint: 'http://127.0.0.1:1/v1',
      apiKey: null,
      model: 'a',
      error: null,
      settingsIssues: [{ path: '/port', message: 'x' }],
      startAtLogin: true,
      models: library,
      switchingTo: 'b',
      modelError: 'e',
    };
    const input = trayInputFrom(st, null);
    assert.deepEqual(
      { ...input, models: input.models.length },
      { server: 'running', degradation: null, endpoint: st.endpoint, model: 'a', error: null, settingsIssueCount: 1, startAtLogin: true, models: 3, switchingTo: 'b', modelError: 'e' },
    );
    const snap = { model: { id: 'served', state: 'ready' }, degradation: { state: 'shedding', reason: 'r' } } as unknown as Parameters<typeof trayInputFrom>[1];
    assert.equal(trayInputFrom(st, snap).model, 'served');
    assert.deepEqual(trayInputFrom(st, snap).degradation, { state: 'shedding', reason: 'r' });
  });

  test('the Electron template keeps the menu, and clicks reach the right action or model', () => {
    const input: TrayInput = { ...base, models: library };
    const items = trayMenu(input);
    const clicks: string[] = [];
    const template = menuTemplate(items, (id, checked) => clicks.push(`${id}:${checked}`), (id) => clicks.push(`model ${String(clickModelItem(id, input.models, (m) => m))}`));
    assert.equal(template.length, items.length);
    items.forEach((it, i) => {
      const t = template[i]!;
      if (it.type === 'separator') return assert.deepEqual(t, { type: 'separator' });
      assert.equal(t.id, it.id);
      assert.equal(t.label, it.label);
      assert.equal(t.enabled, it.enabled);
    });
    const find = (list: typeof template, id: string) => list.find((t) => t.id === id)!;
    find(template, 'start-at-login').click!({ checked: true });
    find(template, 'toggle-server').click!({ checked: false });
    const sub = find(template, 'model').submenu!;
    assert.deepEqual(sub.filter((t) => t.type === 'radio').map((t) => t.checked), [true, false, false]);
    sub.filter((t) => t.type === 'radio')[1]!.click!({ checked: true });
    assert.deepEqual(clicks, ['start-at-login:true', 'toggle-server:false', 'model my-llama']);
  });

  test('tray actions: windows by page, the toggle, copy, login item and quit; labels do nothing', () => {
    const calls: string[] = [];
    const actions = trayActions({
      showWindow: (url) => calls.push(`show ${url}`),
      toggleServer: () => calls.push('toggle'),
      copyEndpoint: () => calls.push('copy'),
      setStartAtLogin: (on) => calls.push(`login ${on}`),
      quit: () => calls.push('quit'),
    });
    for (const id of ['status', 'endpoint', 'model', 'model-status', 'models-empty', 'remote-models', 'remote-model'] as const) actions[id]();
    assert.deepEqual(calls, []);
    actions['manage-models']();
    actions['open-dashboard']();
    actions['open-settings']();
    actions['toggle-server']();
    actions['copy-endpoint']();
    actions['start-at-login'](true);
    actions['start-at-login'](undefined);
    actions.quit();
    assert.deepEqual(calls, [`show ${MODELS_URL}`, `show ${DASHBOARD_URL}`, `show ${SETTINGS_URL}`, 'toggle', 'copy', 'login true', 'login false', 'quit']);
  });
});
