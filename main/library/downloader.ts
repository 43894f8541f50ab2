// Downloads a model repository from the hub into `<data-dir>/models/<owner>--<name>[@rev]/`.
//
// Guarantees (each one is something a user would notice if it broke):
// - a model folder appears only complete and verified: files land in
//   `<models>/.incoming/<dir>.partial/`, every file is checked (size always, sha256 for LFS files),
//   and only then is the folder renamed into place;
// - interrupted downloads resume: `.part` files stay in the staging folder (also after Ctrl-C) and
//   the next attempt/run asks for the remaining bytes with `Range`; the sha256 continues across the
//   resume by hashing the existing part first;
// - transient failures (network, 5xx, 429) retry with exponential backoff (p-retry), honouring
//   Retry-After; 401/403/404 and integrity failures stop at once with a message that says what to do;
// - two pulls of the same model never write the same files (in-process single-flight + lock file);
// - at most two pulls download at once (the rest wait, `queued`), and free disk must cover what all
//   running pulls still have to write (main/library/pull-queue.ts).
//
// The staging folder has a deterministic name (not a random one) so that a later run can find and
// resume the parts of a cancelled one; `.pull.json` in it records the commit, so parts of an older
// commit are discarded instead of being mixed with new files.
import { EventEmitter } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import pRetry from 'p-retry';
import { getRepoInfo, HubError, toHubError, type HubOptions } from './hub-client.ts';
import { modelDirName, modelIdOf, parseRepoSpec, safeJoin, type RepoSpec } from './validate.ts';
import { MANIFEST_FILE, modelsDirOf, INCOMING_DIR } from './paths.ts';
import { acquireLock, manifestIntact, placeAtomically, prepareStaging, readManifest, selectModelFiles, sizeOf, stagedAndVerified, writeJsonDurable, type Manifest } from './pull-files.ts';
import { defaultPullScheduler, type PullScheduler } from './pull-queue.ts';
import { PullMeter, type PullProgress } from './pull-progress.ts';
import { downloadFile, type TransferJob } from './pull-transfer.ts';

export { isModelFile, readManifest, selectModelFiles, type Manifest } from './pull-files.ts';
export type { PullProgress } from './pull-progress.ts';

export interface PullOptions extends HubOptions {
  dataDir: string;
  signal?: AbortSignal;
  /** Retries per request after the first attempt (default 5). */
  retries?: number;
  /** Backoff bounds (defaults 1 s and 30 s). */
  minRetryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Also fetch README.md (default false). */
  includeReadme?: boolean;
  /** Minimum interval between `progress` events (default 200 ms). */
  progressIntervalMs?: number;
  /** A transfer with no bytes for this long is aborted and retried (default 60 s). */
  stallTimeoutMs?: number;
  /** Concurrency limit + disk reservation shared by pulls (default: the process's, main/library/pull-queue.ts). */
  scheduler?: PullScheduler;
  /** Waits out a server's Retry-After (returns early when `signal` aborts). Injectable so tests check the wait asked for, not the clock. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface PullStart {
  id: string;
  repo: string;
  revision: string;
  commit: string;
  files: Array<{ path: string; size: number; lfs: boolean }>;
  totalBytes: number;
  /** Bytes already on disk from an earlier, interrupted pull. */
  resumedBytes: number;
}

export interface PullRetry {
  id: string;
  file: string | null;
  attempt: number;
  retriesLeft: number;
  delayMs?: number;
  message: string;
}

export interface PullResult {
  id: string;
  /** Absolute folder of the ready model. */
  dir: string;
  repo: string;
  revision: string;
  commit: string;
  bytes: number;
  files: number;
  /** True when the same commit was already present and nothing was downloaded. */
  alreadyPresent: boolean;
}

const active = new Map<string, PullJob>();

/**
 * One pull. Events: `running` (got a download slot), `start` (PullStart), `progress` (PullProgress), `retry` (PullRetry),
 * `file` ({ id, file, size }), `done` (PullResult), `failed` (HubError). Await `result`.
 */
export class PullJob extends EventEmitter {
  readonly id: string;
  readonly spec: RepoSpec;
  readonly result: Promise<PullResult>;
  private readonly controller = new AbortController();
  private readonly opts: PullOptions;
  private readonly signal: AbortSignal;
  private waitingForSlot = true;
  /** Bytes, files and speed so far (pull-progress.ts); emits `progress`. */
  private readonly meter: PullMeter;

  constructor(spec: RepoSpec, opts: PullOptions) {
    super();
    this.spec = spec;
    this.id = modelIdOf(spec);
    this.opts = opts;
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.controller.signal]) : this.controller.signal;
    this.meter = new PullMeter(this.id, opts.progressIntervalMs ?? 200, (p) => this.emit('progress', p));
    this.result = this.run();
    // The job reports failures through `result` and the `failed` event; never as an unhandled rejection.
    this.result.catch(() => {});
  }

  /** The latest progress snapshot (for a dashboard that polls instead of listening). */
  get progress(): PullProgress {
    return this.meter.snapshot();
  }

  /** True while the job waits for a download slot (at most MAX_CONCURRENT_PULLS run at once). */
  get queued(): boolean {
    return this.waitingForSlot;
  }

  /** Cancels; `.part` files stay so the next pull resumes. */
  cancel(): void {
    this.controller.abort();
  }

  private async run(): Promise<PullResult> {
    const scheduler = this.opts.scheduler ?? defaultPullScheduler;
    let releaseSlot: (() => void) | null = null;
    try {
      // A free slot is taken synchronously (still inside the constructor), so a pull that does not
      // have to wait is never reported as queued; otherwise wait in line.
      releaseSlot = scheduler.tryAcquire() ?? (await scheduler.acquire(this.signal));
      this.waitingForSlot = false;
      this.emit('running', { id: this.id });
      const res = await this.pull(scheduler);
      this.emit('done', res);
      return res;
    } catch (err) {
      this.waitingForSlot = false;
      const e = toHubError(err, this.id, this.signal);
      this.emit('failed', e);
      throw e;
    } finally {
      releaseSlot?.();
    }
  }

  private async pull(scheduler: PullScheduler): Promise<PullResult> {
    const modelsDir = modelsDirOf(this.opts.dataDir);
    const incoming = path.join(modelsDir, INCOMING_DIR);
    await fsp.mkdir(incoming, { recursive: true });
    const dirName = modelDirName(this.spec);
    const finalDir = safeJoin(modelsDir, dirName);
    const staging = safeJoin(incoming, `${dirName}.partial`);
    const lockPath = safeJoin(incoming, `${dirName}.lock`);

    const info = await this.withRetry(null, () =>
      getRepoInfo(this.spec.repo, this.spec.revision, { ...this.opts, signal: this.signal }),
    );
    const files = selectModelFiles(info, this.opts.includeReadme);

    const existing = await readManifest(finalDir);
    // Same commit and every file still the size it was verified at: nothing to do. A damaged
    // folder (a file truncated or deleted since) is downloaded again and replaced.
    const result = (alreadyPresent: boolean): PullResult => ({
      id: this.id,
      dir: finalDir,
      repo: info.repo,
      revision: info.revision,
      commit: info.commit,
      bytes: files.reduce((s, f) => s + f.size, 0),
      files: files.length,
      alreadyPresent,
    });
    if (existing && existing.commit === info.commit && (await manifestIntact(finalDir, existing, files))) return result(true);

    const releaseLock = await acquireLock(lockPath, this.id);
    let reservation: { release(): void } | null = null;
    try {
      const state = await prepareStaging(staging, info);
      this.meter.total = files.reduce((s, f) => s + f.size, 0);
      this.meter.filesTotal = files.length;
      let resumed = 0;
      for (const f of files) {
        if (await stagedAndVerified(state, f, safeJoin(staging, f.path))) {
          resumed += f.size;
        } else {
          resumed += Math.min((await sizeOf(safeJoin(staging, f.path) + '.part')) ?? 0, f.size);
        }
      }
      // Free disk must cover what is left to write here and for the other running pulls (+ a margin).
      const need = this.meter.total - resumed;
      reservation = await scheduler.reserve(incoming, need, () => need - this.meter.written);
      this.emit('start', {
        id: this.id,
        repo: info.repo,
        revision: info.revision,
        commit: info.commit,
        files: files.map((f) => ({ path: f.path, size: f.size, lfs: !!f.sha256 })),
        totalBytes: this.meter.total,
        resumedBytes: resumed,
      } satisfies PullStart);

      for (const f of files) {
        this.throwIfCancelled();
        const dest = safeJoin(staging, f.path);
        if (await stagedAndVerified(state, f, dest)) {
          this.meter.received += f.size;
        } else {
          await downloadFile(this.transfer, info, f, dest);
          state.verified[f.path] = { size: f.size, sha256: f.sha256 };
          await writeJsonDurable(path.join(staging, '.pull.json'), state);
        }
        this.meter.filesDone++;
        this.emit('file', { id: this.id, file: f.path, size: f.size });
        this.meter.tick(true);
      }

      // Everything verified: write the manifest, then move the folder into place in one rename.
      this.throwIfCancelled();
      await fsp.rm(path.join(staging, '.pull.json'), { force: true });
      await writeJsonDurable(path.join(staging, MANIFEST_FILE), {
        repo: info.repo,
        revision: info.revision,
        commit: info.commit,
        id: this.id,
        downloadedAt: new Date().toISOString(),
        files: files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })),
      } satisfies Manifest);
      await placeAtomically(staging, finalDir, incoming, dirName);
      return result(false);
    } finally {
      reservation?.release();
      await releaseLock();
    }
  }

  private throwIfCancelled(): void {
    if (this.signal.aborted) throw new HubError('cancelled', 'Download cancelled', { retryable: false });
  }

  /** p-retry around one request; waits for a running attempt to finish before reporting a cancel. */
  /** What one file's transfer needs from its job (pull-transfer.ts). */
  private get transfer(): TransferJob {
    return { opts: this.opts, signal: this.signal, meter: this.meter, withRetry: (file, fn) => this.withRetry(file, fn) };
  }

  private async withRetry<T>(file: string | null, fn: () => Promise<T>): Promise<T> {
    let inFlight: Promise<unknown> = Promise.resolve();
    try {
      return await pRetry(
        () => {
          this.throwIfCancelled();
          const p = fn();
          inFlight = p.catch(() => {});
          return p;
        },
        {
          retries: this.opts.retries ?? 5,
          factor: 2,
          minTimeout: this.opts.minRetryDelayMs ?? 1000,
          maxTimeout: this.opts.maxRetryDelayMs ?? 30_000,
          randomize: true,
          signal: this.signal,
          shouldRetry: (err) => err instanceof HubError && err.retryable && !this.signal.aborted,
          onFailedAttempt: async (err) => {
            const e = err as unknown as HubError & { attemptNumber: number; retriesLeft: number };
            if (e.retriesLeft <= 0) return;
            this.emit('retry', {
              id: this.id,
              file,
              attempt: e.attemptNumber,
              retriesLeft: e.retriesLeft,
              delayMs: e.retryAfterMs,
              message: e.message,
            } satisfies PullRetry);
            if (e.retryAfterMs) await (this.opts.sleep ?? abortableSleep)(e.retryAfterMs, this.signal);
          },
        },
      );
    } catch (err) {
      await inFlight; // never leave a writer running on a .part file
      throw toHubError(err, file ?? this.id, this.signal);
    }
  }
}

/**
 * Starts pulling `owner/name[@rev]` (or returns the pull of the same model already running in this
 * process). Throws InvalidInputError synchronously for a malformed id, and HubError `busy` when
 * MAX_WAITING_PULLS pulls already wait for a slot (main/library/pull-queue.ts).
 */
export function startPull(specStr: string, opts: PullOptions): PullJob {
  const spec = parseRepoSpec(specStr);
  const key = `${path.resolve(opts.dataDir)}\0${modelDirName(spec)}`;
  const running = active.get(key);
  if (running) return running;
  (opts.scheduler ?? defaultPullScheduler).assertRoom();
  const job = new PullJob(spec, opts);
  active.set(key, job);
  job.result.finally(() => active.delete(key)).catch(() => {});
  return job;
}

/** Pulls running in this process (the dashboard lists them with `job.progress`, can `cancel()`). */
export function activePulls(): PullJob[] {
  return [...active.values()];
}

/** Convenience: pull and resolve with the result; progress through the optional callback. */
export async function pullModel(
  specStr: string,
  opts: PullOptions & { onProgress?: (p: PullProgress) => void },
): Promise<PullResult> {
  const job = startPull(specStr, opts);
  if (opts.onProgress) job.on('progress', opts.onProgress);
  try {
    return await job.result;
  } finally {
    if (opts.onProgress) job.off('progress', opts.onProgress);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
