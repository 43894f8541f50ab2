// The one default data folder: Electron's app.getPath('userData') for productName "MLX Bar", so the
// headless server, the CLI and the desktop app share config.json, the caches and the model library.
import os from 'node:os';
import path from 'node:path';

/** The platform's user-data folder for "MLX Bar" (no environment override; see dataDirFromEnv). */
export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  const home = os.homedir();
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'MLX Bar');
  if (platform === 'win32') return path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'MLX Bar');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'MLX Bar');
}

/** $MLXBAR_DATA_DIR when set, else defaultDataDir() — for commands that take no settings (pull, models). */
export function dataDirFromEnv(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  return env.MLXBAR_DATA_DIR ? path.resolve(env.MLXBAR_DATA_DIR) : defaultDataDir(platform, env);
}
