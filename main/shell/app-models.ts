// The tray's model list (preload/api.ts `AppModel`) from what the core reports: the rows of the
// running server's GET /v1/models, or the library on disk while the server is stopped. Plain data
// in, plain data out (no Electron, no I/O but one realpath), so the controller only decides when.
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { LibraryEntry } from '../library/library.ts';
import type { RemoteModelSetting } from '../settings/schema.ts';
import type { AppModel } from '../../preload/api.ts';

export const MAX_MODEL_ID_LENGTH = 256;

/** A display-safe quote of a library id (control characters out, length bounded). */
export function quoteId(id: string): string {
  const clean = id.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return JSON.stringify(clean.length > 64 ? `${clean.slice(0, 63)}…` : clean);
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** One row of GET /v1/models → AppModel; null for a row without a usable id. */
function modelFromRow(row: unknown, current: boolean): AppModel | null {
  if (!row || typeof row !== 'object') return null;
  const r = row as Record<string, unknown>;
  if (typeof r.id !== 'string' || !r.id || r.id.length > MAX_MODEL_ID_LENGTH) return null;
  if (r.remote === true) {
    const health = r.health === 'down' || r.health === 'probing' ? r.health : 'up';
    return remoteModel(r.id, health);
  }
  const fit = (r.fitsInMemory && typeof r.fitsInMemory === 'object' ? r.fitsInMemory : null) as Record<string, unknown> | null;
  // A server without the library (one started folder) reports no fit: it is loaded, so it fits.
  const fits = fit ? fit.fits === true : true;
  const need = fit && typeof fit.needBytes === 'number' && Number.isFinite(fit.needBytes) ? fit.needBytes : null;
  return {
    id: r.id,
    sizeBytes: typeof r.sizeBytes === 'number' && Number.isFinite(r.sizeBytes) ? r.sizeBytes : 0,
    architecture: typeof r.architecture === 'string' ? r.architecture : null,
    fits,
    fitReason: fits ? null : sanitizeMessage(typeof fit?.reason === 'string' ? fit.reason : 'Does not fit in memory'),
    needBytes: need,
    contextTokens: fit && typeof fit.contextTokens === 'number' && Number.isFinite(fit.contextTokens) ? fit.contextTokens : null,
    current,
  };
}

/** A remote model (settings `remotes`): never loaded here, so never current and nothing to fit. */
function remoteModel(id: string, health: NonNullable<AppModel['remote']>['health']): AppModel {
  return { id, sizeBytes: 0, architecture: null, fits: true, fitReason: null, needBytes: null, contextTokens: null, current: false, remote: { health } };
}

function modelFromEntry(e: LibraryEntry, current: boolean): AppModel {
  const fit = e.fitsInMemory;
  return {
    id: e.id,
    sizeBytes: e.sizeBytes,
    architecture: e.architecture,
    fits: fit.fits,
    fitReason: fit.fits ? null : sanitizeMessage(fit.reason),
    needBytes: Number.isFinite(fit.needBytes) ? fit.needBytes : null,
    contextTokens: Number.isFinite(fit.contextTokens) ? fit.contextTokens : null,
    current,
  };
}

/** The id GET /v1/models marks loaded (null: nothing loaded, e.g. after an idle unload or a failed load). */
export function loadedIdOf(rows: readonly Record<string, unknown>[]): string | null {
  return (rows.find((r) => r.loaded === true)?.id as string | undefined) ?? null;
}

/**
 * The running server's rows → the list. The loaded model is the current one; with nothing loaded
 * (idle unload), `fallback` (the model the next request reloads) stays the checked one.
 */
export function modelsFromRows(rows: readonly Record<string, unknown>[], fallback: string | null): AppModel[] {
  const anyLoaded = rows.some((r) => r.loaded === true);
  return rows.map((r) => modelFromRow(r, anyLoaded ? r.loaded === true : r.id === fallback)).filter((m): m is AppModel => m !== null);
}

/**
 * The library on disk → the list, while the server is stopped. `model` is settings.model (a library
 * id, a folder name or a folder path: `modelDir` is that folder when it exists); the settings'
 * remote models follow, unchecked (nothing forwards to them while stopped).
 */
export function modelsFromDisk(entries: readonly LibraryEntry[], model: string, modelDir: string | null, remotes: readonly Pick<RemoteModelSetting, 'id'>[]): AppModel[] {
  const real = modelDir ? realOrResolved(modelDir) : null;
  const isCurrent = (e: LibraryEntry) => !!model && (real ? realOrResolved(e.dir) === real : e.id === model || e.folder === model);
  let found = false;
  const locals = entries.map((e) => {
    // One checked item even if two entries resolve to the same folder.
    const current = !found && isCurrent(e);
    if (current) found = true;
    return modelFromEntry(e, current);
  });
  return [...locals, ...remotes.filter((r) => r.id.length <= MAX_MODEL_ID_LENGTH).map((r) => remoteModel(r.id, 'unchecked'))];
}
