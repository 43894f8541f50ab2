// The settings file through `conf` 15 — the library electron-store 11 is built on — so the headless
// server and the Electron shell read and write the same <dataDir>/config.json with the same schema:
//   headless: new Conf({ cwd: dataDir, configName: 'config', schema: SETTINGS_SCHEMA, clearInvalidConfig: false })
//   Electron: new ElectronStore({ cwd: app.getPath('userData'), name: 'config', schema: SETTINGS_SCHEMA, clearInvalidConfig: false })
// conf validates the whole file on every read and throws on a schema violation, so always run
// loadSettings() (which repairs a bad file) before opening the store.
import Conf from 'conf';
import { ApiError } from '../common/errors.ts';
import { SETTINGS_SCHEMA, type StoredSettings } from './schema.ts';
import { loadSettings, validateSetting, LEAF_KEYS, storedPart, type LoadSettingsResult } from './load.ts';

export const CONF_OPTIONS = { configName: 'config', clearInvalidConfig: false } as const;

export function openSettingsStore(dataDir: string): Conf<StoredSettings> {
  return new Conf<StoredSettings>({
    cwd: dataDir,
    projectName: 'mlx-bar',
    ...CONF_OPTIONS,
    schema: SETTINGS_SCHEMA as never,
    // The file can hold the API key: owner-only, like the repair path's writeFileAtomicSync (conf's default is 0o666).
    configFileMode: 0o600,
  });
}

/**
 * Validates a patch of setting paths (`{ port: 9000, 'responseCache.enabled': true }`) and writes it
 * atomically through conf. Throws ApiError(invalid_value, param = the setting path) on the first
 * invalid value, writing nothing.
 */
export function saveSettings(dataDir: string, patch: Record<string, unknown>): LoadSettingsResult {
  for (const [key, value] of Object.entries(patch)) {
    if (!LEAF_KEYS.includes(key)) throw new ApiError('invalid_value', `Unknown setting "${key.slice(0, 64)}"`, { param: key.slice(0, 64) });
    const err = validateSetting(key, value);
    if (err) throw new ApiError('invalid_value', `${key} ${err}`, { param: key });
  }
  // Repair a bad file first so conf can open it; then write only the patched values on top of what
  // the file holds (not the env/flag overrides of this launch).
  loadSettings({ dataDir, env: {}, flags: {}, repair: true });
  const store = openSettingsStore(dataDir);
  const next = storedPart(store.store as StoredSettings) as unknown as Record<string, Record<string, unknown> | unknown>;
  for (const [key, value] of Object.entries(patch)) {
    const [a, b] = key.split('.');
    if (b === undefined) next[a] = value;
    else next[a] = { ...((next[a] as Record<string, unknown>) ?? {}), [b]: value };
  }
  store.store = next as unknown as StoredSettings;
  return loadSettings({ dataDir, env: {}, flags: {}, repair: false });
}
