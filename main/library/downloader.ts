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
import { createHash, randomBytes, type Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import pRetry from 'p-retry';
import {
  errorForStatus,
  getRepoInfo,
  hubGet,
  HubError,
  resolveUrl,
  toHubError,
  type HubOptions,
  type RepoFile,
  type RepoInfo,
} from './hub-client.ts';
import { modelDirName, modelIdOf, parseRepoSpec, safeJoin, type RepoSpec } from './validate.ts';
import { MANIFEST_FILE, modelsDirOf, INCOMING_DIR } from './paths.ts';
import { fsyncDir as fsyncDirWith, nodeFs, pidAlive, writeFileAtomic } from '../common/atomic-write.ts';
import { defaultPullScheduler, type PullScheduler } from './pull-queue.ts';

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

export interface PullProgress {
  id: string;
  /** File currently transferring (repository path), or null between files. */
  file: string | null;
  receivedBytes: number;
  totalBytes: number;
  /** Smoothed transfer speed over the last seconds. */
  bytesPerSec: number;
  /** Seconds left at the current speed; null while unknown. */
  etaSec: number | null;
  filesDone: number;
  filesTotal: number;
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

interface StagingState {
  repo: string;
  revision: string;
  commit: string;
  verified: Record<string, { size: number; sha256?: string }>;
}

interface PartTracker {
  hash: Hash;
  length: number;
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
  private received = 0;
  /** Bytes written from the network by this run (what its disk reservation has used up). */
  private written = 0;
  private waitingForSlot = true;
  private total = 0;
  private filesDone = 0;
  private filesTotal = 0;
  private currentFile: string | null = null;
  private lastEmit = 0;
  private speed = 0;
  private speedWindowStart = Date.now();
  private speedWindowBytes = 0;

  constructor(spec: RepoSpec, opts: PullOptions) {
    super();
    this.spec = spec;
    this.id = modelIdOf(spec);
    this.opts = opts;
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.controller.signal]) : this.controller.signal;
    this.result = this.run();
    // The job reports failures through `result` and the `failed` event; never as an unhandled rejection.
    this.result.catch(() => {});
  }

  /** The latest progress snapshot (for a dashboard that polls instead of listening). */
  get progress(): PullProgress {
    return this.snapshot();
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
    if (existing && existing.commit === info.commit && (await manifestIntact(finalDir, existing, files))) {
      return {
        id: this.id,
        dir: finalDir,
        repo: info.repo,
        revision: info.revision,
        commit: info.commit,
        bytes: files.reduce((s, f) => s + f.size, 0),
        files: files.length,
        alreadyPresent: true,
      };
    }

    const releaseLock = await acquireLock(lockPath, this.id);
    let reservation: { release(): void } | null = null;
    try {
      const state = await prepareStaging(staging, info);
      this.total = files.reduce((s, f) => s + f.size, 0);
      this.filesTotal = files.length;
      let resumed = 0;
      for (const f of files) {
        const v = state.verified[f.path];
        if (v && v.size === f.size && v.sha256 === f.sha256 && (await sizeOf(safeJoin(staging, f.path))) === f.size) {
          resumed += f.size;
        } else {
          resumed += Math.min((await sizeOf(safeJoin(staging, f.path) + '.part')) ?? 0, f.size);
        }
      }
      // Free disk must cover what is left to write here and for the other running pulls (+ a margin).
      const need = this.total - resumed;
      reservation = await scheduler.reserve(incoming, need, () => need - this.written);
      this.emit('start', {
        id: this.id,
        repo: info.repo,
        revision: info.revision,
        commit: info.commit,
        files: files.map((f) => ({ path: f.path, size: f.size, lfs: !!f.sha256 })),
        totalBytes: this.total,
        resumedBytes: resumed,
      } satisfies PullStart);

      for (const f of files) {
        this.throwIfCancelled();
        const dest = safeJoin(staging, f.path);
        const v = state.verified[f.path];
        if (v && v.size === f.size && v.sha256 === f.sha256 && (await sizeOf(dest)) === f.size) {
          this.received += f.size;
        } else {
          await this.downloadFile(info, f, dest);
          state.verified[f.path] = { size: f.size, sha256: f.sha256 };
          await writeJsonDurable(path.join(staging, '.pull.json'), state);
        }
        this.filesDone++;
        this.emit('file', { id: this.id, file: f.path, size: f.size });
        this.emitProgress(true);
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
      return {
        id: this.id,
        dir: finalDir,
        repo: info.repo,
        revision: info.revision,
        commit: info.commit,
        bytes: this.total,
        files: files.length,
        alreadyPresent: false,
      };
    } finally {
      reservation?.release();
      await releaseLock();
    }
  }

  private throwIfCancelled(): void {
    if (this.signal.aborted) throw new HubError('cancelled', 'Download cancelled', { retryable: false });
  }

  /** p-retry around one request; waits for a running attempt to finish before reporting a cancel. */
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
            if (e.retryAfterMs) await abortableSleep(e.retryAfterMs, this.signal);
          },
        },
      );
    } catch (err) {
      await inFlight; // never leave a writer running on a .part file
      throw toHubError(err, file ?? this.id, this.signal);
    }
  }

  private async downloadFile(info: RepoInfo, f: RepoFile, dest: string): Promise<void> {
    const part = `${dest}.part`;
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    this.currentFile = f.path;
    // Resume: hash what an earlier run left, so the final sha256 covers the whole file.
    const tracker: PartTracker = { hash: createHash('sha256'), length: 0 };
    const before = this.received;
    await this.syncTracker(part, f, tracker);
    this.received = before + tracker.length;
    const url = resolveUrl(info.repo, info.commit, f.path, this.opts);

    await this.withRetry(f.path, async () => {
      await this.syncTracker(part, f, tracker);
      this.received = before + tracker.length;
      if (tracker.length === f.size && f.size > 0) return;
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (tracker.length > 0) headers.range = `bytes=${tracker.length}-`;
      // Stall guard: a connection that stops sending without closing must not hang the pull.
      const stall = new AbortController();
      const stallTimer = setTimeout(() => stall.abort(), this.opts.stallTimeoutMs ?? 60_000);
      try {
        const res = await hubGet(url, `${info.repo}/${f.path}`, {
          ...this.opts,
          headers,
          signal: AbortSignal.any([this.signal, stall.signal]),
        });
        if (res.status === 206) {
          const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
          if (!cr || Number(cr[1]) !== tracker.length || (cr[3] !== '*' && Number(cr[3]) !== f.size)) {
            await res.body?.cancel().catch(() => {});
            await this.restartPart(part, tracker, before);
            throw new HubError('bad_response', `Unexpected byte range for ${f.path}; restarting the file`);
          }
        } else if (res.status === 200) {
          if (tracker.length > 0) await this.restartPart(part, tracker, before); // server ignored Range
        } else {
          await res.body?.cancel().catch(() => {});
          if (res.status === 416 && tracker.length > 0) await this.restartPart(part, tracker, before);
          throw errorForStatus(res, `${info.repo}/${f.path}`);
        }
        if (!res.body) throw new HubError('network', `Empty body for ${f.path}`);
        const fh = await fsp.open(part, tracker.length > 0 ? 'a' : 'w');
        try {
          try {
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
              if (tracker.length + chunk.byteLength > f.size) {
                throw new HubError('integrity', `${f.path} is larger than the hub listed (${f.size} bytes)`, { retryable: false });
              }
              stallTimer.refresh();
              await fh.write(chunk);
              tracker.hash.update(chunk);
              tracker.length += chunk.byteLength;
              this.addBytes(chunk.byteLength);
            }
          } catch (err) {
            throw toHubError(err, `${info.repo}/${f.path}`, this.signal);
          }
          if (tracker.length < f.size) {
            throw new HubError('network', `Connection closed after ${tracker.length} of ${f.size} bytes of ${f.path}`);
          }
          await fh.sync();
        } finally {
          await fh.close();
        }
      } catch (err) {
        if (stall.signal.aborted && !this.signal.aborted) {
          throw new HubError('network', `The transfer of ${f.path} stalled (no data for a while); retrying`);
        }
        throw err;
      } finally {
        clearTimeout(stallTimer);
      }
    });

    if (tracker.length !== f.size) {
      throw new HubError('integrity', `${f.path}: got ${tracker.length} bytes, expected ${f.size}`, { retryable: false });
    }
    if (f.sha256) {
      const digest = tracker.hash.digest('hex');
      if (digest !== f.sha256) {
        await fsp.rm(part, { force: true }); // corrupt: never resume from it
        throw new HubError('integrity', `Checksum mismatch for ${f.path} (sha256 differs from the hub's); the file was discarded`, {
          retryable: false,
        });
      }
    }
    await fsp.rename(part, dest);
    this.currentFile = null;
  }

  /** Brings the in-memory hash in line with the part on disk (re-hashing only when they differ). */
  private async syncTracker(part: string, f: RepoFile, tracker: PartTracker): Promise<void> {
    const size = await sizeOf(part);
    if (size === tracker.length) return;
    if (size === null || size > f.size) {
      await fsp.rm(part, { force: true });
      tracker.hash = createHash('sha256');
      tracker.length = 0;
      return;
    }
    tracker.hash = createHash('sha256');
    tracker.length = 0;
    for await (const chunk of fs.createReadStream(part, { end: size - 1 }) as AsyncIterable<Buffer>) {
      tracker.hash.update(chunk);
      tracker.length += chunk.byteLength;
    }
  }

  private async restartPart(part: string, tracker: PartTracker, before: number): Promise<void> {
    await fsp.rm(part, { force: true });
    tracker.hash = createHash('sha256');
    tracker.length = 0;
    this.received = before;
  }

  private addBytes(n: number): void {
    this.received += n;
    this.written += n;
    this.speedWindowBytes += n;
    this.emitProgress(false);
  }

  private emitProgress(force: boolean): void {
    const now = Date.now();
    const winMs = now - this.speedWindowStart;
    if (winMs >= 500) {
      const inst = (this.speedWindowBytes * 1000) / winMs;
      // Exponential smoothing so one slow chunk does not make the ETA jump around.
      this.speed = this.speed === 0 ? inst : this.speed * 0.7 + inst * 0.3;
      this.speedWindowStart = now;
      this.speedWindowBytes = 0;
    }
    if (!force && now - this.lastEmit < (this.opts.progressIntervalMs ?? 200)) return;
    this.lastEmit = now;
    this.emit('progress', this.snapshot());
  }

  private snapshot(): PullProgress {
    const left = Math.max(0, this.total - this.received);
    return {
      id: this.id,
      file: this.currentFile,
      receivedBytes: this.received,
      totalBytes: this.total,
      bytesPerSec: this.speed,
      etaSec: this.speed > 0 ? left / this.speed : left === 0 ? 0 : null,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
    };
  }
}

export interface Manifest {
  repo: string;
  revision: string;
  commit: string;
  id: string;
  downloadedAt: string;
  files: Array<{ path: string; size: number; sha256?: string }>;
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

async function manifestIntact(dir: string, m: Manifest, wanted: RepoFile[]): Promise<boolean> {
  const listed = new Map((m.files ?? []).map((f) => [f.path, f.size]));
  for (const f of wanted) {
    if (listed.get(f.path) !== f.size) return false;
    if ((await sizeOf(safeJoin(dir, f.path))) !== f.size) return false;
  }
  return true;
}

async function sizeOf(p: string): Promise<number | null> {
  try {
    const st = await fsp.lstat(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

async function prepareStaging(staging: string, info: RepoInfo): Promise<StagingState> {
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

function writeJsonDurable(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, JSON.stringify(value, null, 2));
}

async function fsyncDir(dir: string): Promise<void> {
  // Not supported everywhere (e.g. some network filesystems); the rename itself is still atomic.
  await fsyncDirWith(nodeFs, dir).catch(() => {});
}

async function placeAtomically(staging: string, finalDir: string, incoming: string, dirName: string): Promise<void> {
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

async function acquireLock(lockPath: string, id: string): Promise<() => Promise<void>> {
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
