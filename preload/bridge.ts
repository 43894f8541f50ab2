// Builds the `window.mlxBar` API from an ipcRenderer-like object. Kept free of the electron import
// so the API surface is unit-tested in plain Node; preload/index.ts passes the real ipcRenderer.
// The renderer never sees ipcRenderer, the IpcRendererEvent or arbitrary channels: only these
// named functions, each bound to one fixed channel (checklist item 20).
import type { MetricsSnapshot } from '../main/common/metrics-types.ts';
import { INVOKE_CHANNELS, IPC_PREFIX, PUSH_CHANNELS, type AppState, type MlxBarApi } from './api.ts';

export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
  removeListener(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}

export function createBridge(ipc: IpcRendererLike): MlxBarApi {
  const invoke = <T>(channel: string, ...args: unknown[]): Promise<T> => {
    if (!channel.startsWith(IPC_PREFIX)) return Promise.reject(new Error('Request refused'));
    return ipc.invoke(channel, ...args) as Promise<T>;
  };
  const listen = <T>(channel: string, listener: (value: T) => void): (() => void) => {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    // Drop the event object: it carries `sender`, which must not reach the page.
    const wrapped = (_event: unknown, value: unknown) => listener(value as T);
    ipc.on(channel, wrapped);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      ipc.removeListener(channel, wrapped);
    };
  };
  const api: MlxBarApi = {
    version: 1,
    getSnapshot: () => invoke<MetricsSnapshot | null>(INVOKE_CHANNELS.getSnapshot),
    subscribe: (listener) => listen<MetricsSnapshot>(PUSH_CHANNELS.metrics, listener),
    getAppState: () => invoke<AppState>(INVOKE_CHANNELS.getAppState),
    onAppState: (listener) => listen<AppState>(PUSH_CHANNELS.appState, listener),
    getSettings: () => invoke(INVOKE_CHANNELS.getSettings),
    validateSettings: (values) => invoke(INVOKE_CHANNELS.validateSettings, values),
    saveSettings: (values) => invoke(INVOKE_CHANNELS.saveSettings, values),
    startServer: () => invoke(INVOKE_CHANNELS.startServer),
    stopServer: () => invoke(INVOKE_CHANNELS.stopServer),
    copyEndpoint: () => invoke(INVOKE_CHANNELS.copyEndpoint),
    copyText: (text) => invoke(INVOKE_CHANNELS.copyText, String(text)),
    openExternal: (url) => invoke(INVOKE_CHANNELS.openExternal, String(url)),
  };
  return Object.freeze(api);
}
