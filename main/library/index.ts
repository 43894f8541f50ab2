// Public surface of the model library for the server, the CLI and the app shell.
export { listModels, findModel, inspectFolder, isPlausibleModelId, type LibraryEntry, type ListOptions } from './library.ts';
export { createModelManager, ModelManager, DEFAULT_IDLE_UNLOAD_MS, type ModelManagerOptions, type ModelStatus, type ModelLease, type UnloadReason } from './model-manager.ts';
export { resolveModelArg, type ResolveOptions, type ResolvedModel } from './resolve.ts';
export { startPull, pullModel, activePulls, PullJob, type PullOptions, type PullProgress, type PullStart, type PullRetry, type PullResult } from './downloader.ts';
export { HubError, type HubErrorCode } from './hub-client.ts';
export { estimateFit, availableMemoryBytes, type FitEstimate, type FitOptions } from './fit.ts';
export { attachTerminalProgress } from './progress-bar.ts';
export { defaultDataDir, modelsDirOf } from './paths.ts';
export { InvalidInputError, parseRepoSpec } from './validate.ts';
import type { LibraryEntry } from './library.ts';

/** An entry without the local folder path: what may go over HTTP (/v1/models, dashboard). */
export type PublicLibraryEntry = Omit<LibraryEntry, 'dir'>;
export function toPublicEntry(e: LibraryEntry): PublicLibraryEntry {
  const { dir: _dir, ...rest } = e;
  return rest;
}
