// The one dashboard window (Electron): created on first show, hidden (not closed) when the user
// closes it so the app and its server keep running in the tray, destroyed only when quitting.
// Its options come from window-options.ts (secure web preferences, unit-tested).
import { BrowserWindow } from 'electron';
import { dashboardWindowOptions } from './window-options.ts';

export class DashboardWindow {
  private win: BrowserWindow | null = null;
  /** Set when the app quits: closing then really closes. */
  quitting = false;

  constructor(private readonly opts: { preloadPath: string; isPackaged: boolean; iconPath: string }) {}

  show(url: string): void {
    const win = this.win;
    if (!win) {
      this.create(url);
      return;
    }
    if (win.webContents.getURL() !== url) void win.loadURL(url);
    win.show();
    win.focus();
  }

  private create(url: string): void {
    const win = new BrowserWindow(dashboardWindowOptions({ preloadPath: this.opts.preloadPath, isPackaged: this.opts.isPackaged, platform: process.platform, iconPath: this.opts.iconPath }));
    this.win = win;
    win.once('ready-to-show', () => win.show());
    // Closing the window keeps the app (and the server) running in the tray.
    win.on('close', (e) => {
      if (!this.quitting) {
        e.preventDefault();
        win.hide();
      }
    });
    win.on('closed', () => {
      this.win = null;
    });
    void win.loadURL(url);
  }

  /** App state changes are always pushed (a hidden window must not wake up stale); `onlyIfVisible` for the once-a-second metrics. */
  push(channel: string, value: unknown, onlyIfVisible = false): void {
    const win = this.win;
    if (win && !win.isDestroyed() && (!onlyIfVisible || win.isVisible())) win.webContents.send(channel, value);
  }

  /** Reloads the page (its CSP is fixed at load); false when there is no live window. */
  reload(): boolean {
    const win = this.win;
    if (!win || win.isDestroyed()) return false;
    win.webContents.reload();
    return true;
  }
}
