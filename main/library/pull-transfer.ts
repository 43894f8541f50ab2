// One file of a pull over the network: `Range` requests that resume a `.part` file (its sha256
// carried across the resume by hashing what is already there), a stall guard, retries through the
// job, and the checks before the file is renamed into place (size; sha256 for LFS files).
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { errorForStatus, hubGet, HubError, resolveUrl, toHubError, type RepoFile, type RepoInfo } from './hub-client.ts';
import type { PullOptions } from './downloader.ts';
import { sizeOf } from './pull-files.ts';
import type { PullMeter } from './pull-progress.ts';

/** What a file's transfer needs from its pull job. */
export interface TransferJob {
  opts: PullOptions;
  signal: AbortSignal;
  meter: PullMeter;
  /** The job's retry policy around one request (p-retry, Retry-After). */
  withRetry<T>(file: string | null, fn: () => Promise<T>): Promise<T>;
}

interface PartTracker {
  hash: Hash;
  length: number;
}

/** Downloads one file into `dest` (through `dest.part`), resuming, retrying and verifying it (size; sha256 for LFS files). */
export async function downloadFile(job: TransferJob, info: RepoInfo, f: RepoFile, dest: string): Promise<void> {
  const part = `${dest}.part`;
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  job.meter.file = f.path;
  // Resume: hash what an earlier run left, so the final sha256 covers the whole file.
  const tracker: PartTracker = { hash: createHash('sha256'), length: 0 };
  const before = job.meter.received;
  await syncTracker(part, f, tracker);
  job.meter.received = before + tracker.length;
  const url = resolveUrl(info.repo, info.commit, f.path, job.opts);

  await job.withRetry(f.path, async () => {
    await syncTracker(part, f, tracker);
    job.meter.received = before + tracker.length;
    if (tracker.length === f.size && f.size > 0) return;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (tracker.length > 0) headers.range = `bytes=${tracker.length}-`;
    // Stall guard: a connection that stops sending without closing must not hang the pull.
    const stall = new AbortController();
    const stallTimer = setTimeout(() => stall.abort(), job.opts.stallTimeoutMs ?? 60_000);
    try {
      const res = await hubGet(url, `${info.repo}/${f.path}`, {
        ...job.opts,
        headers,
        signal: AbortSignal.any([job.signal, stall.signal]),
      });
      if (res.status === 206) {
        const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!cr || Number(cr[1]) !== tracker.length || (cr[3] !== '*' && Number(cr[3]) !== f.size)) {
          await res.body?.cancel().catch(() => {});
          await restartPart(job, part, tracker, before);
          throw new HubError('bad_response', `Unexpected byte range for ${f.path}; restarting the file`);
        }
      } else if (res.status === 200) {
        if (tracker.length > 0) await restartPart(job, part, tracker, before); // server ignored Range
      } else {
        await res.body?.cancel().catch(() => {});
        if (res.status === 416 && tracker.length > 0) await restartPart(job, part, tracker, before);
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
            job.meter.add(chunk.byteLength);
          }
        } catch (err) {
          throw toHubError(err, `${info.repo}/${f.path}`, job.signal);
        }
        if (tracker.length < f.size) {
          throw new HubError('network', `Connection closed after ${tracker.length} of ${f.size} bytes of ${f.path}`);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (stall.signal.aborted && !job.signal.aborted) {
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
  job.meter.file = null;
}

/** Brings the in-memory hash in line with the part on disk (re-hashing only when they differ). */
async function syncTracker(part: string, f: RepoFile, tracker: PartTracker): Promise<void> {
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

async function restartPart(job: TransferJob, part: string, tracker: PartTracker, before: number): Promise<void> {
  await fsp.rm(part, { force: true });
  tracker.hash = createHash('sha256');
  tracker.length = 0;
  job.meter.received = before;
}
