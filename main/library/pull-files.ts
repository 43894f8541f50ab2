// A pull's files on disk (downloader.ts does the network side): which repository files a model
// needs, the staging folder (`<models>/.incoming/<dir>.partial/` with `.pull.json`: what is verified
// so far, for which commit), the lock file that keeps two processes off one staging folder, the
// manifest written next to a finished model (`.mlx-bar.json`), and the atomic move into place.
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { HubError, type RepoFile, type RepoInfo } from './hub-client.ts';
import { MANIFEST_FILE } from './paths.ts';
import { safeJoin } from './validate.ts';
import { fsyncDir as fsyncDirWith, nodeFs, pidAlive, writeFileAtomic } from '../common/atomic-write.ts';

/** Files a model needs; everything else in a repository (images, other formats) is skipped. */
export function isModelFile(name: string, includeReadme = false): boolean {
  // sentence-transformers embedding models declare their pooling in a numbered module folder
  // (modules.json → 1_Pooling/config.json), which the engine's embed path reads.
  if (/^\d{1,2}_Pooling\/config\.json$/.test(name)) return true;
  if (name.includes('/')) return false; // mlx-community repos are flat; other subfolders hold extras
  if (includeReadme && name === 'README.md') return true;
  return (
    name === 'config.json' ||
    name === 'generation_config.json' ||
    name === 'special_tokens_map.json' ||
    name === 'model.safetensors.index.json' ||
    name === 'chat_template.jinja' ||
    name === 'chat_template.json' ||
    name === 'modules.json' ||
    name === 'config_sentence_transformers.json' ||
    name === 'sentence_bert_config.json' ||
    /^tokenizer[\w.-]*\.json$/.test(name) ||
    /^[\w.-]+\.safetensors$/.test(name)
  );
}

export function selectModelFiles(info: RepoInfo, includeReadme = false): RepoFile[] {
  const files = info.files.filter((f) => isModelFile(f.path, includeReadme));
  const names = new Set(files.map((f) => f.path));
  const missing = ['config.json', 'tokenizer.json'].filter((n) => !names.has(n));
  if (!files.some((f) => f.path.endsWith('.safetensors'))) missing.push('*.safetensors');
  if (missing.length > 0) {
    throw new HubError(
      'not_found',
      `${info.repo}@${info.revision} is not an MLX model repository (missing ${missing.join(', ')})`,
      { retryable: false },
    );
  }
  // Small JSON files first: a broken repository fails fast, before gigabytes are fetched.
  return files.sort((a, b) => a.size - b.size || a.path.localeCompare(b.path));
}

/** `.pull.json`: the commit being staged and the files verified so far. */
export interface StagingState {
  repo: string;
  revision: string;
  commit: string;
  verified: Record<string, { size: number; sha256?: string }>;
}

/** A staged file that an earlier run verified and that is still on disk at its size. */
export async function stagedAndVerified(state: StagingState, f: RepoFile, file: string): Promise<boolean> {
  const v = state.verified[f.path];
  return !!v && v.size === f.size && v.sha256 === f.sha256 && (await sizeOf(file)) === f.size;
}

export interface Manifest {
  repo: string;
  revision: string;
  commit: string;
  id: string;
  downloadedAt: string;
  files: Array<{ path: string; size: number; sha256?: string }>;
}

/** A finished model's manifest (null: none, unreadable or not ours). */
export async function readManifest(dir: string): Promise<Manifest | null> {
  try {
    const raw = await fsp.readFile(path.join(dir, MANIFEST_FILE), 'utf8');
    if (raw.length > 1_000_000) return null;
    const m = JSON.parse(raw) as Manifest;
    return m && typeof m.commit === 'string' && typeof m.repo === 'string' ? m : null;
  } catch {
    return null;
  }
}

/** The folder still holds every wanted file at the size the manifest verified (cheap: sizes only). */
export async function manifestIntact(dir: string, m: Manifest, wanted: RepoFile[]): Promise<boolean> {
  const listed = new Map((m.files ?? []).map((f) => [f.path, f.size]));
  for (const f of wanted) {
    if (listed.get(f.path) !== f.size) return false;
    if ((await sizeOf(safeJoin(dir, f.path))) !== f.size) return false;
  }
  return true;
}

export async function sizeOf(p: string): Promise<number | null> {
  try {
    const st = await fsp.lstat(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** The staging folder for this commit: resumed when `.pull.json` names it, else emptied and started afresh. */
export async function prepareStaging(staging: string, info: RepoInfo): Promise<StagingState> {
  let state: StagingState | null = null;
  try {
    const st = await fsp.lstat(staging);
    if (!st.isDirectory()) await fsp.rm(staging, { force: true });
    else state = JSON.parse(await fsp.readFile(path.join(staging, '.pull.json'), 'utf8')) as StagingState;
  } catch {
    state = null;
  }
  if (!state || state.commit !== info.commit || state.repo !== info.repo || typeof state.verified !== 'object') {
    // Parts of another commit (or of unknown origin) must not be mixed with this one.
    await fsp.rm(staging, { recursive: true, force: true });
    await fsp.mkdir(staging, { recursive: true });
    state = { repo: info.repo, revision: info.revision, commit: info.commit, verified: {} };
    await writeJsonDurable(path.join(staging, '.pull.json'), state);
  }
  return state;
}

export function writeJsonDurable(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, JSON.stringify(value, null, 2));
}

async function fsyncDir(dir: string): Promise<void> {
  // Not supported everywhere (e.g. some network filesystems); the rename itself is still atomic.
  await fsyncDirWith(nodeFs, dir).catch(() => {});
}

/** Moves the verified staging folder into place in one rename (an older commit is swapped out first). */
export async function placeAtomically(staging: string, finalDir: string, incoming: string, dirName: string): Promise<void> {
  await fsyncDir(staging);
  let old: string | null = null;
  try {
    await fsp.rename(staging, finalDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw err;
    // Replacing an older commit: move it aside first, then swap in the new one.
    old = safeJoin(incoming, `${dirName}.old.${randomBytes(4).toString('hex')}`);
    await fsp.rename(finalDir, old);
    await fsp.rename(staging, finalDir);
  }
  await fsyncDir(path.dirname(finalDir));
  if (old) await fsp.rm(old, { recursive: true, force: true });
}

/** The staging folder's lock file (pid inside; a stale one whose process is gone is taken over). */
export async function acquireLock(lockPath: string, id: string): Promise<() => Promise<void>> {
  for (let i = 0; i < 2; i++) {
    try {
      const fh = await fsp.open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => fsp.rm(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await fsp.readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
        throw new HubError('busy', `Another pull of ${id} is already running`, { retryable: false });
      }
      await fsp.rm(lockPath, { force: true }); // stale: its process is gone
    }
  }
  throw new HubError('busy', `Could not lock the download folder for ${id}`, { retryable: false });
}
