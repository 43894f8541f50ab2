// Default data folder = Electron's app.getPath('userData') for productName "MLX Bar", so the
// headless server and the desktop app share <dataDir>/config.json (and the caches). Mirrors
// main/cli/serve.ts#defaultDataDir (kept import-free of the server here).
import os from 'node:os';
import path from 'node:path';

export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  const home = os.homedir();
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'MLX Bar');
  if (platform === 'win32') return path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'MLX Bar');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'MLX Bar');
}
