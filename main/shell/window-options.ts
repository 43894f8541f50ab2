// BrowserWindow options of the dashboard window. Pure (type-only electron import) so the security
// values are asserted by a plain-Node unit test; the Electron e2e re-reads them from the live
// window with getLastWebPreferences().
import type { BrowserWindowConstructorOptions, WebPreferences } from 'electron';

export interface WindowOptionsInput {
  preloadPath: string;
  /** DevTools only in development builds. */
  isPackaged: boolean;
  platform: NodeJS.Platform;
  iconPath?: string;
}

export function secureWebPreferences(preloadPath: string, isPackaged: boolean): WebPreferences {
  return {
    preload: preloadPath,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    experimentalFeatures: false,
    webviewTag: false,
    navigateOnDragDrop: false,
    safeDialogs: true,
    spellcheck: false,
    devTools: !isPackaged,
  };
}

export function dashboardWindowOptions(input: WindowOptionsInput): BrowserWindowConstructorOptions {
  return {
    width: 1180,
    height: 820,
    minWidth: 760,
    minHeight: 560,
    show: false,
    title: 'MLX Bar',
    // Solid background avoids a white flash before the first paint in dark mode.
    backgroundColor: '#0f1218',
    autoHideMenuBar: true,
    ...(input.platform === 'darwin' ? { titleBarStyle: 'default' as const } : {}),
    ...(input.iconPath && input.platform !== 'darwin' ? { icon: input.iconPath } : {}),
    webPreferences: secureWebPreferences(input.preloadPath, input.isPackaged),
  };
}
