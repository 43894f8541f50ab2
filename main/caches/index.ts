// Opens the persisted caches under `<data-dir>/cache/`:
//   cache/response/    response-cache entries
//   cache/prefix-kv/   prefix KV entries
//   cache/quarantine/  corrupt files kept as evidence (bounded)
// Opening scans both stores, quarantines corrupt files, removes stray temp files and returns a
// working cache — possibly degraded (the degradation machine decides) — and never throws because of
// bad files. It throws an ApiError('cache_error') only when the data directory itself is unusable
// (not a directory, not writable), with a message that names no path.
import path from 'node:path';
import { constants as fsConstants } from 'node:fs';
import { ApiError } from '../common/errors.ts';
import type { CacheHealth } from '../hardening/degradation.ts';
import { nodeFs, type CacheFs } from '../common/atomic-write.ts';
import { EntryStore, type EntryStoreStats, type ScanReport } from './entry-store.ts';
import { Quarantine } from './quarantine.ts';
import { ResponseCache, type CacheFingerprints, type ResponseCacheStats } from './response-cache.ts';
import { PrefixStore } from './prefix-store.ts';

export { ResponseCache, type CacheFingerprints, type CachedResponse, type ResponseCacheRequest } from './response-cache.ts';
export { PrefixStore, type PrefixKvEntry, type PrefixKvLayer, type LoadedPrefixKvEntry } from './prefix-store.ts';
export { EntryStore } from './entry-store.ts';
export { Quarantine } from './quarantine.ts';

const MiB = 1024 * 1024;

export interface CacheOptions {
  response?: { enabled?: boolean; maxBytes?: number; maxEntries?: number; memoryMaxEntries?: number; memoryMaxBytes?: number };
  prefix?: { maxBytes?: number; maxEntries?: number };
  quarantine?: { maxFiles?: number; maxBytes?: number };
  /** Injectable for tests (fault injection). */
  fs?: CacheFs;
  fileNameHash?: (key: string) => string;
  now?: () => number;
}

export interface CachesStats {
  response: ResponseCacheStats & { store: EntryStoreStats };
  prefix: EntryStoreStats;
  /** Summed over both stores, by reason: feeds `cache_corruptions` in /v1/metrics. */
  corruptions: Record<string, number>;
}

export interface Caches {
  response: ResponseCache;
  prefix: PrefixStore;
  quarantine: Quarantine;
  /** What the startup scan found. */
  opened: { response: ScanReport; prefix: ScanReport };
  stats(): CachesStats;
  corruptions(): Record<string, number>;
  /** Waits for queued writes (graceful shutdown), up to `timeoutMs`. */
  flush(timeoutMs?: number): Promise<boolean>;
}

function unusable(err: unknown): ApiError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'EROFS'
        ? 'read-only file system'
        : code === 'ENOTDIR' || code === 'EEXIST'
          ? 'a file is in the way of the cache directory'
          : code === 'ENOSPC'
            ? 'no space left on device'
            : code ?? 'unknown error';
  return new ApiError('cache_error', `The cache directory in the data directory is not usable (${why}). Choose another data directory or fix its permissions.`);
}

interface Dirs {
  response: string;
  prefix: string;
  quarantine: string;
}

async function prepareDirs(fs: CacheFs, dataDir: string): Promise<Dirs> {
  const root = path.join(dataDir, 'cache');
  const dirs = { response: path.join(root, 'response'), prefix: path.join(root, 'prefix-kv'), quarantine: path.join(root, 'quarantine') };
  try {
    for (const d of Object.values(dirs)) await fs.mkdir(d, { recursive: true });
    for (const d of Object.values(dirs)) {
      const st = await fs.stat(d);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      await fs.access(d, fsConstants.W_OK | fsConstants.R_OK);
    }
  } catch (err) {
    throw unusable(err);
  }
  return dirs;
}

async function makeQuarantine(fs: CacheFs, dirs: Dirs, options: CacheOptions): Promise<Quarantine> {
  const quarantine = new Quarantine(dirs.quarantine, fs, { ...options.quarantine, now: options.now });
  await quarantine.trim().catch(() => {}); // excess left from earlier runs
  return quarantine;
}

function scanFailed(degradation: CacheHealth | undefined) {
  return (err: unknown): ScanReport => {
    // The directory became unreadable between the checks and the scan: serve without its entries.
    degradation?.recordCacheError('scan', err);
    return { entries: 0, foreign: 0, corrupt: 0, errors: 1, strayTempsRemoved: 0, notOurs: 0 };
  };
}

/** What both stores share: the file system, quarantine, health reporting, file-name hash and clock. */
function storeBase(fs: CacheFs, quarantine: Quarantine, degradation: CacheHealth | undefined, options: CacheOptions) {
  return { quarantine, health: degradation, fs, fileNameHash: options.fileNameHash, now: options.now };
}

function responseStoreFor(fs: CacheFs, dirs: Dirs, fingerprints: CacheFingerprints, quarantine: Quarantine, degradation: CacheHealth | undefined, options: CacheOptions): EntryStore {
  return new EntryStore({
    dir: dirs.response,
    kind: 'response',
    compat: { model: fingerprints.model, tokenizer: fingerprints.tokenizer, template: fingerprints.template, engine: fingerprints.engine },
    maxBytes: options.response?.maxBytes ?? 256 * MiB,
    maxEntries: options.response?.maxEntries ?? 5_000,
    ...storeBase(fs, quarantine, degradation, options),
    scanMode: 'full', // response entries are small: verify checksums at startup
  });
}

function prefixStoreFor(fs: CacheFs, dirs: Dirs, fingerprints: Pick<CacheFingerprints, 'model' | 'engine'>, quarantine: Quarantine, degradation: CacheHealth | undefined, options: CacheOptions): EntryStore {
  return new EntryStore({
    dir: dirs.prefix,
    kind: 'prefix-kv',
    // KV depends on the weights and the engine (compute dtype, kernels), not on tokenizer/template.
    compat: { model: fingerprints.model, engine: fingerprints.engine },
    maxBytes: options.prefix?.maxBytes ?? 2048 * MiB,
    maxEntries: options.prefix?.maxEntries ?? 64,
    ...storeBase(fs, quarantine, degradation, options),
    // Large files: headers + metadata at startup, checksum on every load.
    scanMode: 'structure',
    indexData: true,
  });
}

/**
 * Only the prefix KV store, for the engine process (which holds the KV and has no degradation
 * machine of its own: pass a CacheHealth that forwards to the server over IPC, or none).
 */
export async function openPrefixStore(
  dataDir: string,
  fingerprints: Pick<CacheFingerprints, 'model' | 'engine'>,
  health?: CacheHealth,
  options: CacheOptions = {},
): Promise<{ prefix: PrefixStore; quarantine: Quarantine; opened: ScanReport }> {
  const fs = options.fs ?? nodeFs;
  const dirs = await prepareDirs(fs, dataDir);
  const quarantine = await makeQuarantine(fs, dirs, options);
  const store = prefixStoreFor(fs, dirs, fingerprints, quarantine, health, options);
  const opened = await store.open().catch(scanFailed(health));
  return { prefix: new PrefixStore(store), quarantine, opened };
}

/**
 * Only the response cache, for the server process when the engine process owns `prefix-kv`
 * (openPrefixStore there). Two processes must not both open the same store directory.
 */
export async function openResponseCache(
  dataDir: string,
  fingerprints: CacheFingerprints,
  degradation?: CacheHealth,
  options: CacheOptions = {},
): Promise<{ response: ResponseCache; quarantine: Quarantine; opened: ScanReport; corruptions(): Record<string, number>; flush(timeoutMs?: number): Promise<boolean> }> {
  const fs = options.fs ?? nodeFs;
  const dirs = await prepareDirs(fs, dataDir);
  const quarantine = await makeQuarantine(fs, dirs, options);
  const store = responseStoreFor(fs, dirs, fingerprints, quarantine, degradation, options);
  const opened = await store.open().catch(scanFailed(degradation));
  const response = new ResponseCache({
    store,
    fingerprints,
    health: degradation,
    enabled: options.response?.enabled ?? false,
    memoryMaxEntries: options.response?.memoryMaxEntries,
    memoryMaxBytes: options.response?.memoryMaxBytes,
  });
  return { response, quarantine, opened, corruptions: () => quarantine.corruptions(), flush: (ms = 10_000) => store.flush(ms) };
}

/** Both stores in one process (single-process setups, tests, benches). */
export async function openCaches(dataDir: string, fingerprints: CacheFingerprints, degradation?: CacheHealth, options: CacheOptions = {}): Promise<Caches> {
  const fs = options.fs ?? nodeFs;
  const dirs = await prepareDirs(fs, dataDir);
  const quarantine = await makeQuarantine(fs, dirs, options);
  const responseStore = responseStoreFor(fs, dirs, fingerprints, quarantine, degradation, options);
  const prefixStore = prefixStoreFor(fs, dirs, fingerprints, quarantine, degradation, options);
  const failed = scanFailed(degradation);
  const opened = { response: await responseStore.open().catch(failed), prefix: await prefixStore.open().catch(failed) };
  const response = new ResponseCache({
    store: responseStore,
    fingerprints,
    health: degradation,
    enabled: options.response?.enabled ?? false,
    memoryMaxEntries: options.response?.memoryMaxEntries,
    memoryMaxBytes: options.response?.memoryMaxBytes,
  });
  const prefix = new PrefixStore(prefixStore);
  const corruptions = () => quarantine.corruptions();
  return {
    response,
    prefix,
    quarantine,
    opened,
    corruptions,
    stats: () => ({ response: { ...response.stats(), store: responseStore.stats() }, prefix: prefixStore.stats(), corruptions: corruptions() }),
    flush: async (timeoutMs = 10_000) => {
      const [a, b] = await Promise.all([responseStore.flush(timeoutMs), prefixStore.flush(timeoutMs)]);
      return a && b;
    },
  };
}
