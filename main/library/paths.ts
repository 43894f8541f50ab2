// Where models live. Folder names are derived from validated repo ids only (see validate.ts).
import path from 'node:path';

/** Staging area for downloads in progress; never listed as a model. */
export const INCOMING_DIR = '.incoming';
/** Written last into a pulled model folder: repo, commit, files with sizes and sha256. */
export const MANIFEST_FILE = '.mlx-bar.json';

export function modelsDirOf(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'models');
}

/** Data directory when neither `--data-dir` nor settings name one (one rule for the CLI and the app). */
export { dataDirFromEnv as defaultDataDir } from '../common/data-dir.ts';
