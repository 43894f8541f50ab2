// Loading settings for a launch: flags > environment > settings file > defaults, every value
// validated against THE schema (schema.ts), nothing ever crashing the launch.
//
//  - Environment variables are typed and ranged; booleans are strict (true/false/1/0/yes/no, case-
//    insensitive; anything else is an error naming the variable). An invalid value is an error (the
//    launch should stop and say so) and is otherwise ignored.
//  - The settings file <dataDir>/config.json is untrusted input: bad JSON, a non-object, keys such as
//    `__proto__`/`constructor`/`prototype`, or values violating the schema are reported with where
//    (the setting path, e.g. `config.json: responseCache.enabled`) and what; with `repair` (default) the file is moved aside to
//    `config.json.invalid-<timestamp>` and the still-valid values are written back atomically, so the
//    app launches on defaults for the bad keys and `conf`/electron-store can open the file again.
//  - Messages never contain absolute paths (the file is called "config.json") and never echo the API
//    key; other echoed values are truncated.
import fs from 'node:fs';
import path from 'node:path';
import { quoteValue } from './issues.ts';
import { schemaFor, validateSetting } from './validation.ts';
export { schemaFor, validateSetting };
import { defaultDataDir } from '../common/data-dir.ts';
import { DEFAULT_SETTINGS, SETTINGS_SCHEMA, type Settings, type StoredSettings } from './schema.ts';
import { writeFileAtomicSync } from '../common/atomic-write.ts';
import { API_KEY_FILE_SPEC, convert, DATA_DIR_SPEC, readApiKeyFile, SETTING_SPECS, type SettingSpec } from './specs.ts';
export { API_KEY_FILE_SPEC, DATA_DIR_SPEC, flagForKey, parseStrictBoolean, parseStrictInteger, parseStrictNumber, readApiKeyFile, SETTING_SPECS, type SettingSpec, type ValueKind } from './specs.ts';

export const SETTINGS_FILE = 'config.json';
const MAX_FILE_BYTES = 1024 * 1024;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
/** conf's own bookkeeping key (migrations); tolerated, never a setting. */
const INTERNAL_KEY = '__internal__';

export type SettingSource = 'flag' | 'env' | 'file' | 'default';

export interface SettingsIssue {
  source: 'flag' | 'env' | 'file';
  /** Setting path, e.g. `port` or `responseCache.enabled`; '' for the whole file. */
  key: string;
  /** Where the user can fix it: `--port`, `MLXBAR_PORT`, `config.json: responseCache.enabled`. */
  where: string;
  message: string;
}

export interface LoadSettingsResult {
  settings: Settings;
  sources: Record<string, SettingSource>;
  /** Invalid flags/env values: the launch should stop (exit 2) and show them. */
  errors: SettingsIssue[];
  /** Non-fatal: settings-file problems that were recovered from, unknown keys, odd combinations. */
  warnings: SettingsIssue[];
  file: {
    status: 'missing' | 'ok' | 'invalid' | 'corrupt';
    /** Name (not path) of the copy the bad file was moved to, when repaired. */
    movedTo: string | null;
  };
}

// ---------------------------------------------------------------- helpers on nested settings

function getPath(obj: Record<string, unknown>, key: string): unknown {
  const [a, b] = key.split('.');
  const top = obj[a];
  return b === undefined ? top : top && typeof top === 'object' ? (top as Record<string, unknown>)[b] : undefined;
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const [a, b] = key.split('.');
  if (b === undefined) {
    obj[a] = value;
    return;
  }
  const cur = obj[a];
  obj[a] = { ...(cur && typeof cur === 'object' ? (cur as Record<string, unknown>) : {}), [b]: value };
}

function cloneDefaults(): StoredSettings {
  return structuredClone(DEFAULT_SETTINGS);
}

/** Every leaf setting path (nested objects expanded). */
export const LEAF_KEYS: string[] = Object.entries(SETTINGS_SCHEMA).flatMap(([k, s]) =>
  s.type === 'object' && s.properties ? Object.keys(s.properties as object).map((sub) => `${k}.${sub}`) : [k],
);

function hasForbiddenKey(v: unknown, depth = 0): string | null {
  if (depth > 32 || v === null || typeof v !== 'object') return null;
  for (const k of Object.keys(v)) {
    if (FORBIDDEN_KEYS.has(k)) return k;
    const inner = hasForbiddenKey((v as Record<string, unknown>)[k], depth + 1);
    if (inner) return inner;
  }
  return null;
}

function timestampForName(d = new Date()): string {
  return d.toISOString().replace(/[:.]/g, '-');
}

// ---------------------------------------------------------------- the settings file

interface FileRead {
  status: 'missing' | 'ok' | 'invalid' | 'corrupt';
  values: Record<string, unknown>; // leaf path → valid value
  keep: Record<string, unknown>; // what a repaired file should contain (valid + unknown keys)
  warnings: SettingsIssue[];
}

function readSettingsFile(file: string): FileRead {
  const out: FileRead = { status: 'ok', values: {}, keep: Object.create(null), warnings: [] };
  const issue = (key: string, pointer: string, message: string) =>
    out.warnings.push({ source: 'file', key, where: `${SETTINGS_FILE}${pointer ? ': ' + pointer : ''}`, message });
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) {
      out.status = 'corrupt';
      issue('', '', `${SETTINGS_FILE} is not a regular file; defaults are used`);
      return out;
    }
    if (st.size > MAX_FILE_BYTES) {
      out.status = 'corrupt';
      issue('', '', `${SETTINGS_FILE} is too large (${st.size} bytes); defaults are used`);
      return out;
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      out.status = 'missing';
      return out;
    }
    out.status = 'corrupt';
    issue('', '', `${SETTINGS_FILE} could not be read (${(e as NodeJS.ErrnoException).code ?? 'error'}); defaults are used`);
    return out;
  }
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    out.status = 'corrupt';
    const m = /position (\d+)/.exec((e as Error).message);
    issue('', '', `${SETTINGS_FILE} is not valid JSON${m ? ` (error at character ${m[1]})` : ''}; defaults are used`);
    return out;
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    out.status = 'corrupt';
    issue('', '', `${SETTINGS_FILE} must contain a JSON object; defaults are used`);
    return out;
  }
  const obj = data as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    const ptr = k; // dotted setting path (a JSON pointer would read like a file path to the sanitizer)
    if (FORBIDDEN_KEYS.has(k)) {
      out.status = 'invalid';
      issue(k, ptr, `forbidden key ${quoteValue(k)} ignored (possible prototype-pollution attempt)`);
      continue;
    }
    if (k === INTERNAL_KEY) {
      if (!hasForbiddenKey(obj[k])) out.keep[k] = obj[k];
      continue;
    }
    const schema = schemaFor(k);
    if (!schema) {
      issue(k, ptr, `unknown setting ${quoteValue(k)} ignored`);
      if (!hasForbiddenKey(obj[k])) out.keep[k] = obj[k];
      continue;
    }
    const v = obj[k];
    if (schema.type === 'object' && schema.properties) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        out.status = 'invalid';
        issue(k, ptr, `must be an object; defaults are used`);
        continue;
      }
      const keepObj: Record<string, unknown> = {};
      for (const sub of Object.keys(v)) {
        const leaf = `${k}.${sub}`;
        const sv = (v as Record<string, unknown>)[sub];
        if (FORBIDDEN_KEYS.has(sub)) {
          out.status = 'invalid';
          issue(leaf, `${ptr}.${sub}`, `forbidden key ${quoteValue(sub)} ignored (possible prototype-pollution attempt)`);
          continue;
        }
        if (!schemaFor(leaf)) {
          out.status = 'invalid';
          issue(leaf, `${ptr}.${sub}`, `unknown setting ${quoteValue(sub)} in ${k} ignored`);
          continue;
        }
        const err = validateSetting(leaf, sv);
        if (err) {
          out.status = 'invalid';
          issue(leaf, `${ptr}.${sub}`, `${leaf} ${err}, got ${quoteValue(sv, leaf === 'apiKey')}; the default is used`);
          continue;
        }
        out.values[leaf] = sv;
        keepObj[sub] = sv;
      }
      out.keep[k] = keepObj;
      continue;
    }
    const forbidden = hasForbiddenKey(v);
    if (forbidden) {
      out.status = 'invalid';
      issue(k, ptr, `forbidden key ${quoteValue(forbidden)} ignored (possible prototype-pollution attempt)`);
      continue;
    }
    const err = validateSetting(k, v);
    if (err) {
      out.status = 'invalid';
      issue(k, ptr, `${k} ${err}, got ${quoteValue(v, k === 'apiKey')}; the default is used`);
      continue;
    }
    out.values[k] = v;
    out.keep[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------- public API

export interface LoadSettingsOptions {
  /** Data directory (else flags.dataDir, env MLXBAR_DATA_DIR, the platform default). */
  dataDir?: string;
  /** Setting path → value, from the command line. Strings are converted like env values. */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Move a bad file aside and write back its valid values (default true; `check` passes false). */
  repair?: boolean;
}

export function loadSettings(opts: LoadSettingsOptions = {}): LoadSettingsResult {
  const env = opts.env ?? process.env;
  const flags = opts.flags ?? {};
  const errors: SettingsIssue[] = [];
  const warnings: SettingsIssue[] = [];
  const sources: Record<string, SettingSource> = {};

  // data directory: flag > env > option > platform default
  let dataDir: string;
  let dataDirSource: SettingSource = 'default';
  const flagDir = flags.dataDir;
  const envDir = env[DATA_DIR_SPEC.env!];
  const badDir = (v: unknown) => typeof v !== 'string' || !v.trim() || v.includes('\0') || v.length > 4096;
  if (flagDir !== undefined && !badDir(flagDir)) {
    dataDir = path.resolve(String(flagDir));
    dataDirSource = 'flag';
  } else {
    if (flagDir !== undefined) errors.push({ source: 'flag', key: 'dataDir', where: '--data-dir', message: '--data-dir must be a folder path' });
    if (envDir !== undefined && envDir !== '' && !badDir(envDir)) {
      dataDir = path.resolve(envDir);
      dataDirSource = 'env';
    } else {
      if (envDir !== undefined && envDir !== '' && badDir(envDir)) errors.push({ source: 'env', key: 'dataDir', where: 'MLXBAR_DATA_DIR', message: 'MLXBAR_DATA_DIR must be a folder path' });
      dataDir = opts.dataDir ? path.resolve(opts.dataDir) : defaultDataDir(process.platform, env);
      if (opts.dataDir) dataDirSource = 'flag';
    }
  }
  sources.dataDir = dataDirSource;

  // file
  const file = path.join(dataDir, SETTINGS_FILE);
  const fr = readSettingsFile(file);
  warnings.push(...fr.warnings);
  let movedTo: string | null = null;
  if ((fr.status === 'invalid' || fr.status === 'corrupt') && opts.repair !== false && fs.existsSync(file)) {
    try {
      movedTo = `${SETTINGS_FILE}.invalid-${timestampForName()}`;
      fs.renameSync(file, path.join(dataDir, movedTo));
      if (fr.status === 'invalid') writeFileAtomicSync(file, JSON.stringify(fr.keep, null, '\t') + '\n');
      warnings.push({
        source: 'file',
        key: '',
        where: SETTINGS_FILE,
        message: `the problem file was kept as ${movedTo}${fr.status === 'invalid' ? ' and its valid settings were written back' : ''}`,
      });
    } catch (e) {
      movedTo = null;
      warnings.push({ source: 'file', key: '', where: SETTINGS_FILE, message: `could not move the problem file aside (${(e as NodeJS.ErrnoException).code ?? 'error'})` });
    }
  }

  // layers
  const merged = cloneDefaults() as unknown as Record<string, unknown>;
  for (const key of LEAF_KEYS) sources[key] = 'default';
  for (const [key, v] of Object.entries(fr.values)) {
    setPath(merged, key, v);
    sources[key] = 'file';
  }
  // API key from a file: MLXBAR_API_KEY_FILE is the environment layer, --api-key-file the flag layer.
  const keyFromFile = (raw: unknown, where: string, source: 'env' | 'flag', rival: string, rivalSet: boolean) => {
    if (raw === undefined || raw === null || raw === '') return;
    if (rivalSet) {
      errors.push({ source, key: 'apiKey', where, message: `${where} and ${rival} are both set; use one` });
      return;
    }
    const r = typeof raw === 'string' && !raw.includes('\0') ? readApiKeyFile(raw) : { ok: false as const, message: 'must be a file path' };
    const err = r.ok ? validateSetting('apiKey', r.key) : null;
    if (!r.ok || err) {
      errors.push({ source, key: 'apiKey', where, message: `${where}: the key file ${r.ok ? `holds an invalid key (${err})` : r.message}` });
      return;
    }
    setPath(merged, 'apiKey', r.key);
    sources.apiKey = source;
  };
  keyFromFile(env[API_KEY_FILE_SPEC.env!], API_KEY_FILE_SPEC.env!, 'env', 'MLXBAR_API_KEY', !!env.MLXBAR_API_KEY);
  for (const spec of SETTING_SPECS) {
    if (!spec.env) continue;
    const raw = env[spec.env];
    if (raw === undefined || raw === '') continue;
    const c = convert(spec, raw);
    const err = c.ok ? validateSetting(spec.key, c.value) : c.message;
    if (err) {
      errors.push({ source: 'env', key: spec.key, where: spec.env, message: `${spec.env} ${c.ok ? `${err}, got ${quoteValue(raw, spec.secret)}` : err}` });
      continue;
    }
    setPath(merged, spec.key, (c as { value: unknown }).value);
    sources[spec.key] = 'env';
  }
  keyFromFile(flags.apiKeyFile, API_KEY_FILE_SPEC.flag, 'flag', '--api-key', flags.apiKey !== undefined && flags.apiKey !== null);
  for (const [key, raw] of Object.entries(flags)) {
    if (key === 'dataDir' || key === 'apiKeyFile' || raw === undefined || raw === null) continue; // null = not given
    const spec = SETTING_SPECS.find((s) => s.key === key);
    if (!spec) {
      errors.push({ source: 'flag', key, where: key, message: `unknown option ${quoteValue(key)}` });
      continue;
    }
    const c = convert(spec, raw);
    const err = c.ok ? validateSetting(spec.key, c.value) : c.message;
    if (err) {
      errors.push({ source: 'flag', key, where: spec.flag, message: `${spec.flag} ${c.ok ? `${err}, got ${quoteValue(raw, spec.secret)}` : err}` });
      continue;
    }
    setPath(merged, spec.key, (c as { value: unknown }).value);
    sources[spec.key] = 'flag';
  }

  const settings = { ...(merged as unknown as StoredSettings), dataDir } as Settings;
  const m = settings.memory;
  if (m.softLimitMb && m.hardLimitMb && m.softLimitMb >= m.hardLimitMb) {
    warnings.push({ source: sources['memory.softLimitMb'] === 'default' ? 'file' : (sources['memory.softLimitMb'] as 'flag' | 'env' | 'file'), key: 'memory.softLimitMb', where: 'memory.softLimitMb', message: 'the soft memory limit is not below the hard limit; soft actions will not run before shedding' });
  }
  if (!m.softLimitMb && !m.hardLimitMb && m.softPercent >= m.hardPercent) {
    warnings.push({ source: 'file', key: 'memory.softPercent', where: 'memory.softPercent', message: 'the soft memory percentage is not below the hard percentage' });
  }
  return { settings, sources, errors, warnings, file: { status: fr.status, movedTo } };
}

/** Stored part of settings (what goes into config.json). */
export function storedPart(s: Settings | StoredSettings): StoredSettings {
  const out = structuredClone(s) as Partial<Settings>;
  delete out.dataDir;
  return out as StoredSettings;
}

/** Reads one setting by path from a settings object. */
export function getSetting(s: Settings | StoredSettings, key: string): unknown {
  return getPath(s as unknown as Record<string, unknown>, key);
}
