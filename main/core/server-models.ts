// Adapter from the model manager to the server's `models` seam (main/server/models.ts):
// GET /v1/models lists the library (public entries, never paths), and a request's `model` is
// leased through the manager (exact library id or folder name via findModel; one model at a
// time; single-flight loads; idle unload + transparent reload). A request that finds a load in
// progress waits for it, bounded by `loadWaitMs`; past that it gets 503 `model_loading` with
// Retry-After (and the load goes on for the next attempt).
import type { ServerModels, ServedModelLease, PublicModel } from '../server/models.ts';
import type { ServerTextPipeline } from '../server/hooks.ts';
import { ApiError } from '../common/errors.ts';
import { listModels, type ListOptions } from '../library/library.ts';
import type { ModelManager } from '../library/model-manager.ts';
import { toPublicEntry } from '../library/index.ts';

/** How long a request waits for a model load before 503 model_loading (a real 7B loads in ~10–60 s). */
export const DEFAULT_LOAD_WAIT_MS = 120_000;

export interface ServerModelsOptions {
  manager: ModelManager<ServerTextPipeline>;
  dataDir: string;
  library?: ListOptions | (() => ListOptions);
  /** The model a request without `model` gets until another one was used. */
  defaultId: string;
  /** Bounded wait for a load; 0 = wait as long as the load takes. */
  loadWaitMs?: number;
  retryAfterSeconds?: number;
}

export function managerServerModels(opts: ServerModelsOptions): ServerModels {
  const { manager } = opts;
  const waitMs = opts.loadWaitMs ?? DEFAULT_LOAD_WAIT_MS;
  const retryAfter = opts.retryAfterSeconds ?? 5;
  let lastId = opts.defaultId;
  manager.on('loaded', (e: { id: string }) => {
    lastId = e.id;
  });
  const lib = (): ListOptions => (typeof opts.library === 'function' ? opts.library() : opts.library ?? {});

  async function acquire(requested: string | null): Promise<ServedModelLease> {
    const id = requested ?? manager.loadedId ?? lastId;
    const pending = manager.acquire(id);
    let timer: NodeJS.Timeout | null = null;
    const timedOut = new Promise<never>((_, reject) => {
      if (waitMs > 0) {
        timer = setTimeout(
          () => reject(new ApiError('model_loading', 'The model is still loading; retry shortly', { retryAfter })),
          waitMs,
        );
      }
    });
    try {
      const lease = await Promise.race([pending, timedOut]);
      return { id: lease.id, info: lease.info, text: lease.extras, release: lease.release };
    } catch (err) {
      // Gave up waiting: whatever lease the load produces later must not pin the model.
      pending.then((l) => l.release(), () => {});
      throw err;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  return {
    async list(): Promise<PublicModel[]> {
      const entries = await listModels(opts.dataDir, lib());
      return entries.map((e) => toPublicEntry(e));
    },
    acquire,
    status() {
      const s = manager.status();
      return { state: s.state, modelId: s.modelId, loadingId: s.loadingId, defaultId: s.modelId ?? lastId };
    },
    servingNow() {
      // Loaded and not switching: `acquire(its id)` and `acquire(null)` hand it out at once.
      const s = manager.status();
      const info = manager.loadedInfo;
      return s.state === 'loaded' && s.modelId && info ? { names: [s.modelId], info } : null;
    },
  };
}
