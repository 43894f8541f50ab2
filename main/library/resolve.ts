// `--model <arg>` for `mlx-bar serve` (and the app): a local folder, a library id, or a hub repo
// id that is pulled when missing. Only the CLI/settings path goes through here; request `model`
// strings go through findModel (exact match, no paths).
import { existsSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ApiError } from '../common/errors.ts';
import { startPull, type PullJob, type PullOptions } from './downloader.ts';
import { findModel, inspectFolder, type ListOptions } from './library.ts';
import { attachTerminalProgress } from './progress-bar.ts';
import { InvalidInputError, isValidRepoId, modelIdOf, parseRepoSpec, quoteUntrusted } from './validate.ts';

export interface ResolveOptions extends ListOptions, Omit<PullOptions, 'dataDir'> {
  /** Download a repo id that is not in the library (default false). */
  pull?: boolean;
  /** Called with the pull job when a download starts (dashboard progress). */
  onPull?: (job: PullJob) => void;
  /** Draw the pull's progress on stderr (CLI). */
  terminalProgress?: boolean;
}

export interface ResolvedModel {
  /** Library id (repo id for pulled models, else the folder name). */
  id: string;
  /** Absolute model folder to pass to engine.start / loadTextPipeline. */
  dir: string;
  source: 'folder' | 'library' | 'pulled';
}

function looksLikePath(arg: string): boolean {
  return (
    path.isAbsolute(arg) ||
    arg.startsWith('./') ||
    arg.startsWith('../') ||
    arg === '.' ||
    arg === '..' ||
    arg.startsWith('~/') ||
    /^[A-Za-z]:[\\/]/.test(arg) ||
    arg.includes('\\')
  );
}

async function fromFolder(arg: string, opts: ResolveOptions): Promise<ResolvedModel> {
  const expanded = arg.startsWith('~/') ? path.join(process.env.HOME ?? '', arg.slice(2)) : arg;
  let dir: string;
  try {
    dir = await fsp.realpath(path.resolve(expanded));
  } catch {
    throw new InvalidInputError('The model folder does not exist');
  }
  const entry = await inspectFolder(dir, opts);
  if (!entry) throw new InvalidInputError('The folder is not a model folder (no readable config.json)');
  if (!entry.ready) throw new InvalidInputError(`The model folder is incomplete: ${entry.problem}`);
  return { id: entry.id, dir, source: 'folder' };
}

/**
 * Resolves `--model`: an explicit folder path, a library id (exact), or `owner/name[@rev]`
 * (pulled into `<dataDir>/models/` when `pull` is set and it is not there yet).
 * Throws InvalidInputError (bad input / incomplete folder), ApiError `model_not_found`, or the
 * pull's HubError (401/404/integrity…), all with messages safe to print.
 */
export async function resolveModelArg(arg: string, dataDir: string, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  if (typeof arg !== 'string' || arg.trim() === '') throw new InvalidInputError('No model given');
  arg = arg.trim();
  if (looksLikePath(arg)) return fromFolder(arg, opts);

  const known = await findModel(arg, dataDir, opts);
  if (known) return { id: known.id, dir: known.dir, source: 'library' };

  const repoPart = arg.split('@')[0];
  if (isValidRepoId(repoPart)) {
    // A relative folder that happens to look like owner/name: the user means the folder.
    if (existsSync(path.join(arg, 'config.json')) && statSync(arg).isDirectory()) return fromFolder(arg, opts);
    const spec = parseRepoSpec(arg);
    const again = await findModel(modelIdOf(spec), dataDir, opts);
    if (again) return { id: again.id, dir: again.dir, source: 'library' };
    if (!opts.pull) {
      throw new ApiError('model_not_found', `${quoteUntrusted(arg)} is not downloaded; run: mlx-bar pull ${spec.repo}${spec.explicitRevision ? '@' + spec.revision : ''}`);
    }
    const job = startPull(arg, { ...opts, dataDir });
    opts.onPull?.(job);
    const detach = opts.terminalProgress ? attachTerminalProgress(job) : () => {};
    try {
      const res = await job.result;
      const entry = await inspectFolder(res.dir, opts);
      if (!entry?.ready) throw new InvalidInputError(`The downloaded model is not loadable: ${entry?.problem ?? 'unreadable'}`);
      return { id: res.id, dir: res.dir, source: 'pulled' };
    } finally {
      detach();
    }
  }
  if (existsSync(arg) && statSync(arg).isDirectory()) return fromFolder(arg, opts);
  throw new ApiError('model_not_found', `No model ${quoteUntrusted(arg)} in the library, and it is not a folder or an owner/name repository id`);
}
