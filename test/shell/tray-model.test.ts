// The tray's status and menu for every app state, as plain data (main/shell/tray-model.ts).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { trayIconFile, trayMenu, trayStatus, trayTooltip, type TrayInput, type TrayMenuItem } from '../../main/shell/tray-model.ts';
import { repoRoot } from '../renderer/build-once.ts';

const base: TrayInput = {
  server: 'running',
  degradation: { state: 'normal', reason: null },
  endpoint: 'http://127.0.0.1:8080/v1',
  model: 'Qwen3-0.6B-4bit',
  error: null,
  settingsIssueCount: 0,
  startAtLogin: false,
};

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
});
