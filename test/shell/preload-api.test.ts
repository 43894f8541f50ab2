// The preload's API surface: exactly the named functions, each on one fixed `mlxbar:` channel,
// listeners never receive the IpcRendererEvent (it carries `sender`), unsubscribe works. Also the
// built preload is ONE CommonJS file whose only require is `electron`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { API_METHODS, INVOKE_CHANNELS, PUSH_CHANNELS } from '../../preload/api.ts';
import { createBridge, type IpcRendererLike } from '../../preload/bridge.ts';
import { ensurePreloadBuilt } from '../renderer/build-once.ts';

function fakeIpc() {
  const invoked: { channel: string; args: unknown[] }[] = [];
  const listeners = new Map<string, Set<(e: unknown, ...a: unknown[]) => void>>();
  const ipc: IpcRendererLike = {
    invoke: async (channel, ...args) => {
      invoked.push({ channel, args });
      return { channel };
    },
    on: (channel, l) => {
      if (!listeners.has(channel)) listeners.set(channel, new Set());
      listeners.get(channel)!.add(l);
    },
    removeListener: (channel, l) => {
      listeners.get(channel)?.delete(l);
    },
  };
  const emit = (channel: string, value: unknown) => {
    for (const l of listeners.get(channel) ?? []) l({ sender: { secret: true } }, value);
  };
  return { ipc, invoked, listeners, emit };
}

describe('preload bridge', () => {
  test('exposes exactly the typed API, frozen', () => {
    const api = createBridge(fakeIpc().ipc);
    assert.deepEqual(Object.keys(api).sort(), ['version', ...API_METHODS].sort());
    assert.equal(api.version, 1);
    assert.ok(Object.isFrozen(api));
    assert.equal('invoke' in api || 'send' in api || 'on' in api || 'ipcRenderer' in api, false, 'no raw IPC');
  });

  test('each call goes to its own mlxbar: channel with only its arguments', async () => {
    const f = fakeIpc();
    const api = createBridge(f.ipc);
    await api.getSnapshot();
    await api.getAppState();
    await api.getSettings();
    await api.validateSettings({ port: 1 });
    await api.saveSettings({ port: 2 });
    await api.startServer();
    await api.stopServer();
    await api.copyEndpoint();
    await api.copyText('hello');
    await api.openExternal('https://github.com/');
    assert.deepEqual(f.invoked, [
      { channel: INVOKE_CHANNELS.getSnapshot, args: [] },
      { channel: INVOKE_CHANNELS.getAppState, args: [] },
      { channel: INVOKE_CHANNELS.getSettings, args: [] },
      { channel: INVOKE_CHANNELS.validateSettings, args: [{ port: 1 }] },
      { channel: INVOKE_CHANNELS.saveSettings, args: [{ port: 2 }] },
      { channel: INVOKE_CHANNELS.startServer, args: [] },
      { channel: INVOKE_CHANNELS.stopServer, args: [] },
      { channel: INVOKE_CHANNELS.copyEndpoint, args: [] },
      { channel: INVOKE_CHANNELS.copyText, args: ['hello'] },
      { channel: INVOKE_CHANNELS.openExternal, args: ['https://github.com/'] },
    ]);
    for (const c of [...Object.values(INVOKE_CHANNELS), ...Object.values(PUSH_CHANNELS)]) assert.match(c, /^mlxbar:[a-z-]+$/);
  });

  test('subscribe delivers values without the event and unsubscribes', () => {
    const f = fakeIpc();
    const api = createBridge(f.ipc);
    const got: unknown[][] = [];
    const off = api.subscribe((...args: unknown[]) => got.push(args));
    f.emit(PUSH_CHANNELS.metrics, { timestamp: 't1' });
    off();
    off();
    f.emit(PUSH_CHANNELS.metrics, { timestamp: 't2' });
    assert.deepEqual(got, [[{ timestamp: 't1' }]], 'one argument: the snapshot, never the event');
    assert.equal(f.listeners.get(PUSH_CHANNELS.metrics)?.size, 0);
    const states: unknown[] = [];
    const off2 = api.onAppState((s) => states.push(s));
    f.emit(PUSH_CHANNELS.appState, { server: 'running' });
    off2();
    assert.deepEqual(states, [{ server: 'running' }]);
    assert.throws(() => api.subscribe(42 as never), /function/);
  });

  test('the built preload is one CommonJS file that requires only electron', { timeout: 120_000 }, async () => {
    const file = await ensurePreloadBuilt();
    const code = readFileSync(file, 'utf8');
    const requires = [...code.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(requires)], ['electron']);
    assert.doesNotMatch(code, /^\s*(import|export)\s/m, 'no ESM syntax');
    assert.match(code, /exposeInMainWorld\("mlxBar"/);
  });
});
