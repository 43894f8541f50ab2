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
 * Fallback data directory when neither `--data-dir` nor settings name one: $MLXBAR_DATA_DIR, then
 * the platform's per-user application data folder.
 */
export function defaultDataDir(): string {
  if (process.env.MLXBAR_DATA_DIR) return path.resolve(process.env.MLXBAR_DATA_DIR);
  const home = os.homedir();
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'MLX Bar');
  if (process.platform === 'win32') return path.join(process.env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'MLX Bar');
  return path.join(process.env.XDG_DATA_HOME || path.join(home, '.local', 'share'), 'mlx-bar');
}
