// The app's IPC handlers, registered through GuardedIpc (sender + argument validation). No electron
// import: the clipboard and openExternal are passed in, so the same wiring runs in the Electron
// shell and in the renderer bridge test (Chromium + this code, with Playwright as the transport).
import { INVOKE_CHANNELS } from '../../preload/api.ts';
import type { AppController } from './controller.ts';
import { GuardedIpc, noArgs, oneSettingsObject, oneString } from './ipc-guard.ts';
import { isAllowedExternal } from './url-policy.ts';

export interface IpcHandlerDeps {
  controller: AppController;
  clipboard: { writeText(text: string): void };
  openExternal(url: string): Promise<void>;
}

export function registerIpcHandlers(ipc: GuardedIpc, deps: IpcHandlerDeps): void {
  const { controller } = deps;
  ipc.handle(INVOKE_CHANNELS.getSnapshot, noArgs, () => controller.snapshot);
  ipc.handle(INVOKE_CHANNELS.getAppState, noArgs, () => controller.state);
  ipc.handle(INVOKE_CHANNELS.getSettings, noArgs, () => controller.getSettings());
  ipc.handle(INVOKE_CHANNELS.validateSettings, oneSettingsObject, (v) => controller.validateSettings(v));
  ipc.handle(INVOKE_CHANNELS.saveSettings, oneSettingsObject, (v) => controller.saveSettings(v));
  ipc.handle(INVOKE_CHANNELS.startServer, noArgs, () => controller.start());
  ipc.handle(INVOKE_CHANNELS.stopServer, noArgs, () => controller.stop());
  ipc.handle(INVOKE_CHANNELS.copyEndpoint, noArgs, () => {
    const ep = controller.state.endpoint;
    if (!ep) return false;
    deps.clipboard.writeText(ep);
    return true;
  });
  ipc.handle(INVOKE_CHANNELS.copyText, oneString(64 * 1024), (text) => {
    deps.clipboard.writeText(text);
    return true;
  });
  ipc.handle(INVOKE_CHANNELS.openExternal, oneString(2048), async (url) => {
    if (!isAllowedExternal(url)) return false;
    await deps.openExternal(url);
    return true;
  });
}
