// The menu-bar icon (Electron's Tray): renders the controller's state through the pure tray model
// (tray-model.ts: status, tooltip, menu, actions, template) and rebuilds the menu only when it changed.
import path from 'node:path';
import { Menu, nativeImage, Tray } from 'electron';
import type { AppController } from './controller.ts';
import { clickModelItem, menuTemplate, trayIconFile, trayInputFrom, trayMenu, trayStatus, trayTooltip, type TrayItemId } from './tray-model.ts';

/** Creates the tray; returns its render function (call it on every state or metrics change). */
export function createTray(controller: AppController, assetsDir: string, actions: Record<TrayItemId, (checked?: boolean) => void>): () => void {
  const icon = (file: string) => nativeImage.createFromPath(path.join(assetsDir, file));
  const tray = new Tray(icon(trayIconFile('stopped', process.platform)));
  let lastKey = '';
  return () => {
    const input = trayInputFrom(controller.state, controller.snapshot);
    const status = trayStatus(input);
    const items = trayMenu(input);
    const key = JSON.stringify([status, items]);
    tray.setToolTip(trayTooltip(input));
    if (key === lastKey) return;
    lastKey = key;
    tray.setImage(icon(trayIconFile(status, process.platform)));
    // Electron has no API to read a tray's menu back; the e2e test reads this copy of the model.
    if (process.env.MLXBAR_E2E === '1') (globalThis as { __mlxbarTray?: unknown }).__mlxbarTray = { status, items };
    // Model items carry their index in input.models; the click maps it back through that same
    // list (clickModelItem), never through a string taken from the menu.
    const template = menuTemplate(
      items,
      (id, checked) => actions[id](checked),
      (id) => void clickModelItem(id, input.models, (m) => controller.switchModel(m)),
    );
    tray.setContextMenu(Menu.buildFromTemplate(template));
  };
}
