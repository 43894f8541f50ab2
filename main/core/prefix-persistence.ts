// Makes the engine's prefix KV cache survive restarts and model switches: editors and agents resend
// the same long system prompt (10–30k tokens) every turn, and recomputing it after a restart costs
// minutes on this CPU. The engine process keeps the live cache; this module, in the server process,
// copies new entries out of it (engine IPC export) into the integrity-checked prefix store on disk
// while the server is idle, before a model is released (switch / unload: the model manager's
// beforeRelease hook) and at shutdown, and imports the most recent stored entries whenever the
// engine comes back 'ready' with a model (start, crash restart, idle reload, switch).
//
// The store follows whichever model is loaded: its compat is {model fingerprint, engine version of
// that model (compute dtype)}. When the engine is ready with another model, the current store's
// writes are drained and the store for the new model is opened on the same directory — only one
// EntryStore at a time, since all models share one disk budget (other models' entries are
// "foreign" to it and evicted first). File names are salted with the compat, so the same prompt on
// two models gives two files instead of one model's KV overwriting the other's.
// A damaged entry is quarantined by the store and simply not imported: that model starts cold.
import { createHash } from 'node:crypto';
import { access, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import type { ModelInfo, PrefixKvSnapshot } from '../engine/types.ts';
import { openPrefixStore } from '../caches/index.ts';
import type { PrefixStore } from '../caches/prefix-store.ts';
import { compatDigest, readEntry } from '../caches/entry-file.ts';
import { ENTRY_EXT } from '../caches/entry-store.ts';
import type { CacheHealth } from '../hardening/degradation.ts';
import { sanitizeMessage } from '../common/sanitize.ts';

/** Shorter prefixes are cheap to recompute and not worth disk I/O. */
export const MIN_PERSISTED_TOKENS = 256;

export interface PrefixEngine {
  readonly state: string;
  readonly model: Pick<ModelInfo, 'fingerprint' | 'computeDtype'> | null;
  on?(event: 'state', listener: (state: string) => void): unknown;
  off?(event: 'state', listener: (state: string) => void): unknown;
  exportPrefixEntries?(opts: { minTokens?: number; onlyNew?: boolean }): Promise<PrefixKvSnapshot[]>;
  importPrefixEntry?(entry: PrefixKvSnapshot): Promise<boolean>;
}

export interface PrefixPersistenceStats {
  /** Stored prefixes of the loaded model. */
  entries: number;
  /** Bytes of the whole prefix directory (every model's files share one budget). */
  bytes: number;
  /** Since this server started, over all models. */
  saved: number;
  restored: number;
  /** Times the store was switched to another model. */
  switches: number;
  /** Fingerprint of the model the store currently follows (null before the first load). */
  model: string | null;
}

export interface PrefixPersistence {
  /** Entries imported into the engine so far (start, restarts, switches). */
  readonly restored: number;
  /**
   * Copies new engine entries of the loaded model to disk now (serialized with other calls).
   * `why` only labels the log line (e.g. 'switch', 'idle'); resolves with the number saved.
   */
  flush(why?: string): Promise<number>;
  /** Resolves once queued work (a store switch and restore after a load, a flush) has finished. */
  settled(): Promise<void>;
  /** Schedules a flush once the server has been idle for `idleMs`. */
  noteActivity(): void;
  close(timeoutMs?: number): Promise<void>;
  /** Corruptions found, by reason, cumulative over every model's store since start. */
  corruptions(): Record<string, number>;
  stats(): PrefixPersistenceStats;
}

/** A store file name salted with the compat (EntryStore passes `${kind}\0${key}` to the hash). */
function saltedHash(compat: { model: string; engine: string }): (keyMaterial: string) => string {
  const salt = `${compat.model}\0${compat.engine}\0`;
  return (keyMaterial) => createHash('sha256').update(salt + keyMaterial).digest('hex');
}

/**
 * Entries written before names were salted (one name per token list, whatever the model) are
 * renamed to their salted name, so an upgrade does not start cold. Header + metadata reads only;
 * files of other models, damaged files and name clashes are left to the store's own scan.
 */
async function adoptUnsaltedEntries(dir: string, compat: { model: string; engine: string }): Promise<number> {
  const hash = saltedHash(compat);
  const digest = compatDigest(compat);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(ENTRY_EXT));
  } catch {
    return 0; // no directory yet: nothing to adopt
  }
  let n = 0;
  for (const name of names) {
    const r = await readEntry(path.join(dir, name), { kind: 'prefix-kv', compatDigest: digest }, undefined, 'structure').catch(() => null);
    if (!r?.ok) continue;
    const want = hash(`prefix-kv\0${r.entry.meta.key}`).slice(0, 40) + ENTRY_EXT;
    if (want === name || (await access(path.join(dir, want)).then(() => true, () => false))) continue;
    if (await rename(path.join(dir, name), path.join(dir, want)).then(() => true, () => false)) n++;
  }
  return n;
}

interface OpenStore {
  model: string;
  engine: string;
  store: PrefixStore;
  corruptions: () => Record<string, number>;
}

export interface PrefixPersistenceOptions {
  engine: PrefixEngine;
  dataDir: string;
  /** Engine version of a loaded model's KV (e.g. `mlx-bar-engine-1-float32`): part of the compat. */
  engineVersion: string | ((model: Pick<ModelInfo, 'fingerprint' | 'computeDtype'>) => string);
  maxBytes: number;
  maxEntries: number;
  health?: CacheHealth;
  log: (line: string) => void;
  idleMs?: number;
  minTokens?: number;
  /** Bound on draining the outgoing model's writes at a store switch. */
  switchFlushMs?: number;
}

type Compat = { model: string; engine: string };

/** The store of the loaded model, its restore/save passes and the queue that serializes them. */
class Persistence implements PrefixPersistence {
  private current: OpenStore | null = null;
  /** Corruption counts of stores closed at a switch (each open gets a fresh quarantine counter). */
  private readonly pastCorruptions: Record<string, number> = {};
  private restoredCount = 0;
  private saved = 0;
  private switches = 0;
  private closed = false;
  private readonly adopted = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private readonly engine: PrefixEngine & Required<Pick<PrefixEngine, 'exportPrefixEntries' | 'importPrefixEntry'>>;

  constructor(private readonly opts: PrefixPersistenceOptions) {
    this.engine = opts.engine as Persistence['engine'];
  }

  get restored(): number {
    return this.restoredCount;
  }

  private versionOf(model: Pick<ModelInfo, 'fingerprint' | 'computeDtype'>): string {
    const v = this.opts.engineVersion;
    return typeof v === 'function' ? v(model) : v;
  }

  /** The loaded model's compat, when the engine is ready. */
  private loaded(): Compat | null {
    const { engine } = this;
    return engine.state === 'ready' && engine.model ? { model: engine.model.fingerprint, engine: this.versionOf(engine.model) } : null;
  }

  private isCurrent(c: Compat | null): boolean {
    return !!c && !!this.current && c.model === this.current.model && c.engine === this.current.engine;
  }

  /** Closes the current store (drains its writes) and opens the one for `compat`. */
  private async openFor(compat: Compat): Promise<boolean> {
    const { opts } = this;
    if (this.current) {
      const old = this.current;
      this.current = null; // from here nothing is written under the outgoing model's compat
      await old.store.flush(opts.switchFlushMs ?? 10_000).catch(() => false);
      for (const [reason, n] of Object.entries(old.corruptions())) this.pastCorruptions[reason] = (this.pastCorruptions[reason] ?? 0) + n;
      this.switches++;
    }
    try {
      const adoptKey = `${compat.model}\0${compat.engine}`;
      if (!this.adopted.has(adoptKey)) {
        this.adopted.add(adoptKey); // once per model and server run: later files are written salted
        // (the prefix store's directory, as laid out by main/caches/index.ts)
        const renamed = await adoptUnsaltedEntries(path.join(opts.dataDir, 'cache', 'prefix-kv'), compat);
        if (renamed) opts.log(`prefix cache: adopted ${renamed} stored prefix(es) of an earlier version`);
      }
      const opened = await openPrefixStore(opts.dataDir, compat, opts.health, {
        prefix: { maxBytes: opts.maxBytes, maxEntries: opts.maxEntries },
        fileNameHash: saltedHash(compat),
      });
      this.current = { ...compat, store: opened.prefix, corruptions: () => opened.quarantine.corruptions() };
      if (opened.opened.corrupt) opts.log(`prefix cache: quarantined ${opened.opened.corrupt} corrupt entr(ies) when opening the store`);
      if (opened.opened.notOurs) opts.log(`prefix cache: skipped ${opened.opened.notOurs} file(s) named like entries that are not regular files (left alone)`);
      return true;
    } catch (err) {
      opts.log(`prefix cache: persistence unavailable for this model (${sanitizeMessage(err)})`);
      return false;
    }
  }

  // Warm start: most recently used first, within the budget the engine was given. Run whenever the
  // engine comes back with a model, since a new engine process starts with an empty prefix cache.
  readonly restore = async (): Promise<number> => {
    const compat = this.loaded();
    if (!compat) return 0;
    if (!this.isCurrent(compat) && !(await this.openFor(compat))) return 0;
    const store = this.current!.store;
    let n = 0;
    let budget = this.opts.maxBytes;
    for (const info of store.list().slice(0, this.opts.maxEntries)) {
      if (info.bytes > budget) continue;
      const entry = await store.load(info.tokens);
      if (!entry) continue; // damaged → quarantined by the store; a miss
      // The engine may have switched model while the file was read: never import across models.
      // (importPrefixEntry addresses the engine process synchronously, right after this check.)
      if (!this.isCurrent(this.loaded())) break;
      try {
        if (await this.engine.importPrefixEntry(entry as unknown as PrefixKvSnapshot)) {
          n++;
          budget -= info.bytes;
        }
      } catch (err) {
        this.opts.log(`prefix cache: stored entry not usable (${sanitizeMessage(err)})`);
      }
    }
    if (n) this.opts.log(`prefix cache: restored ${n} prompt prefix(es) from disk`);
    this.restoredCount += n;
    return n;
  };

  private async flushOnce(why?: string): Promise<number> {
    // Only the model the open store belongs to: another model's KV is never saved under its compat.
    if (!this.current || !this.isCurrent(this.loaded())) return 0;
    const store = this.current.store;
    let n = 0;
    try {
      const entries = await this.engine.exportPrefixEntries({ minTokens: this.opts.minTokens ?? MIN_PERSISTED_TOKENS, onlyNew: true });
      for (const e of entries) if (await store.save(e)) n++;
    } catch (err) {
      this.opts.log(`prefix cache: save skipped (${sanitizeMessage(err)})`);
    }
    if (n && why) this.opts.log(`prefix cache: saved ${n} prompt prefix(es) (${why})`);
    this.saved += n;
    return n;
  }

  /** Runs `fn` after everything queued before it (a switch's restore, a flush), whatever their outcome. */
  enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private queuedFlush(why?: string): Promise<number> {
    return this.enqueue(() => this.flushOnce(why));
  }

  readonly onState = (state: string): void => {
    if (state === 'ready' && !this.closed) void this.enqueue(this.restore);
  };

  flush(why?: string): Promise<number> {
    return this.closed ? Promise.resolve(0) : this.queuedFlush(why);
  }

  settled(): Promise<void> {
    return this.chain.then(() => {});
  }

  noteActivity(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.queuedFlush(), this.opts.idleMs ?? 2000);
    this.timer.unref();
  }

  close(timeoutMs = 10_000): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.engine.off?.('state', this.onState);
      if (this.timer) clearTimeout(this.timer);
      let deadlineTimer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((r) => (deadlineTimer = setTimeout(r, timeoutMs)));
      await Promise.race([this.queuedFlush('shutdown').then(() => this.current?.store.flush(timeoutMs)), deadline]);
      clearTimeout(deadlineTimer);
    })();
    return this.closing;
  }

  corruptions(): Record<string, number> {
    const total = { ...this.pastCorruptions };
    for (const [reason, n] of Object.entries(this.current?.corruptions() ?? {})) total[reason] = (total[reason] ?? 0) + n;
    return total;
  }

  stats(): PrefixPersistenceStats {
    const s = (this.current?.store.stats() ?? {}) as { entries?: number; bytes?: number };
    return { entries: s.entries ?? 0, bytes: s.bytes ?? 0, saved: this.saved, restored: this.restoredCount, switches: this.switches, model: this.current?.model ?? null };
  }
}

/** Restores the loaded model's stored prefixes now and follows the engine from then on; null when the engine cannot export. */
export async function startPrefixPersistence(opts: PrefixPersistenceOptions): Promise<PrefixPersistence | null> {
  if (!opts.engine.exportPrefixEntries || !opts.engine.importPrefixEntry) return null;
  const p = new Persistence(opts);
  await p.restore();
  opts.engine.on?.('state', p.onState);
  return p;
}
