// Bounded concurrent pulls and one disk reservation across them (#11 item 6).
//
// Before this, every pull started at once (150 different pulls ran together) and each checked free
// disk on its own, so together they could fill the disk. Now:
// - at most MAX_CONCURRENT_PULLS download at a time; the others wait in FIFO order, in the state
//   `queued` (visible in GET /v1/models/pulls and on the Models page), and may be cancelled there;
//   at most MAX_WAITING_PULLS wait, a further pull is refused (`busy`) instead of piling up;
// - a pull reserves the bytes it still has to write before its first file: free disk must cover
//   them plus what the other running pulls still have to write, plus DISK_MARGIN_BYTES; otherwise it
//   fails at once with `no_space` (nothing is requested from the hub's file servers).
//
// Why 2: a download is bound by the network link and the disk, not by the number of connections, so
// more parallel pulls do not finish the whole set sooner; they only split the link, and each one
// also hashes (sha256) what it writes on a machine that is busy serving a model. Two lets a small
// model finish while a large one is still running. The limit is per process (the server, or one
// `mlx-bar pull`); the lock file keeps two processes off the same model.
import fsp from 'node:fs/promises';
import { HubError } from './hub-client.ts';
import { formatBytes } from './format.ts';

export const MAX_CONCURRENT_PULLS = 2;
export const MAX_WAITING_PULLS = 16;
/** Room left for everything else (caches, logs, the OS) after all active pulls complete. */
export const DISK_MARGIN_BYTES = 256 * 1024 * 1024;

export interface DiskReservation {
  release(): void;
}

export interface PullScheduler {
  /** A download slot now if one is free and nobody waits (the returned function frees it), else null. */
  tryAcquire(): (() => void) | null;
  /** Waits for a download slot (FIFO); the returned function frees it. Rejects `cancelled` if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<() => void>;
  /**
   * Reserves the `needBytes` a pull still has to write under `dir` (`remaining()` reports what is
   * left of it as the pull goes). Throws HubError `no_space` when free disk does not cover it plus
   * the others' remaining bytes plus the margin.
   */
  reserve(dir: string, needBytes: number, remaining: () => number): Promise<DiskReservation>;
  /** Refuses (HubError `busy`) when MAX_WAITING_PULLS already wait. */
  assertRoom(): void;
  readonly running: number;
  readonly waiting: number;
}

export interface PullSchedulerOptions {
  maxConcurrent?: number;
  maxWaiting?: number;
  marginBytes?: number;
  /** Free bytes for the filesystem holding `dir` (default statfs; null = unknown, not checked). */
  freeBytes?: (dir: string) => Promise<number | null>;
}

async function statfsFree(dir: string): Promise<number | null> {
  try {
    const st = await fsp.statfs(dir);
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return null; // not supported here (some network filesystems): the write itself reports ENOSPC
  }
}

export function createPullScheduler(opts: PullSchedulerOptions = {}): PullScheduler {
  const maxConcurrent = Math.max(1, opts.maxConcurrent ?? MAX_CONCURRENT_PULLS);
  const maxWaiting = Math.max(0, opts.maxWaiting ?? MAX_WAITING_PULLS);
  const margin = opts.marginBytes ?? DISK_MARGIN_BYTES;
  const freeBytes = opts.freeBytes ?? statfsFree;
  let running = 0;
  const queue: Array<{ grant: () => void }> = [];
  const reservations = new Set<() => number>();
  // Reservations are decided one at a time (statfs is async): two pulls never both count the same free bytes.
  let reserving: Promise<unknown> = Promise.resolve();

  const next = () => {
    while (running < maxConcurrent && queue.length) {
      running++;
      queue.shift()!.grant();
    }
  };
  const slotRelease = () => {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      running--;
      next();
    };
  };

  return {
    get running() {
      return running;
    },
    get waiting() {
      return queue.length;
    },
    assertRoom() {
      if (running >= maxConcurrent && queue.length >= maxWaiting) {
        throw new HubError('busy', `${maxConcurrent} downloads are running and ${queue.length} are waiting; try again when one has finished`, { retryable: false });
      }
    },
    tryAcquire() {
      if (running >= maxConcurrent || queue.length > 0) return null;
      running++;
      return slotRelease();
    },
    acquire(signal) {
      if (signal.aborted) return Promise.reject(new HubError('cancelled', 'Download cancelled', { retryable: false }));
      if (running < maxConcurrent && queue.length === 0) {
        running++;
        return Promise.resolve(slotRelease());
      }
      return new Promise((resolve, reject) => {
        const item = {
          grant: () => {
            signal.removeEventListener('abort', onAbort);
            resolve(slotRelease());
          },
        };
        const onAbort = () => {
          const i = queue.indexOf(item);
          if (i >= 0) queue.splice(i, 1);
          reject(new HubError('cancelled', 'Download cancelled', { retryable: false }));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        queue.push(item);
      });
    },
    reserve(dir, needBytes, remaining) {
      const decide = reserving.then(async (): Promise<DiskReservation> => {
        const release = { release: () => void reservations.delete(remaining) };
        if (needBytes <= 0) return release;
        const free = await freeBytes(dir);
        let others = 0;
        for (const r of reservations) others += Math.max(0, r());
        if (free !== null && free < needBytes + others + margin) {
          throw new HubError(
            'no_space',
            `Not enough disk space: ${formatBytes(needBytes)} to download, ${formatBytes(free)} free` +
              (others > 0 ? `, ${formatBytes(others)} still to come for the other downloads` : '') +
              `, and ${formatBytes(margin)} kept free`,
            { retryable: false },
          );
        }
        reservations.add(remaining);
        return release;
      });
      reserving = decide.catch(() => {});
      return decide;
    },
  };
}

/** The process's scheduler (the server's Models page and `mlx-bar pull` share it). */
export const defaultPullScheduler = createPullScheduler();
