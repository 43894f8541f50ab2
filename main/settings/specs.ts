// Where a setting comes from besides the file: its environment variable and its flag (one rule each,
// a few variables kept older names), the launch-only DATA_DIR_SPEC and API_KEY_FILE_SPEC (with the
// key file's checks), and the strict parsing of their string values (load.ts applies them).
import fs from 'node:fs';
import { quoteValue } from './issues.ts';

export type ValueKind = 'string' | 'integer' | 'integer-or-auto' | 'number' | 'boolean' | 'list';

/** Every setting path with its environment variable and flag. */
export interface SettingSpec {
  key: string;
  env: string | null;
  flag: string;
  kind: ValueKind;
  secret?: boolean;
  /** Older spellings still accepted (the flag itself follows the one rule: --kebab-case of the path). */
  aliases?: string[];
}

/** The one flag rule: the setting path in kebab-case, nested with a dash (memory.softLimitMb → --memory-soft-limit-mb). */
export function flagForKey(key: string): string {
  return `--${key.replace(/\./g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`;
}

/** The environment variable of a setting path: MLXBAR_ + SCREAMING_SNAKE (responseCache.maxBytes → MLXBAR_RESPONSE_CACHE_MAX_BYTES). */
export function envForKey(key: string): string {
  return `MLXBAR_${key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/**
 * Every setting that flags and environment variables can set: its path and value kind. The flag is
 * always flagForKey(path); the variable is envForKey(path) unless it kept an older name (`env`).
 */
const SETTINGS_FROM_OUTSIDE: ReadonlyArray<readonly [key: string, kind: ValueKind, extra?: Pick<SettingSpec, 'secret' | 'aliases'> & { env?: string }]> = [
  ['host', 'string'],
  ['port', 'integer'],
  ['apiKey', 'string', { secret: true }],
  ['model', 'string'],
  ['allowedOrigins', 'list'],
  ['contextLength', 'integer-or-auto'],
  ['defaultMaxTokens', 'integer', { env: 'MLXBAR_MAX_TOKENS', aliases: ['--max-tokens'] }],
  ['maxConcurrent', 'integer'],
  ['maxQueue', 'integer'],
  ['bodyLimitBytes', 'integer'],
  ['requestTimeoutMs', 'integer'],
  ['responseCache.enabled', 'boolean', { env: 'MLXBAR_RESPONSE_CACHE', aliases: ['--response-cache'] }],
  ['responseCache.maxEntries', 'integer'],
  ['responseCache.maxBytes', 'integer'],
  ['prefixCache.maxEntries', 'integer'],
  ['prefixCache.maxBytes', 'integer'],
  ['prefixCache.persist', 'boolean'],
  ['memory.softLimitMb', 'integer', { env: 'MLXBAR_MEMORY_SOFT_MB', aliases: ['--memory-soft-mb'] }],
  ['memory.hardLimitMb', 'integer', { env: 'MLXBAR_MEMORY_HARD_MB', aliases: ['--memory-hard-mb'] }],
  ['memory.softPercent', 'number'],
  ['memory.hardPercent', 'number'],
  ['idleUnloadMinutes', 'integer'],
  ['dtypePolicy', 'string'],
  ['logLevel', 'string'],
  ['startAtLogin', 'boolean'],
  ['theme', 'string'],
];

export const SETTING_SPECS: SettingSpec[] = SETTINGS_FROM_OUTSIDE.map(([key, kind, extra]) => ({
  key,
  env: extra?.env ?? envForKey(key),
  flag: flagForKey(key),
  kind,
  ...(extra?.secret ? { secret: true } : {}),
  ...(extra?.aliases ? { aliases: extra.aliases } : {}),
}));

/**
 * The API key read from a file (launch-only): a flag value is visible to every local user in
 * /proc/<pid>/cmdline and `ps`, a file readable only by its owner is not. Same precedence layer as its
 * counterpart (--api-key-file with the flags, MLXBAR_API_KEY_FILE with the environment).
 */
export const API_KEY_FILE_SPEC: SettingSpec = { key: 'apiKeyFile', env: 'MLXBAR_API_KEY_FILE', flag: '--api-key-file', kind: 'string' };
const MAX_KEY_FILE_BYTES = 4096;

/** The key in `file` (surrounding whitespace and the final newline trimmed), or why it cannot be used. */
export function readApiKeyFile(file: string): { ok: true; key: string } | { ok: false; message: string } {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO cannot block the launch. A symlink is followed (e.g. /run/secrets/…): the checks
    // apply to the file it points at.
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { ok: false, message: 'is not a regular file' };
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      return { ok: false, message: `can be read by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 on it` };
    }
    if (st.size > MAX_KEY_FILE_BYTES) return { ok: false, message: `is larger than ${MAX_KEY_FILE_BYTES} bytes` };
    const key = fs.readFileSync(fd, 'utf8').trim();
    if (!key) return { ok: false, message: 'is empty' };
    return { ok: true, key };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, message: code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? 'error'})` };
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The data directory is launch-only (the settings file lives in it). */
export const DATA_DIR_SPEC: SettingSpec = { key: 'dataDir', env: 'MLXBAR_DATA_DIR', flag: '--data-dir', kind: 'string' };

// ---------------------------------------------------------------- parsing primitives

/** Strict boolean: true/false/1/0/yes/no (case-insensitive, trimmed); anything else → null. */
export function parseStrictBoolean(raw: string): boolean | null {
  const s = raw.trim().toLowerCase();
  if (s === 'true' || s === '1' || s === 'yes') return true;
  if (s === 'false' || s === '0' || s === 'no') return false;
  return null;
}

/** Strict integer: optional sign and digits only ("8080"; not "8080abc", "80.5", "0x1f", "1e3"). */
export function parseStrictInteger(raw: string): number | null {
  const s = raw.trim();
  if (!/^[+-]?\d{1,16}$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

export function parseStrictNumber(raw: string): number | null {
  const s = raw.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(s)) return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

function describeKind(kind: ValueKind): string {
  return kind === 'boolean'
    ? 'a boolean (true/false, 1/0 or yes/no)'
    : kind === 'integer'
      ? 'an integer'
      : kind === 'integer-or-auto'
        ? '"auto" or an integer'
      : kind === 'number'
        ? 'a number'
        : kind === 'list'
          ? 'a comma-separated list'
          : 'a string';
}

/** Converts a raw string (env/argv) to the setting's type; typed values pass through. */
export function convert(spec: SettingSpec, raw: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  if (typeof raw !== 'string') return { ok: true, value: raw };
  let value: unknown;
  switch (spec.kind) {
    case 'boolean':
      value = parseStrictBoolean(raw);
      break;
    case 'integer':
      value = parseStrictInteger(raw);
      break;
    case 'integer-or-auto':
      value = raw.trim().toLowerCase() === 'auto' ? 'auto' : parseStrictInteger(raw);
      break;
    case 'number':
      value = parseStrictNumber(raw);
      break;
    case 'list':
      value = raw
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      break;
    default:
      value = raw;
  }
  if (value === null) return { ok: false, message: `must be ${describeKind(spec.kind)}, got ${quoteValue(raw, spec.secret)}` };
  return { ok: true, value };
}
