// Optional seam for serving more than one model (issue 6): the server asks it which models exist
// and, for every generation, for a lease on the model the request names. The implementation (the
// library's model manager, see main/core/server-models.ts) loads/switches/unloads; the server
// only holds the lease for the duration of one generation. Without it the server serves the one
// model it was started with (deps.engine/text/modelInfo), exactly as before.
import type { ModelInfo } from '../engine/types.ts';
import type { ServerTextPipeline } from './hooks.ts';
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
}

/** A model download as reported by GET /v1/models/pulls (no paths; the error message is sanitized). */
export interface PublicPullJob extends PullProgress {
  /** Opaque job id (for DELETE /v1/models/pulls/:id). */
  id: string;
  /** `owner/name[@rev]` as asked for. */
  repo: string;
  /** The library id the model gets once ready. */
  model: string;
  state: 'running' | 'done' | 'failed' | 'cancelled';
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
