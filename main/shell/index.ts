// MLX Bar desktop shell: the ONLY main-process code that imports `electron`. Wiring only; every
// decision lives in a pure module next to this file (window options, URL policy, IPC guard, tray
// model, settings service, controller), each unit-tested in plain Node.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { app, BrowserWindow, clipboard, Menu, nativeImage, protocol, session, shell, Tray, ipcMain, utilityProcess } from 'electron';
import ElectronStore from 'electron-store';
import { sanitizeMessage } from '../common/sanitize.ts';
import { SETTINGS_SCHEMA, type StoredSettings } from '../settings/schema.ts';
import { PUSH_CHANNELS } from '../../preload/api.ts';
import { APP_SCHEME, DASHBOARD_URL, MODELS_URL, SETTINGS_URL } from './app-origin.ts';
import { AppController } from './controller.ts';
import { readableStartError, startCoreFromSettings } from './core.ts';
import { GuardedIpc } from './ipc-guard.ts';
import { registerIpcHandlers } from './ipc-handlers.ts';
import { SettingsService } from '../settings/service.ts';
import { clickModelItem, trayIconFile, trayInputFrom, trayMenu, trayStatus, trayTooltip, type TrayInput, type TrayItemId, type TrayMenuItem } from './tray-model.ts';
import { appCsp, isAllowedExternal, isAllowedNavigation, mimeFor, resolveAppAsset } from './url-policy.ts';
import { utilityProcessSpawner } from '../engine/process/utility-spawner.ts';
import { dashboardWindowOptions } from './window-options.ts';
import { isPermissionAllowed } from './permission-policy.ts';

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

  const dataDir = app.getPath('userData');
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
  const controller = new AppController({
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

  // ---- every session: deny permissions, serve the app scheme
  const ses = session.defaultSession;
  // Denied, except loopback access for the app origin (the Models page calls the local server).
  ses.setPermissionRequestHandler((_wc, permission, callback, details) => callback(isPermissionAllowed(permission, details.requestingUrl)));
  ses.setPermissionCheckHandler((_wc, permission, requestingOrigin) => isPermissionAllowed(permission, requestingOrigin));
  ses.setDevicePermissionHandler(() => false);
  // The page's CSP admits exactly the running server (connect-src); it is fixed when the page
  // loads, so the window reloads when the endpoint changes (see the 'state' listener below).
  let pageEndpoint: string | null = null;
  ses.protocol.handle(APP_SCHEME, async (request) => {
    const file = resolveAppAsset(rendererDir, request.url);
    if (!file) return new Response('Not found', { status: 404 });
    try {
      const body = await readFile(file);
      const endpoint = controller.state.endpoint;
      if (file.endsWith('.html')) pageEndpoint = endpoint;
      return new Response(body, { headers: { 'content-type': mimeFor(file), 'content-security-policy': appCsp(endpoint), 'x-content-type-options': 'nosniff' } });
    } catch {
      return new Response('Not found', { status: 404 });
    }
  });

  app.on('web-contents-created', (_e, contents) => {
    contents.on('will-navigate', (event, url) => {
      if (!isAllowedNavigation(url)) event.preventDefault();
    });
    contents.on('will-redirect', (event, url) => {
      if (!isAllowedNavigation(url)) event.preventDefault();
    });
    contents.on('will-attach-webview', (event) => event.preventDefault());
    contents.setWindowOpenHandler(({ url }) => {
      if (isAllowedExternal(url)) void shell.openExternal(url);
      return { action: 'deny' };
    });
  });

  // ---- window
  let win: BrowserWindow | null = null;
  let quitting = false;
  const showWindow = (url: string) => {
    if (!win) {
      win = new BrowserWindow(dashboardWindowOptions({ preloadPath, isPackaged: app.isPackaged, platform: process.platform, iconPath: path.join(assetsDir, 'icon.png') }));
      win.once('ready-to-show', () => win?.show());
      // Closing the window keeps the app (and the server) running in the tray.
      win.on('close', (e) => {
        if (!quitting) {
          e.preventDefault();
          win?.hide();
        }
      });
      win.on('closed', () => {
        win = null;
      });
      void win.loadURL(url);
      return;
    }
    if (win.webContents.getURL() !== url) void win.loadURL(url);
    win.show();
    win.focus();
  };
  // App state changes are rare and always pushed (a hidden window must not wake up stale); the
  // once-a-second metrics only while the window is visible.
  const push = (channel: string, value: unknown, onlyIfVisible = false) => {
    if (win && !win.isDestroyed() && (!onlyIfVisible || win.isVisible())) win.webContents.send(channel, value);
  };

  // ---- IPC (validated sender + arguments)
  const ipc = new GuardedIpc(ipcMain, { onRefused: (c, r) => log(`refused IPC ${c}: ${r}`) });
  registerIpcHandlers(ipc, { controller, clipboard, openExternal: (url) => shell.openExternal(url) });

  // ---- tray
  const tray = new Tray(nativeImage.createFromPath(path.join(assetsDir, trayIconFile('stopped', process.platform))));
  const trayInput = (): TrayInput => trayInputFrom(controller.state, controller.snapshot);
  const actions: Record<TrayItemId, (checked?: boolean) => void> = {
    status: () => {},
    endpoint: () => {},
    model: () => {},
    'model-status': () => {},
    'models-empty': () => {},
    // Remote models are listed for their health; a client picks one per request by its id.
    'remote-models': () => {},
    'remote-model': () => {},
    'manage-models': () => showWindow(MODELS_URL),
    'toggle-server': () => void controller.toggle(),
    'copy-endpoint': () => {
      if (controller.state.endpoint) clipboard.writeText(controller.state.endpoint);
    },
    'open-dashboard': () => showWindow(DASHBOARD_URL),
    'open-settings': () => showWindow(SETTINGS_URL),
    'start-at-login': (checked) => void controller.setStartAtLogin(!!checked),
    quit: () => {
      quitting = true;
      app.quit();
    },
  };
  let lastTrayKey = '';
  const renderTray = () => {
    const input = trayInput();
    const status = trayStatus(input);
    const items = trayMenu(input);
    const key = JSON.stringify([status, items]);
    tray.setToolTip(trayTooltip(input));
    if (key === lastTrayKey) return;
    lastTrayKey = key;
    tray.setImage(nativeImage.createFromPath(path.join(assetsDir, trayIconFile(status, process.platform))));
    // Electron has no API to read a tray's menu back; the e2e test reads this copy of the model.
    if (process.env.MLXBAR_E2E === '1') (globalThis as { __mlxbarTray?: unknown }).__mlxbarTray = { status, items };
    // Model items carry their index in input.models; the click maps it back through that same
    // list (clickModelItem), never through a string taken from the menu.
    const toTemplate = (list: TrayMenuItem[]): Electron.MenuItemConstructorOptions[] =>
      list.map((it): Electron.MenuItemConstructorOptions => {
        switch (it.type) {
          case 'separator':
            return { type: 'separator' };
          case 'submenu':
            return { id: it.id, label: it.label, enabled: it.enabled, submenu: toTemplate(it.items) };
          case 'radio':
            return { id: it.id, label: it.label, type: 'radio', enabled: it.enabled, checked: it.checked, click: () => void clickModelItem(it.id, input.models, (id) => controller.switchModel(id)) };
          case 'checkbox':
            return { id: it.id, label: it.label, type: 'checkbox', enabled: it.enabled, checked: it.checked, click: (mi) => actions[it.id](mi.checked) };
          default:
            return { id: it.id, label: it.label, type: 'normal', enabled: it.enabled, click: (mi) => actions[it.id](mi.checked) };
        }
      });
    tray.setContextMenu(Menu.buildFromTemplate(toTemplate(items)));
  };

  controller.on('state', (st) => {
    renderTray();
    // A page loaded before the server ran (or on another port) has a CSP without this endpoint.
    if (st.endpoint && st.endpoint !== pageEndpoint && win && !win.isDestroyed()) win.webContents.reload();
    else push(PUSH_CHANNELS.appState, st);
  });
  controller.on('metrics', (snap) => {
    renderTray();
    push(PUSH_CHANNELS.metrics, snap, true);
  });
  renderTray();
  // The tray's model list before the server is up (read from the models folder).
  void controller.refreshModels();

  app.on('second-instance', () => showWindow(DASHBOARD_URL));
  app.on('activate', () => showWindow(DASHBOARD_URL));
  // Stay in the tray when the window closes.
  app.on('window-all-closed', () => {});
  let disposed = false;
  app.on('before-quit', (e) => {
    quitting = true;
    if (disposed) return;
    e.preventDefault();
    disposed = true;
    void controller.dispose().finally(() => app.quit());
  });

  // Invalid settings: the app opens on the settings page and explains; the server stays stopped.
  if (controller.state.settingsIssues.length > 0) showWindow(SETTINGS_URL);
  else void controller.start();
}
