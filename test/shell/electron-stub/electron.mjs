// Minimal stand-in for the `electron` module so electron-store (which imports it at top level) can
// run in plain Node: only what electron-store touches. Not used by any code under test other than
// electron-store's own bootstrap (the store logic itself is real).
import os from 'node:os';

export const app = {
  getPath: (name) => {
    if (name !== 'userData') throw new Error(`stub: unsupported path ${name}`);
    return process.env.MLXBAR_STUB_USERDATA ?? os.tmpdir();
  },
  getVersion: () => '0.0.0-test',
};
export const ipcMain = { on: () => {} };
export const shell = { openPath: async () => '' };
export default { app, ipcMain, shell };
