// The typed API the preload exposes to the renderer as `window.mlxBar`, and the IPC channel names
// behind it. Shared by preload (implements it), main/shell (handles the channels) and the renderer
// (consumes it when present). Types only + constants: no electron import, so all three can use it.
import type { MetricsSnapshot } from '../main/common/metrics-types.ts';

/** Every channel carries this prefix; main refuses anything else (VS Code's validatedIpcMain pattern). */
export const IPC_PREFIX = 'mlxbar:';

/** invoke/handle channels (renderer → main, with a reply). */
export const INVOKE_CHANNELS = {
  getSnapshot: 'mlxbar:get-snapshot',
  getAppState: 'mlxbar:get-app-state',
  getSettings: 'mlxbar:get-settings',
  validateSettings: 'mlxbar:validate-settings',
  saveSettings: 'mlxbar:save-settings',
  startServer: 'mlxbar:start-server',
  stopServer: 'mlxbar:stop-server',
  copyEndpoint: 'mlxbar:copy-endpoint',
  copyText: 'mlxbar:copy-text',
  openExternal: 'mlxbar:open-external',
} as const;

/** push channels (main → renderer). */
export const PUSH_CHANNELS = {
  metrics: 'mlxbar:metrics',
  appState: 'mlxbar:app-state',
} as const;

export type ServerStatus = 'stopped' | 'starting' | 'running' | 'stopping' | 'error';

/** A settings problem the user can act on: which setting (JSON pointer-ish path) and what is wrong. */
export interface SettingsIssue {
  /** e.g. "/port"; "" for the whole document. */
  path: string;
  message: string;
}

/** What the shell knows about itself, beyond the metrics snapshot. */
export interface AppState {
  server: ServerStatus;
  /** e.g. http://127.0.0.1:8080/v1 ; null while no valid config. */
  endpoint: string | null;
  /** The API key clients must send, or null when the server needs none. */
  apiKey: string | null;
  model: string | null;
  /** Sanitized error text when server === 'error'. */
  error: string | null;
  /** Non-empty when the stored settings are invalid: the server does not start until they are fixed. */
  settingsIssues: SettingsIssue[];
  startAtLogin: boolean;
  /**
   * The model library, for the tray's model switcher: from the running server's GET /v1/models, or
   * from the models folder on disk while the server is stopped. Never carries paths.
   */
  models: AppModel[];
  /** Library id a switch (tray) is loading right now; null otherwise. */
  switchingTo: string | null;
  /** Sanitized reason the last model switch failed (the previous model stays); null after a success. */
  modelError: string | null;
}

/** One library model as the app shows it (a public subset of a /v1/models row; no paths). */
export interface AppModel {
  /** Library id: what clients put in `model`. */
  id: string;
  sizeBytes: number;
  architecture: string | null;
  /** Whether the memory-fit estimate says it can be loaded, and why not when it cannot. */
  fits: boolean;
  fitReason: string | null;
  /** Needed bytes by the fit estimate (null when unknown). */
  needBytes: number | null;
  /** Context (tokens) it would serve: contextLength "auto" = its limit capped by memory (null when unknown). */
  contextTokens?: number | null;
  /** Running: the loaded model. Stopped: the model the server would start with (settings.model). */
  current: boolean;
  /**
   * A remote model (settings `remotes`): served by another machine behind the endpoint, never
   * loaded here. `health` from its upstream's circuit breaker (`unchecked` while the server is stopped).
   */
  remote?: { health: 'up' | 'down' | 'probing' | 'unchecked' };
}

export interface SettingsPayload {
  /** Current values (may be invalid: the user fixes them in the form). */
  values: Record<string, unknown>;
  issues: SettingsIssue[];
}

export interface SaveResult {
  ok: boolean;
  issues: SettingsIssue[];
}

export interface MlxBarApi {
  readonly version: 1;
  getSnapshot(): Promise<MetricsSnapshot | null>;
  /** Calls `listener` with every new snapshot (about once a second); returns an unsubscribe function. */
  subscribe(listener: (snapshot: MetricsSnapshot) => void): () => void;
  getAppState(): Promise<AppState>;
  onAppState(listener: (state: AppState) => void): () => void;
  getSettings(): Promise<SettingsPayload>;
  validateSettings(values: Record<string, unknown>): Promise<SettingsIssue[]>;
  saveSettings(values: Record<string, unknown>): Promise<SaveResult>;
  startServer(): Promise<AppState>;
  stopServer(): Promise<AppState>;
  copyEndpoint(): Promise<boolean>;
  copyText(text: string): Promise<boolean>;
  /** Opens an allowlisted https URL in the system browser; false when refused. */
  openExternal(url: string): Promise<boolean>;
}

/** The exact set of names on window.mlxBar (the preload test checks the surface against it). */
export const API_METHODS = [
  'getSnapshot',
  'subscribe',
  'getAppState',
  'onAppState',
  'getSettings',
  'validateSettings',
  'saveSettings',
  'startServer',
  'stopServer',
  'copyEndpoint',
  'copyText',
  'openExternal',
] as const satisfies readonly (keyof MlxBarApi)[];
