// The preload of the dashboard window. Runs sandboxed with context isolation, so it is bundled to
// ONE CommonJS file (dist/preload/index.cjs; a sandboxed preload can neither be ESM nor require
// relative files). It exposes only the typed API from bridge.ts.
import { contextBridge, ipcRenderer } from 'electron';
import { createBridge } from './bridge.ts';

contextBridge.exposeInMainWorld('mlxBar', createBridge(ipcRenderer));
