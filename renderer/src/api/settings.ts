// Reading and saving settings: through the Electron bridge in the app window; over HTTP
// (GET/PUT /v1/settings) when the page is served by a headless `mlx-bar serve` that offers it;
// otherwise read-only (the page still validates edits and shows the schema's defaults).
// Whether the server offers the settings API is read from /health (`settings_api: true`, public,
// present on every server), so servers without the route are never probed (no 404 in the console).
import type { SaveResult, SettingsIssue } from '../../../preload/api.ts';
import { bridge } from './feed.ts';

export interface SettingsLoad {
  values: Record<string, unknown>;
  issues: SettingsIssue[];
  /** HTTP only: setting path → the flag/env variable overriding the file in this launch ("--port", "MLXBAR_PORT"). */
  overrides?: Record<string, string>;
  /** HTTP only: the server never sends the key back; `values.apiKey` is "" and this says whether one is stored. */
  apiKeySet?: boolean;
  /** HTTP only: saved settings that take effect at the next start of `mlx-bar serve`. */
  restartRequired?: string[];
}

export interface SettingsSaveResult extends SaveResult {
  /** HTTP only: the saved settings that need a restart of `mlx-bar serve`. */
  restartRequired?: string[];
  /** HTTP only: the saved settings the server applied at once (e.g. maxConcurrent). */
  applied?: string[];
}

export interface SettingsBackend {
  kind: 'bridge' | 'http' | 'readonly';
  load(): Promise<SettingsLoad | null>;
  /** `clearApiKey` (HTTP): remove the stored key; otherwise an empty apiKey keeps the stored one. */
  save(values: Record<string, unknown>, opts?: { clearApiKey?: boolean }): Promise<SettingsSaveResult>;
}

const READONLY_SAVE = async (): Promise<SettingsSaveResult> => ({ ok: false, issues: [{ path: '', message: 'Settings cannot be saved from the browser on this server' }] });

/** Does the server that serves this page offer GET/PUT /v1/settings? */
async function serverOffersSettings(): Promise<boolean> {
  try {
    const res = await fetch('/health', { headers: { accept: 'application/json' }, cache: 'no-store' });
    // A 503 (engine restarting) still carries the fields.
    const body = (await res.json().catch(() => null)) as { settings_api?: unknown } | null;
    return body?.settings_api === true;
  } catch {
    return false;
  }
}

export function settingsBackend(apiKey: string | null): SettingsBackend {
  const b = bridge();
  if (b) {
    return { kind: 'bridge', load: () => b.getSettings(), save: (v) => b.saveSettings(v) };
  }
  const headers: Record<string, string> = { accept: 'application/json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  let offered: Promise<boolean> | null = null;
  const backend: SettingsBackend = {
    // Decided by the first load().
    kind: 'readonly',
    async load() {
      offered ??= serverOffersSettings();
      if (!(await offered)) {
        backend.kind = 'readonly';
        return null;
      }
      try {
        const res = await fetch('/v1/settings', { headers, cache: 'no-store' });
        if (!res.ok) { backend.kind = 'readonly'; return null; }
        const body = (await res.json()) as Partial<SettingsLoad>;
        if (!body.values || typeof body.values !== 'object') { backend.kind = 'readonly'; return null; }
        backend.kind = 'http';
        return {
          values: body.values,
          issues: Array.isArray(body.issues) ? body.issues : [],
          overrides: body.overrides && typeof body.overrides === 'object' ? body.overrides : {},
          apiKeySet: body.apiKeySet === true,
          restartRequired: Array.isArray(body.restartRequired) ? body.restartRequired : [],
        };
      } catch {
        backend.kind = 'readonly';
        return null;
      }
    },
    async save(values, opts = {}) {
      if (backend.kind !== 'http') return READONLY_SAVE();
      const res = await fetch('/v1/settings', {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ values, ...(opts.clearApiKey ? { clearApiKey: true } : {}) }),
      });
      const body = (await res.json().catch(() => ({}))) as { issues?: SettingsIssue[]; restartRequired?: string[]; applied?: string[]; error?: { message?: string; param?: string | null } };
      if (res.ok) {
        return {
          ok: true,
          issues: [],
          restartRequired: Array.isArray(body.restartRequired) ? body.restartRequired : [],
          applied: Array.isArray(body.applied) ? body.applied : [],
        };
      }
      if (Array.isArray(body.issues) && body.issues.length) return { ok: false, issues: body.issues };
      const param = body.error?.param;
      return { ok: false, issues: [{ path: param ? `/${param.split('.').join('/')}` : '', message: body.error?.message ?? `HTTP ${res.status}` }] };
    },
  };
  return backend;
}
