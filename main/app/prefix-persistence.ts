// Makes the engine's prefix KV cache survive restarts: editors and agents resend the same long
// system prompt (10–30k tokens) every turn, and recomputing it after a restart costs minutes on
// this CPU. The engine process keeps the live cache; this module, in the server process, copies
// new entries out of it (engine IPC export) into the integrity-checked prefix store on disk while
// the server is idle and at shutdown, and imports the most recent stored entries at start.
// A damaged entry is quarantined by the store and simply not imported: the server starts cold.
import type { ModelInfo, PrefixKvSnapshot } from '../engine/types.ts';
import { openPrefixStore } from '../caches/index.ts';
import type { PrefixStore } from '../caches/prefix-store.ts';
import type { CacheHealth } from '../hardening/degradation.ts';
import { sanitizeMessage } from '../hardening/sanitize.ts';

/** Shorter prefixes are cheap to recompute and not worth disk I/O. */
export const MIN_PERSISTED_TOKENS = 256;

export interface PrefixEngine {
  readonly state: string;
  readonly model: { fingerprint: string } | null;
  on?(event: 'state', listener: (state: string) => void): unknown;
  off?(event: 'state', listener: (state: string) => void): unknown;
  exportPrefixEntries?(opts: { minTokens?: number; onlyNew?: boolean }): Promise<PrefixKvSnapshot[]>;
  importPrefixEntry?(entry: PrefixKvSnapshot): Promise<boolean>;
}

export interface PrefixPersistence {
  /** Entries imported into the engine at start. */
  readonly restored: number;
  /** Copies new engine entries to disk now (serialized with other calls). */
  flush(): Promise<number>;
  /** Schedules a flush once the server has been idle for `idleMs`. */
  noteActivity(): void;
  close(timeoutMs?: number): Promise<void>;
  corruptions(): Record<string, number>;
  stats(): { entries: number; bytes: number; saved: number; restored: number };
}

export async function startPrefixPersistence(opts: {
  engine: PrefixEngine;
  modelInfo: ModelInfo;
  dataDir: string;
  engineVersion: string;
  maxBytes: number;
  maxEntries: number;
  health?: CacheHealth;
  log: (line: string) => void;
  idleMs?: number;
  minTokens?: number;
}): Promise<PrefixPersistence | null> {
  const { engine, log } = opts;
  if (!engine.exportPrefixEntries || !engine.importPrefixEntry) return null;
  const minTokens = opts.minTokens ?? MIN_PERSISTED_TOKENS;
  let store: PrefixStore;
  let quarantineCounts: () => Record<string, number>;
  try {
    const opened = await openPrefixStore(
      opts.dataDir,
      { model: opts.modelInfo.fingerprint, engine: opts.engineVersion },
      opts.health,
      { prefix: { maxBytes: opts.maxBytes, maxEntries: opts.maxEntries } },
    );
    store = opened.prefix;
    quarantineCounts = () => opened.quarantine.corruptions();
    if (opened.opened.corrupt) log(`prefix cache: quarantined ${opened.opened.corrupt} corrupt entr(ies) at startup`);
  } catch (err) {
    log(`prefix cache: persistence unavailable (${sanitizeMessage(err)})`);
    return null;
  }

  // Warm start: most recently used first, within the budget the engine was given. Run again
  // whenever the engine comes back with this model (after a crash restart, an idle unload or a
  // switch back), since a new engine process starts with an empty prefix cache.
  let restored = 0;
  const restore = async (): Promise<number> => {
    if (engine.state !== 'ready' || engine.model?.fingerprint !== opts.modelInfo.fingerprint) return 0;
    let n = 0;
    let budget = opts.maxBytes;
    for (const info of store.list().slice(0, opts.maxEntries)) {
      if (info.bytes > budget) continue;
      const entry = await store.load(info.tokens);
      if (!entry) continue; // damaged → quarantined by the store; a miss
      try {
        if (await engine.importPrefixEntry!(entry as unknown as PrefixKvSnapshot)) {
          n++;
          budget -= info.bytes;
        }
      } catch (err) {
        log(`prefix cache: stored entry not usable (${sanitizeMessage(err)})`);
      }
    }
    if (n) log(`prefix cache: restored ${n} prompt prefix(es) from disk`);
    restored += n;
    return n;
  };
  await restore();

  let saved = 0;
  let chain: Promise<number> = Promise.resolve(0);
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const flushOnce = async (): Promise<number> => {
    // The store is keyed to the model that was loaded at start; after a switch to another model
    // its KV must never be saved under this fingerprint.
    if (engine.state !== 'ready' || engine.model?.fingerprint !== opts.modelInfo.fingerprint) return 0;
    let n = 0;
    try {
      const entries = await engine.exportPrefixEntries!({ minTokens, onlyNew: true });
      for (const e of entries) if (await store.save(e)) n++;
    } catch (err) {
      log(`prefix cache: save skipped (${sanitizeMessage(err)})`);
    }
    saved += n;
    return n;
  };
  const flush = () => (chain = chain.then(flushOnce, flushOnce));
  const onState = (state: string) => {
    if (state === 'ready' && !closed) chain = chain.then(restore, restore);
  };
  engine.on?.('state', onState);
  return {
    get restored() {
      return restored;
    },
    flush,
    noteActivity() {
      if (closed) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void flush(), opts.idleMs ?? 2000);
      timer.unref();
    },
    async close(timeoutMs = 10_000) {
      closed = true;
      engine.off?.('state', onState);
      if (timer) clearTimeout(timer);
      const deadline = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
      await Promise.race([flush().then(() => store.flush(timeoutMs)), deadline]);
    },
    corruptions: () => quarantineCounts(),
    stats() {
      const s = store.stats() as { entries?: number; bytes?: number };
      return { entries: s.entries ?? 0, bytes: s.bytes ?? 0, saved, restored };
    },
  };
}
