// The desktop app's state, without Electron: whether the server runs, on which endpoint, with which
// model, what the settings problems are, and the latest metrics snapshot (read from the running
// server's own GET /v1/metrics once a second, so the window and tray show exactly what the API
// reports). main/shell/index.ts renders this state into the tray and pushes it to the window.
// The model library for the tray's switcher comes from the running server's GET /v1/models (re-read
// on start, after a switch and when the snapshot's model changes, not every second), or from the
// models folder on disk while the server is stopped; switching goes through POST /v1/models/load.
import { EventEmitter } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { MetricsSnapshot } from '../common/metrics-types.ts';
import type { LibraryEntry, ListOptions } from '../library/library.ts';
import type { Settings } from '../settings/schema.ts';
import type { AppModel, AppState, SaveResult, SettingsIssue, SettingsPayload } from '../../preload/api.ts';
import type { SettingsService } from '../settings/service.ts';
import { loadedIdOf, MAX_MODEL_ID_LENGTH, modelsFromDisk, modelsFromRows, quoteId } from './app-models.ts';
import { fetchMetrics, fetchModelRows, loadModel, type CoreApi, type LoadResult } from './core-api.ts';

/** A started engine + server, as the shell needs it. */
export interface CoreHandle {
  /** Base URL without /v1, e.g. http://127.0.0.1:8080 */
  url: string;
  model: string | null;
  stop(): Promise<void>;
}

export type StartCore = (settings: Settings) => Promise<CoreHandle>;

export interface ControllerOptions {
  settings: SettingsService;
  startCore: StartCore;
  /** Turns a startup error into one readable line (no paths). */
  describeError?: (err: unknown, settings: Settings) => string;
  pollMs?: number;
  fetchImpl?: typeof fetch;
  startAtLogin?: { get(): boolean; set(on: boolean): void };
  /** Longest a model switch may take over HTTP (a real 7B loads in ~10–60 s). Default 10 minutes. */
  switchTimeoutMs?: number;
}

export class AppController extends EventEmitter {
  private core: CoreHandle | null = null;
  private poller: ReturnType<typeof setInterval> | null = null;
  private snap: MetricsSnapshot | null = null;
  private st: AppState;
  private op: Promise<unknown> = Promise.resolve();
  /** The switch in flight (single-flight: further clicks get this same promise). */
  private switching: Promise<AppState> | null = null;
  /** Aborted by stop(): quitting must not wait for a long model load. */
  private switchAbort: AbortController | null = null;
  private refreshing: Promise<AppModel[]> | null = null;
  private refreshAgain = false;
  /** The snapshot's model id last seen; a change (a client's request switched) re-reads the list. */
  private lastSnapModel: string | null | undefined = undefined;
  /** Model folders the server was started with (listed by it next to <dataDir>/models). */
  private readonly startedDirs = new Set<string>();
  /** What the last GET /v1/models said is loaded (null: nothing, e.g. after a failed engine load). */
  private serverLoadedId: string | null = null;

  constructor(private readonly opts: ControllerOptions) {
    super();
    const s = opts.settings.read();
    this.st = {
      server: 'stopped',
      endpoint: null,
      apiKey: s.settings?.apiKey ? s.settings.apiKey : null,
      model: s.settings?.model || null,
      error: null,
      settingsIssues: s.issues,
      startAtLogin: opts.startAtLogin?.get() ?? s.settings?.startAtLogin ?? false,
      models: [],
      switchingTo: null,
      modelError: null,
    };
  }

  get state(): AppState {
    return this.st;
  }

  get snapshot(): MetricsSnapshot | null {
    return this.snap;
  }

  private set(patch: Partial<AppState>): AppState {
    this.st = { ...this.st, ...patch };
    this.emit('state', this.st);
    return this.st;
  }

  /** Serializes start/stop so a double click cannot start two servers. */
  private queue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.op.then(fn, fn);
    this.op = next.catch(() => {});
    return next;
  }

  start(): Promise<AppState> {
    return this.queue(() => this.startNow());
  }

  /** The body of start(); only ever runs inside queue(). */
  private async startNow(): Promise<AppState> {
    if (this.core) return this.st;
    const s = this.opts.settings.read();
    if (!s.settings) {
      return this.set({ server: 'error', error: 'The settings are invalid; fix them in Settings to start the server.', settingsIssues: s.issues });
    }
    this.set({ server: 'starting', error: null, modelError: null, settingsIssues: [], apiKey: s.settings.apiKey || null, model: s.settings.model || null });
    try {
      const core = await this.opts.startCore(s.settings);
      this.core = core;
      const dir = this.folderOf(s.settings.model);
      if (dir) this.startedDirs.add(dir);
      this.lastSnapModel = undefined;
      this.set({ server: 'running', endpoint: `${core.url}/v1`, model: core.model ?? s.settings.model ?? null, error: null });
      this.startPolling();
      void this.refreshModels();
    } catch (err) {
      const msg = this.opts.describeError ? this.opts.describeError(err, s.settings) : sanitizeMessage(err);
      this.set({ server: 'error', endpoint: null, error: sanitizeMessage(msg) });
    }
    return this.st;
  }

  stop(): Promise<AppState> {
    this.switchAbort?.abort();
    return this.queue(async () => {
      const core = this.core;
      if (!core) return this.set({ server: this.st.server === 'error' ? 'error' : 'stopped' });
      this.set({ server: 'stopping' });
      this.stopPolling();
      try {
        await core.stop();
      } catch (err) {
        this.set({ error: sanitizeMessage(err) });
      }
      this.core = null;
      this.snap = null;
      this.lastSnapModel = undefined;
      this.set({ server: 'stopped', endpoint: null });
      void this.refreshModels();
      return this.st;
    });
  }

  toggle(): Promise<AppState> {
    return this.core ? this.stop() : this.start();
  }

  getSettings(): SettingsPayload {
    const s = this.opts.settings.read();
    return { values: s.values, issues: s.issues };
  }

  validateSettings(values: Record<string, unknown>): SettingsIssue[] {
    return this.opts.settings.validate(values);
  }

  /** Saves valid settings; a running server is restarted so they take effect. */
  async saveSettings(values: Record<string, unknown>): Promise<SaveResult> {
    // The user's save: the schema and the `model` check (a model folder or a library id).
    const r = await this.opts.settings.saveChecked(values);
    if (!r.ok) return r;
    const s = this.opts.settings.read();
    if (s.settings && this.opts.startAtLogin && s.settings.startAtLogin !== this.opts.startAtLogin.get()) {
      this.opts.startAtLogin.set(s.settings.startAtLogin);
    }
    const wasRunning = !!this.core;
    this.set({
      settingsIssues: [],
      apiKey: s.settings?.apiKey || null,
      model: s.settings?.model || null,
      startAtLogin: this.opts.startAtLogin?.get() ?? s.settings?.startAtLogin ?? false,
      error: null,
      ...(this.st.server === 'error' ? { server: 'stopped' as const } : {}),
    });
    if (wasRunning) {
      await this.stop();
      await this.start();
    }
    return r;
  }

  setStartAtLogin(on: boolean): AppState {
    this.opts.startAtLogin?.set(on);
    const s = this.opts.settings.read();
    if (s.settings) this.opts.settings.save({ ...s.values, startAtLogin: on });
    return this.set({ startAtLogin: on });
  }

  // ---------------------------------------------------------------- the model library + switching

  /** The running core's HTTP API (its key: the one the state shows). */
  private api(core: CoreHandle): CoreApi {
    return { url: core.url, apiKey: this.st.apiKey, fetchImpl: this.opts.fetchImpl };
  }

  /** settings.model as an existing folder (absolute), or null when it is a library id / empty. */
  private folderOf(model: string | undefined | null): string | null {
    if (!model) return null;
    try {
      return existsSync(model) && statSync(model).isDirectory() ? path.resolve(model) : null;
    } catch {
      return null;
    }
  }

  /** The same library the server lists: <dataDir>/models plus the folders it was started with. */
  private libraryOptions(s: Settings): ListOptions {
    const extra = new Set(this.startedDirs);
    const dir = this.folderOf(s.model);
    if (dir) extra.add(dir);
    return { extraDirs: [...extra], contextTokens: s.contextLength };
  }

  private async diskLibrary(): Promise<{ entries: LibraryEntry[]; settings: Settings | null }> {
    const snap = this.opts.settings.read();
    const s = snap.settings;
    // Invalid settings: still show what is in the models folder (same data dir as config.json).
    const dataDir = s?.dataDir ?? path.dirname(this.opts.settings.file);
    const { listModels } = await import('../library/library.ts');
    const entries = await listModels(dataDir, s ? this.libraryOptions(s) : {});
    return { entries, settings: s };
  }

  private async readDiskModels(): Promise<AppModel[]> {
    const { entries, settings } = await this.diskLibrary();
    const model = settings?.model ?? '';
    return modelsFromDisk(entries, model, this.folderOf(model), settings?.remotes ?? []);
  }

  private async readServerModels(core: CoreHandle): Promise<AppModel[] | null> {
    const rows = await fetchModelRows(this.api(core));
    if (!rows) return null;
    if (this.core === core) this.serverLoadedId = loadedIdOf(rows);
    return modelsFromRows(rows, this.snap?.model.id ?? this.st.model);
  }

  private async readModels(): Promise<AppModel[]> {
    const core = this.core;
    let models: AppModel[] | null;
    try {
      models = core ? await this.readServerModels(core) : await this.readDiskModels();
    } catch {
      models = null; // an unreadable models folder: keep what was shown
    }
    // The server started or stopped meanwhile: this answer describes the old one.
    if (models && this.core === core) {
      const current = models.find((m) => m.current);
      // The model by its library id (settings.model may be a folder path).
      this.set({ models, ...(current ? { model: current.id } : {}) });
    }
    return this.st.models;
  }

  /**
   * Re-reads the model list into the state: the running server's GET /v1/models, or the models
   * folder while stopped. Single-flight with one trailing re-read, so a change that happens during
   * a read is not lost and callers get the list as it is after their call.
   */
  refreshModels(): Promise<AppModel[]> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    const run = async (): Promise<AppModel[]> => {
      let out: AppModel[];
      do {
        this.refreshAgain = false;
        out = await this.readModels();
      } while (this.refreshAgain);
      return out;
    };
    const p = run().finally(() => {
      this.refreshing = null;
    });
    this.refreshing = p;
    return p;
  }

  /**
   * Switches the served model to the library model `id` (what a tray click does). Running: POST
   * /v1/models/load on the running server, then settings.model is saved WITHOUT a restart.
   * Stopped: settings.model is saved and the server started. Single-flight: while a switch is in
   * flight, further calls return that same switch. A failure becomes `modelError` (sanitized) and
   * the previous model stays (running) or stays the saved choice (stopped).
   */
  switchModel(id: string): Promise<AppState> {
    if (this.switching) return this.switching;
    if (typeof id !== 'string' || !id || id.length > MAX_MODEL_ID_LENGTH) {
      return Promise.resolve(this.set({ modelError: 'Unknown model' }));
    }
    const p = this.queue(() => this.switchNow(id)).finally(() => {
      this.switching = null;
    });
    this.switching = p;
    return p;
  }

  /** The body of switchModel(); only ever runs inside queue(). */
  private async switchNow(id: string): Promise<AppState> {
    this.set({ switchingTo: id, modelError: null });
    this.switchAbort = new AbortController();
    try {
      return this.core ? await this.switchRunning(this.core, id) : await this.switchStopped(id);
    } catch (err) {
      return this.set({ modelError: sanitizeMessage(err) });
    } finally {
      this.switchAbort = null;
      this.set({ switchingTo: null });
      await this.refreshModels();
    }
  }

  private async switchRunning(core: CoreHandle, id: string): Promise<AppState> {
    const before = await this.refreshModels();
    if (!before.some((m) => m.id === id)) return this.set({ modelError: `The model ${quoteId(id)} is not in the library` });
    const previous = before.find((m) => m.current)?.id ?? null;
    if (previous === id) return this.st;
    const r = await this.loadOnServer(core, id);
    if (r.ok) {
      const saved = await this.saveModelChoice(id);
      return this.set({ model: id, modelError: saved ? null : 'Switched, but the choice could not be saved in the settings' });
    }
    this.set({ modelError: r.message });
    if (this.switchAbort?.signal.aborted) return this.st;
    // A refusal (fit, tokenizer) keeps the old model loaded; an engine failure can leave nothing
    // loaded (the old model is unloaded before the new one starts): load the previous one again.
    await this.refreshModels();
    if (previous && this.serverLoadedId === null) {
      this.set({ switchingTo: previous });
      await this.loadOnServer(core, previous);
    }
    return this.st;
  }

  private async switchStopped(id: string): Promise<AppState> {
    const s = this.opts.settings.read();
    if (!s.settings) return this.set({ modelError: 'The settings are invalid; fix them in Settings first' });
    const { entries } = await this.diskLibrary();
    const entry = entries.find((e) => e.id === id);
    if (!entry) return this.set({ modelError: `The model ${quoteId(id)} is not in the library` });
    // Same refusal the server would give at start, without spending seconds on an engine.
    if (!entry.fitsInMemory.fits) return this.set({ modelError: sanitizeMessage(`Model ${quoteId(id)} was not loaded. ${entry.fitsInMemory.reason}.`) });
    const previous = s.values.model;
    const saved = this.opts.settings.save({ ...s.values, model: entry.dir });
    if (!saved.ok) return this.set({ modelError: 'The model choice could not be saved in the settings' });
    this.set({ model: entry.id });
    const st = await this.startNow();
    if (st.server === 'running') return st;
    // The chosen model does not serve: the next start must not try it again.
    const again = this.opts.settings.read();
    if (again.settings) this.opts.settings.save({ ...again.values, model: previous });
    return this.set({ modelError: st.error, model: typeof previous === 'string' && previous ? previous : null });
  }

  /** POST /v1/models/load on the running server (cancelled by stop()). */
  private loadOnServer(core: CoreHandle, id: string): Promise<LoadResult> {
    return loadModel(this.api(core), id, { timeoutMs: this.opts.switchTimeoutMs ?? 600_000, signal: this.switchAbort?.signal });
  }

  /**
   * Saves settings.model only, without restarting the server (the switch already happened over
   * HTTP). The folder is stored (what startCoreFromSettings starts from), found by id in the library.
   */
  private async saveModelChoice(id: string): Promise<boolean> {
    const s = this.opts.settings.read();
    if (!s.settings) return false;
    const { entries } = await this.diskLibrary();
    const entry = entries.find((e) => e.id === id);
    if (!entry) return false;
    return this.opts.settings.save({ ...s.values, model: entry.dir }).ok;
  }

  private startPolling(): void {
    this.stopPolling();
    const ms = this.opts.pollMs ?? 1000;
    const tick = () => void this.pollOnce();
    tick();
    this.poller = setInterval(tick, ms);
    this.poller.unref?.();
  }

  private stopPolling(): void {
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
  }

  async pollOnce(): Promise<MetricsSnapshot | null> {
    const core = this.core;
    if (!core) return null;
    const body = await fetchMetrics(this.api(core));
    if (!body || this.core !== core) return null;
    try {
      this.snap = body;
      this.emit('metrics', body);
      const modelId = body.model?.id ?? null;
      if (modelId !== this.lastSnapModel) {
        // The served model changed (a switch, a client's request, an idle unload): re-read the list.
        this.lastSnapModel = modelId;
        void this.refreshModels();
      }
      return body;
    } catch {
      return null;
    }
  }

  async dispose(): Promise<void> {
    this.stopPolling();
    await this.stop();
  }
}
