// Adapter from the library (downloader + model manager) to the server's `modelAdmin` seam
// (main/server/models.ts): the dashboard's Models page starts downloads, watches their progress by
// polling, cancels them, and switches the served model.
//
// Jobs get an opaque id (a repo id has a `/`, which does not belong in a URL path segment). A pull
// of a repo that is already downloading joins the running job (the downloader single-flights too).
// Finished jobs stay listed for a while so the page can show "done" / the error after the fact.
// Errors shown to the page are the downloader's own safe messages, sanitized once more.
import { randomBytes } from 'node:crypto';
import type { PublicModel, PublicPullJob, ServerModelAdmin } from '../server/models.ts';
import type { ServerTextPipeline } from '../server/hooks.ts';
import { ApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { startPull, type PullJob, type PullOptions } from '../library/downloader.ts';
import { HubError } from '../library/hub-client.ts';
import { listModels, type ListOptions } from '../library/library.ts';
import type { ModelManager } from '../library/model-manager.ts';
import { InvalidInputError, modelIdOf, parseRepoSpec, quoteUntrusted } from '../library/validate.ts';
import type { LibraryEntry } from '../library/library.ts';

export interface ModelAdminOptions {
  manager: ModelManager<ServerTextPipeline>;
  dataDir: string;
  library?: ListOptions | (() => ListOptions);
  /** Extra downloader options (endpoint/token default to $HF_ENDPOINT / $HF_TOKEN). */
  pull?: Omit<PullOptions, 'dataDir' | 'signal'>;
  /** How long finished jobs stay listed (default 10 minutes). */
  keepFinishedMs?: number;
  /** At most this many finished jobs are kept (default 20). */
  maxFinished?: number;
}

export interface ModelAdmin extends ServerModelAdmin {
  /** Cancels every running download (at shutdown). */
  close(): void;
}

interface JobRecord {
  id: string;
  repo: string;
  model: string;
  job: PullJob;
  state: PublicPullJob['state'];
  startedAt: number;
  finishedAt: number | null;
  error: { code: string; message: string } | null;
  cancelled: boolean;
}

function publicEntry(e: LibraryEntry): PublicModel {
  const { dir: _dir, ...rest } = e;
  return rest as PublicModel;
}

/** A job as GET /v1/models/pulls shows it (no paths; the error already sanitized). */
function toPublic(r: JobRecord): PublicPullJob {
  const p = r.job.progress;
  const running = r.state === 'running';
  return {
    id: r.id,
    repo: r.repo,
    model: r.model,
    // Waiting for one of the download slots (main/library/pull-queue.ts): cancellable, no bytes yet.
    state: running && r.job.queued ? 'queued' : r.state,
    receivedBytes: p.receivedBytes,
    totalBytes: p.totalBytes,
    bytesPerSec: running ? Math.round(p.bytesPerSec) : 0,
    etaSec: running ? p.etaSec : r.state === 'done' ? 0 : null,
    filesDone: p.filesDone,
    filesTotal: p.filesTotal,
    file: running ? p.file : null,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    error: r.error,
  };
}

/** A bad repo id (InvalidInputError) as a 400 on `repo`. */
function validRepo<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidInputError) throw new ApiError('invalid_value', err.message, { param: 'repo' });
    throw err;
  }
}

/** The job's end, kept on its record: done, cancelled (resumable), or failed with its code and sanitized message. */
function recordOutcome(rec: JobRecord): void {
  rec.job.result.then(
    () => {
      rec.state = 'done';
      rec.finishedAt = Date.now();
    },
    (err: unknown) => {
      rec.finishedAt = Date.now();
      const code = err instanceof HubError ? err.code : 'io_error';
      if (rec.cancelled || code === 'cancelled') {
        rec.state = 'cancelled';
        rec.error = { code: 'cancelled', message: 'Download cancelled; pulling again resumes it' };
      } else {
        rec.state = 'failed';
        rec.error = { code, message: sanitizeMessage(err) };
      }
    },
  );
}

export function createModelAdmin(opts: ModelAdminOptions): ModelAdmin {
  const jobs = new Map<string, JobRecord>();
  const keepMs = opts.keepFinishedMs ?? 10 * 60_000;
  const maxFinished = opts.maxFinished ?? 20;
  const lib = (): ListOptions => (typeof opts.library === 'function' ? opts.library() : opts.library ?? {});

  const prune = () => {
    const now = Date.now();
    const finished = [...jobs.values()].filter((r) => r.state !== 'running').sort((a, b) => (b.finishedAt ?? 0) - (a.finishedAt ?? 0));
    finished.forEach((r, i) => {
      if (i >= maxFinished || now - (r.finishedAt ?? now) > keepMs) jobs.delete(r.id);
    });
  };

  return {
    pull(repo) {
      const model = validRepo(() => modelIdOf(parseRepoSpec(repo)));
      prune();
      for (const r of jobs.values()) {
        if (r.model === model && r.state === 'running') return { job: toPublic(r), created: false };
      }
      const job = validRepo(() => {
        try {
          return startPull(repo, { ...opts.pull, dataDir: opts.dataDir });
        } catch (err) {
          // Too many downloads already waiting for a slot: refused, not piled up.
          if (err instanceof HubError && err.code === 'busy') throw new ApiError('queue_full', err.message, { retryAfter: 30 });
          throw err;
        }
      });
      const rec: JobRecord = {
        id: randomBytes(8).toString('hex'),
        repo,
        model,
        job,
        state: 'running',
        startedAt: Date.now(),
        finishedAt: null,
        error: null,
        cancelled: false,
      };
      jobs.set(rec.id, rec);
      recordOutcome(rec);
      return { job: toPublic(rec), created: true };
    },

    pulls() {
      prune();
      return [...jobs.values()].sort((a, b) => b.startedAt - a.startedAt).map(toPublic);
    },

    cancelPull(id) {
      const r = jobs.get(id);
      if (!r) return null;
      if (r.state === 'running') {
        r.cancelled = true;
        r.job.cancel();
      }
      return toPublic(r);
    },

    async load(model) {
      const entries = await listModels(opts.dataDir, lib());
      // Exact library id only: the name never becomes a path.
      const entry = entries.find((e) => e.id === model);
      if (!entry) throw new ApiError('model_not_found', `The model ${quoteUntrusted(model)} is not in the library`, { param: 'model' });
      // A user's explicit load: also the way back after the engine gave up (request-driven loads are refused then).
      await opts.manager.ensureLoaded(entry.id, { explicit: true });
      return publicEntry(entry);
    },

    close() {
      for (const r of jobs.values()) {
        if (r.state === 'running') {
          r.cancelled = true;
          r.job.cancel();
        }
      }
    },
  };
}
