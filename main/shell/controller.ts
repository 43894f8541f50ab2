// The desktop app's state, without Electron: whether the server runs, on which endpoint, with which
// model, what the settings problems are, and the latest metrics snapshot (read from the running
// server's own GET /v1/metrics once a second, so the window and tray show exactly what the API
// reports). main/shell/index.ts renders this state into the tray and pushes it to the window.
import { EventEmitter } from 'node:events';
import { sanitizeMessage } from '../hardening/sanitize.ts';
import type { MetricsSnapshot } from '../hardening/metrics-types.ts';
import type { Settings } from '../settings/schema.ts';
import type { AppState, SaveResult, SettingsIssue, SettingsPayload } from '../../preload/api.ts';
import type { SettingsService } from './settings-service.ts';

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
}

export class AppController extends EventEmitter {
  private core: CoreHandle | null = null;
  private poller: ReturnType<typeof setInterval> | null = null;
  private snap: MetricsSnapshot | null = null;
  private st: AppState;
  private op: Promise<unknown> = Promise.resolve();

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
    return this.queue(async () => {
      if (this.core) return this.st;
      const s = this.opts.settings.read();
      if (!s.settings) {
        return this.set({ server: 'error', error: 'The settings are invalid; fix them in Settings to start the server.', settingsIssues: s.issues });
      }
      this.set({ server: 'starting', error: null, settingsIssues: [], apiKey: s.settings.apiKey || null, model: s.settings.model || null });
      try {
        const core = await this.opts.startCore(s.settings);
        this.core = core;
        this.set({ server: 'running', endpoint: `${core.url}/v1`, model: core.model ?? s.settings.model ?? null, error: null });
        this.startPolling();
      } catch (err) {
        const msg = this.opts.describeError ? this.opts.describeError(err, s.settings) : sanitizeMessage(err);
        this.set({ server: 'error', endpoint: null, error: sanitizeMessage(msg) });
      }
      return this.st;
    });
  }

  stop(): Promise<AppState> {
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
      return this.set({ server: 'stopped', endpoint: null });
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
    const r = this.opts.settings.save(values);
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
    const f = this.opts.fetchImpl ?? fetch;
    try {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (this.st.apiKey) headers.authorization = `Bearer ${this.st.apiKey}`;
      const res = await f(`${core.url}/v1/metrics`, { headers, signal: AbortSignal.timeout(5000) });
      if (!res.ok) return null;
      const body = (await res.json()) as MetricsSnapshot;
      if (this.core !== core || !body || typeof body !== 'object' || !body.degradation) return null;
      this.snap = body;
      this.emit('metrics', body);
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
