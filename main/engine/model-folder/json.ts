// Bounded reads of the small JSON files of a model folder (config.json, the shard index,
// tokenizer_config.json): model folders are untrusted input, so size and shape are checked before
// anything trusts them, and the reason for a failure reads well after the file name.
import fs from 'node:fs';

export const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MB = 1024 * 1024;

export type JsonRead = { ok: true; value: unknown } | { ok: false; reason: string };

const size = (b: number) => (b >= 1024 * MB ? `${(b / (1024 * MB)).toFixed(1)} GB` : `${Math.round(b / MB)} MB`);

/** Reads `file` as JSON when it is a regular, non-empty file of at most `max` bytes. `reason` follows the file name ("config.json is not valid JSON"). */
export function readJsonBounded(file: string, max = MAX_JSON_BYTES): JsonRead {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return { ok: false, reason: 'is missing' };
  }
  if (!st.isFile()) return { ok: false, reason: 'is not a file' };
  if (st.size === 0) return { ok: false, reason: 'is empty' };
  if (st.size > max) return { ok: false, reason: `is too large (${size(st.size)})` };
  try {
    return { ok: true, value: JSON.parse(fs.readFileSync(file, 'utf8')) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code ? `cannot be read (${code})` : 'is not valid JSON' };
  }
}

export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}
