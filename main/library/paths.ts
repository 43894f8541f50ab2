// Where models live. Folder names are derived from validated repo ids only (see validate.ts).
import os from 'node:os';
import path from 'node:path';

/** Staging area for downloads in progress; never listed as a model. */
export const INCOMING_DIR = '.incoming';
/** Written last into a pulled model folder: repo, commit, files with sizes and sha256. */
export const MANIFEST_FILE = '.mlx-bar.json';

export function modelsDirOf(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'models');
}

/**
 * Data directory when neither `--data-dir` nor settings name one: $MLXBAR_DATA_DIR, then the folder
 * Electron's app.getPath('userData') uses for productName "MLX Bar" (same rule as `mlx-bar serve`),
 * so the CLI and the app share one model library.
 */
export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  if (env.MLXBAR_DATA_DIR) return path.resolve(env.MLXBAR_DATA_DIR);
  const home = os.homedir();
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'MLX Bar');
  if (platform === 'win32') return path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'MLX Bar');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'MLX Bar');
}
