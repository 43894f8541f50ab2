// Optional seam for serving more than one model (issue 6): the server asks it which models exist
// and, for every generation, for a lease on the model the request names. The implementation (the
// library's model manager, see main/core/server-models.ts) loads/switches/unloads; the server
// only holds the lease for the duration of one generation. Without it the server serves the one
// model it was started with (deps.engine/text/modelInfo), exactly as before.
import { ApiError } from '../common/errors.ts';
import type { EngineClient, ModelInfo } from '../engine/types.ts';
import type { ServedModelMeta, ServerTextPipeline } from './hooks.ts';
// Type only: a pull job reports the downloader's progress fields.
import type { PullProgress } from '../library/downloader.ts';

/** One model as listed by GET /v1/models: `id` plus public extra fields (never a path). */
export interface PublicModel {
  id: string;
  [field: string]: unknown;
}

/** A model held for one request: no idle unload and no switch away from it until release(). */
export interface ServedModelLease {
  /** The id answered in `model` (the library id). */
  id: string;
  info: ModelInfo;
  /** The model's own tokenizer + chat template + tool-call parser. */
  text: ServerTextPipeline;
  /** Idempotent. */
  release(): void;
}

export interface ServedModelsStatus {
  state: 'empty' | 'loading' | 'loaded';
  /** The loaded model, if any. */
  modelId: string | null;
  /** The model being loaded, if any. */
  loadingId: string | null;
  /** What a request without `model` gets (the loaded model, else the last one used). */
  defaultId: string;
}

export interface ServerModels {
  /** Downloaded (ready) models, the loaded one included. */
  list(): Promise<PublicModel[]>;
  /**
   * Loads (if needed) and leases the model named by a request (`null` = the default). Rejects with
   * an ApiError: 404 model_not_found for anything that is not exactly a library id, 503
   * model_loading (+ retryAfter) when a load did not finish within the bounded wait, 400
   * model_too_large, 500 model_load_failed.
   */
  acquire(requested: string | null): Promise<ServedModelLease>;
  status(): ServedModelsStatus;
  /**
   * The model `acquire` hands out right now without loading anything: the names that lease it (a
   * request without `model` does too) and its info; null while loading, switching or empty. Lets a
   * large request that cannot fit be refused where its body is parsed (early-refusal.ts).
   */
  servingNow?(): { names: string[]; info: ModelInfo } | null;
}

/** A model download as reported by GET /v1/models/pulls (no paths; the error message is sanitized). */
export interface PublicPullJob extends PullProgress {
  /** Opaque job id (for DELETE /v1/models/pulls/:id). */
  id: string;
  /** `owner/name[@rev]` as asked for. */
  repo: string;
  /** The library id the model gets once ready. */
  model: string;
  /** `queued`: waiting for a download slot (at most 2 pulls download at once). */
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  startedAt: number;
  finishedAt: number | null;
  error: { code: string; message: string } | null;
}

/**
 * Optional seam for managing models over HTTP (the dashboard's Models page): downloads from the hub
 * into the library and switching the served model. Implemented by the library
 * (main/core/server-admin.ts); the server only validates the body shape and maps errors.
 */
export interface ServerModelAdmin {
  /** Starts (or joins the running) download of `owner/name[@rev]`. Rejects with ApiError 400 for a bad id. */
  pull(repo: string): { job: PublicPullJob; created: boolean };
  /** Running and recently finished downloads, newest first. */
  pulls(): PublicPullJob[];
  /** Cancels a running download; null when the id is unknown. */
  cancelPull(id: string): PublicPullJob | null;
  /** Loads `model` (exact library id) as the served model; ApiError 404 model_not_found otherwise. */
  load(model: string): Promise<PublicModel>;
}

/** The context limit for `info`: the contextLength setting resolved by the hook ("auto"…), never above the model's own. */
export function contextLimitOf(info: ModelInfo, hook?: (model: ModelInfo) => number): number {
  let limit = info.contextLength;
  try {
    const l = hook?.(info);
    if (typeof l === 'number' && Number.isFinite(l) && l > 0) limit = Math.min(limit, Math.floor(l));
  } catch {
    // a broken hook must not break requests: the model's own limit
  }
  return limit;
}

/**
 * Single-folder mode as a library of one model: the model the server was started with, matched by
 * its id or an alias (else 404 model_not_found, echoing at most 64 printable characters, never a path).
 * `single: true` keeps the older /v1/models and /health shapes (no `loaded`, no `model_state`).
 */
export function singleModel(deps: {
  engine: EngineClient;
  text: ServerTextPipeline;
  modelInfo: ModelInfo;
  modelMeta?: ServedModelMeta;
  /** The contextLength setting resolved per model (hooks.contextLimit): listed as context_length. */
  hooks?: { contextLimit?(model: ModelInfo): number };
}): ServerModels & { single: true } {
  const current = (): ModelInfo => deps.engine.model ?? deps.modelInfo;
  const match = (requested: string | null): string => {
    const id = current().id;
    if (requested === null || requested === '') return id;
    if (requested === id || requested === deps.modelInfo.id || (deps.modelMeta?.aliases ?? []).includes(requested)) return id;
    const shown = requested.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
    throw new ApiError('model_not_found', `The model '${shown}' does not exist. Available: ${id}`, { param: 'model' });
  };
  return {
    single: true,
    async list() {
      const m = current();
      return [{ id: m.id, context_length: contextLimitOf(m, deps.hooks?.contextLimit), max_context_length: m.contextLength, architecture: m.architecture }];
    },
    async acquire(requested) {
      const id = match(requested);
      return { id, info: current(), text: deps.text, release() {} };
    },
    status() {
      const id = current().id;
      return { state: 'loaded', modelId: id, loadingId: null, defaultId: id };
    },
    servingNow() {
      const info = current();
      return { names: [info.id, deps.modelInfo.id, ...(deps.modelMeta?.aliases ?? [])], info };
    },
  };
}
