// Reading and saving settings: through the Electron bridge in the app window, over HTTP when the
// page is served by the headless server and the server exposes /v1/settings, otherwise read-only
// (the page still validates edits and shows the schema's defaults).
import type { SaveResult, SettingsIssue } from '../../../preload/api.ts';
import { bridge } from './feed.ts';

export interface SettingsBackend {
  kind: 'bridge' | 'http' | 'readonly';
  load(): Promise<{ values: Record<string, unknown>; issues: SettingsIssue[] } | null>;
  save(values: Record<string, unknown>): Promise<SaveResult>;
}

/**
 * The headless server does not expose settings over HTTP (it has no GET/PUT /v1/settings route:
 * settings come from flags, env and config.json there), so in a browser the page is read-only.
 * Probing for the route would log a 404 console error on every visit, so it is not probed; flip
 * this when the server gains the route.
 */
export const SETTINGS_OVER_HTTP = false;

export function settingsBackend(apiKey: string | null): SettingsBackend {
  const b = bridge();
  if (b) {
    return { kind: 'bridge', load: () => b.getSettings(), save: (v) => b.saveSettings(v) };
  }
  if (!SETTINGS_OVER_HTTP) {
    return { kind: 'readonly', load: async () => null, save: async () => ({ ok: false, issues: [{ path: '', message: 'Settings cannot be saved from the browser' }] }) };
  }
  const headers: Record<string, string> = { accept: 'application/json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const backend: SettingsBackend = {
    kind: 'http',
    async load() {
      try {
        const res = await fetch('/v1/settings', { headers, cache: 'no-store' });
        if (!res.ok) { backend.kind = 'readonly'; return null; }
        const body = (await res.json()) as { values?: Record<string, unknown>; issues?: SettingsIssue[] } & Record<string, unknown>;
        const values = body.values && typeof body.values === 'object' ? body.values : body;
        return { values, issues: Array.isArray(body.issues) ? body.issues : [] };
      } catch {
        backend.kind = 'readonly';
        return null;
      }
    },
    async save(values) {
      const res = await fetch('/v1/settings', { method: 'PUT', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(values) });
      const body = (await res.json().catch(() => ({}))) as { issues?: SettingsIssue[]; error?: { message?: string; param?: string } };
      if (res.ok) return { ok: true, issues: [] };
      if (Array.isArray(body.issues)) return { ok: false, issues: body.issues };
      return { ok: false, issues: [{ path: body.error?.param ? `/${body.error.param}` : '', message: body.error?.message ?? `HTTP ${res.status}` }] };
    },
  };
  return backend;
}
