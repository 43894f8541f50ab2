// MLX Bar desktop shell entry: with session.ts, window.ts and tray.ts (and preload/), the only code
// that imports `electron`. Wiring only; every decision lives in a pure module next to these files
// (window options, URL policy, IPC guard, tray model, controller, app models, core API) or in
// main/settings (the settings service), each unit-tested in plain Node.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { app, clipboard, ipcMain, protocol, session, shell, utilityProcess } from 'electron';
import ElectronStore from 'electron-store';
import { sanitizeMessage } from '../common/sanitize.ts';
import { SETTINGS_SCHEMA, type StoredSettings } from '../settings/schema.ts';
import { SettingsService } from '../settings/service.ts';
import { utilityProcessSpawner } from '../engine/process/utility-spawner.ts';
import { PUSH_CHANNELS } from '../../preload/api.ts';
import { APP_SCHEME, DASHBOARD_URL, SETTINGS_URL } from './app-origin.ts';
import { AppController } from './controller.ts';
import { readableStartError, startCoreFromSettings } from './core.ts';
import { GuardedIpc } from './ipc-guard.ts';
import { registerIpcHandlers } from './ipc-handlers.ts';
import { guardWebContents, secureSession } from './session.ts';
import { createTray } from './tray.ts';
import { trayActions } from './tray-model.ts';
import { DashboardWindow } from './window.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
// Bundled layout: <app>/dist/main/shell/index.js → the app root is three levels up.
const appRoot = path.resolve(here, '..', '..', '..');
const rendererDir = path.join(appRoot, 'dist', 'renderer');
const preloadPath = path.join(appRoot, 'dist', 'preload', 'index.cjs');
const assetsDir = app.isPackaged ? path.join(process.resourcesPath, 'assets') : path.join(appRoot, 'assets');

const log = (line: string) => process.stderr.write(`[mlx-bar] ${sanitizeMessage(line)}\n`);

// Must run before `ready`: the app scheme behaves like https (secure context, fetch, CSP 'self').
protocol.registerSchemesAsPrivileged([
  { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, codeCache: true } },
]);

// Same override as headless mode (MLXBAR_DATA_DIR): one folder for settings, caches and logs. Set
// before the single-instance lock, which is keyed by it (also how the e2e test isolates runs).
if (process.env.MLXBAR_DATA_DIR) app.setPath('userData', path.resolve(process.env.MLXBAR_DATA_DIR));

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  void main();
}

async function main(): Promise<void> {
  // Menu-bar-only on macOS (LSUIElement is also set in Info.plist by electron-builder).
  app.dock?.hide();
  await app.whenReady();

  const controller = createController(app.getPath('userData'));
  const page = secureSession(session.defaultSession, rendererDir, () => controller.state.endpoint);
  guardWebContents();
  const window = new DashboardWindow({ preloadPath, isPackaged: app.isPackaged, iconPath: path.join(assetsDir, 'icon.png') });

  // ---- IPC (validated sender + arguments)
  const ipc = new GuardedIpc(ipcMain, { onRefused: (c, r) => log(`refused IPC ${c}: ${r}`) });
  registerIpcHandlers(ipc, { controller, clipboard, openExternal: (url) => shell.openExternal(url) });

  // ---- tray
  const renderTray = createTray(
    controller,
    assetsDir,
    trayActions({
      showWindow: (url) => window.show(url),
      toggleServer: () => void controller.toggle(),
      copyEndpoint: () => {
        if (controller.state.endpoint) clipboard.writeText(controller.state.endpoint);
      },
      setStartAtLogin: (on) => void controller.setStartAtLogin(on),
      quit: () => {
        window.quitting = true;
        app.quit();
      },
    }),
  );
  controller.on('state', (st) => {
    renderTray();
    // A page loaded before the server ran (or on another port) has a CSP without this endpoint.
    const reloaded = !!st.endpoint && st.endpoint !== page.pageEndpoint() && window.reload();
    if (!reloaded) window.push(PUSH_CHANNELS.appState, st);
  });
  controller.on('metrics', (snap) => {
    renderTray();
    // The once-a-second metrics only while the window is visible.
    window.push(PUSH_CHANNELS.metrics, snap, true);
  });
  renderTray();
  // The tray's model list before the server is up (read from the models folder).
  void controller.refreshModels();

  app.on('second-instance', () => window.show(DASHBOARD_URL));
  app.on('activate', () => window.show(DASHBOARD_URL));
  // Stay in the tray when the window closes.
  app.on('window-all-closed', () => {});
  let disposed = false;
  app.on('before-quit', (e) => {
    window.quitting = true;
    if (disposed) return;
    e.preventDefault();
    disposed = true;
    void controller.dispose().finally(() => app.quit());
  });

  // Invalid settings: the app opens on the settings page and explains; the server stays stopped.
  if (controller.state.settingsIssues.length > 0) window.show(SETTINGS_URL);
  else void controller.start();
}

/** The settings (written through electron-store: the same config.json the CLI reads) and the app's controller. */
function createController(dataDir: string): AppController {
  const settings = new SettingsService({
    dataDir,
    // `model` is checked as a model folder or a library id before a save (#11 item 4).
    // (loaded on first use: it brings the library, which the menu bar does not need at start)
    checkModel: async (value) => (await import('../core/model-setting.ts')).modelSettingCheck(dataDir)(value),
    write: (values: StoredSettings) => {
      const store = new ElectronStore<StoredSettings>({ cwd: dataDir, name: 'config', schema: SETTINGS_SCHEMA as never, clearInvalidConfig: false, configFileMode: 0o600 }); // it can hold the API key
      store.store = values;
    },
  });
  // Electron's typings differ from the spawner's structural type only in overload shapes (on()).
  const engineSpawn = utilityProcessSpawner(utilityProcess as unknown as Parameters<typeof utilityProcessSpawner>[0]);
  return new AppController({
    settings,
    startCore: (s) => startCoreFromSettings(s, { engineSpawn, log }),
    describeError: (err, s) => readableStartError(err, s),
    // macOS/Windows keep login items in the OS; Electron has no login-item API on Linux, so there
    // the stored setting is what the menu shows (autostart entries are left to the distribution).
    startAtLogin:
      process.platform === 'linux'
        ? { get: () => settings.read().settings?.startAtLogin ?? false, set: () => {} }
        : { get: () => app.getLoginItemSettings().openAtLogin, set: (on) => app.setLoginItemSettings({ openAtLogin: on }) },
  });
}
