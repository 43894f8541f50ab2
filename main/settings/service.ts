// Settings as the settings page edits them — the desktop app and the headless /v1/settings routes:
//  - read the stored file WITHOUT repairing it, so an invalid file is shown to the user as it is,
//    field by field, instead of being silently replaced by defaults;
//  - validate edits against THE settings schema (main/settings/schema.ts) with ajv, the same
//    schema and the same ajv that electron-store/conf use, and that the renderer compiles at build;
//  - save only a valid document, through a writer the shell provides (electron-store there, conf
//    in tests); a bad file is moved aside first so the store can open.
// The server starts only when `current().settings` is non-null (a valid configuration).
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_SETTINGS, type Settings, type StoredSettings } from './schema.ts';
import type { SaveResult, SettingsIssue, SettingsPayload } from '../../preload/api.ts';
import { validateSettingsDocument } from './validation.ts';
import { SETTINGS_FILE } from './load.ts';

export { validateSettingsDocument };

const MAX_FILE_BYTES = 1024 * 1024;

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return !!x && typeof x === 'object' && !Array.isArray(x);
}

/** Defaults overlaid with the file's values (one level deep for the grouped settings). */
export function withDefaults(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(DEFAULT_SETTINGS) as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(values)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype' || k === '__internal__') continue;
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? { ...(out[k] as Record<string, unknown>), ...v } : v;
  }
  return out;
}

export interface SettingsSnapshot extends SettingsPayload {
  /** Valid settings to start the server with; null while the stored settings are invalid. */
  settings: Settings | null;
  file: 'missing' | 'ok' | 'invalid' | 'corrupt';
}

/**
 * Checks a `model` value as what it is (a model folder that exists and is a model this app runs, or
 * the id of a model in the library): null when acceptable, else a short reason that names no path
 * beyond the value itself. It needs the library and the engine's family registry, which sit above
 * this module: the composition root (main/core/model-setting.ts) passes it in.
 */
export type ModelValueCheck = (value: string) => Promise<string | null>;

export interface SettingsServiceOptions {
  dataDir: string;
  /** Persists a valid document (electron-store in the app, conf in tests). */
  write: (values: StoredSettings) => void;
  /** The `model` check (see ModelValueCheck); without it only the schema is checked. */
  checkModel?: ModelValueCheck;
}

export class SettingsService {
  constructor(private readonly opts: SettingsServiceOptions) {}

  get file(): string {
    return path.join(this.opts.dataDir, SETTINGS_FILE);
  }

  read(): SettingsSnapshot {
    let text: string;
    try {
      const st = fs.statSync(this.file);
      if (st.size > MAX_FILE_BYTES) {
        return { values: withDefaults({}), issues: [{ path: '', message: 'config.json is larger than 1 MB; it was not read' }], settings: null, file: 'corrupt' };
      }
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        const values = withDefaults({});
        return { values, issues: [], settings: { ...(values as unknown as StoredSettings), dataDir: this.opts.dataDir }, file: 'missing' };
      }
      return { values: withDefaults({}), issues: [{ path: '', message: 'config.json could not be read' }], settings: null, file: 'corrupt' };
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return { values: withDefaults({}), issues: [{ path: '', message: 'config.json is not valid JSON; saving writes a fresh file (the old one is kept aside)' }], settings: null, file: 'corrupt' };
    }
    if (!isPlainObject(raw)) {
      return { values: withDefaults({}), issues: [{ path: '', message: 'config.json must contain a JSON object' }], settings: null, file: 'corrupt' };
    }
    const values = withDefaults(raw);
    const issues = validateSettingsDocument(values);
    if (issues.length) return { values, issues, settings: null, file: 'invalid' };
    return { values, issues: [], settings: { ...(values as unknown as StoredSettings), dataDir: this.opts.dataDir }, file: 'ok' };
  }

  validate(values: Record<string, unknown>): SettingsIssue[] {
    return validateSettingsDocument(values);
  }

  /**
   * The `model` value checked as what it is (not only as a string): the issue for /model, or null.
   * Runs before a save that comes from the user (dashboard, settings page), so a value such as
   * "/etc", "../../etc/passwd" or "file:///etc" is refused instead of stopping the next launch.
   */
  async checkModel(values: Record<string, unknown>): Promise<SettingsIssue | null> {
    const model = values.model;
    if (typeof model !== 'string' || model === '' || !this.opts.checkModel) return null;
    let reason: string | null;
    try {
      reason = await this.opts.checkModel(model);
    } catch {
      reason = 'could not be checked';
    }
    return reason ? { path: '/model', message: reason } : null;
  }

  /** save() after the schema and the `model` check: what a user's save goes through. */
  async saveChecked(values: Record<string, unknown>): Promise<SaveResult> {
    const full = withDefaults(values);
    const issues = validateSettingsDocument(full);
    const model = await this.checkModel(full);
    if (model && !issues.some((i) => i.path === '/model')) issues.push(model);
    if (issues.length) return { ok: false, issues };
    return this.save(values);
  }

  save(values: Record<string, unknown>): SaveResult {
    const full = withDefaults(values);
    const issues = validateSettingsDocument(full);
    if (issues.length) return { ok: false, issues };
    const current = this.read();
    if (current.file === 'invalid' || current.file === 'corrupt') {
      // The store validates the whole file when it opens; move the bad one aside (kept for the user).
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      try {
        fs.renameSync(this.file, path.join(this.opts.dataDir, `${SETTINGS_FILE}.invalid-${stamp}`));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, issues: [{ path: '', message: 'the invalid config.json could not be moved aside' }] };
      }
    }
    fs.mkdirSync(this.opts.dataDir, { recursive: true });
    this.opts.write(full as unknown as StoredSettings);
    const after = this.read();
    return after.settings ? { ok: true, issues: [] } : { ok: false, issues: after.issues };
  }
}
