// Which safetensors files make up a checkpoint: the ONE rule the engine loads by and the library
// and preflight check by. An index (model.safetensors.index.json) lists the shards, which must be
// plain file names in the folder; without one, model.safetensors, or the only .safetensors file.
import fs from 'node:fs';
import path from 'node:path';
import { readJsonBounded, type JsonRead } from './json.ts';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
export const MAX_INDEX_BYTES = 32 * 1024 * 1024;
/** A shard named by an index: a plain file name in the model folder (no directories, not hidden). */
const SHARD_NAME = /^[A-Za-z0-9._-]{1,200}\.safetensors$/;

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** A file name from a model folder or index, safe to print. */
export const quoteFileName = (s: string) => `"${s.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 80)}"`;

export interface CheckpointPlan {
  /** The safetensors files to read, in load order (present ones only). */
  files: string[];
  /** The index's tensor → shard map; null without an index or when the index is unusable. */
  weightMap: Record<string, string> | null;
  /** Whether an index exists (its problems are `index` problems). */
  indexed: boolean;
  /** No weights at all: neither an index nor a .safetensors file. */
  noWeights: boolean;
  /** What keeps this checkpoint from loading (null: nothing found by the file listing). */
  problem: { where: 'index' | 'files'; message: string; hint: string } | null;
}

const REDOWNLOAD = 'Re-download the model';

/**
 * The rule itself, over a folder listing: `names` (the folder's entries), `isFile(name)` (a regular file
 * usable from the folder) and `readIndex()` (the parsed index, only called when `names` has one).
 */
export function planCheckpoint(names: readonly string[], isFile: (name: string) => boolean, readIndex: () => JsonRead): CheckpointPlan {
  const plan = (p: Partial<CheckpointPlan>): CheckpointPlan => ({ files: [], weightMap: null, indexed: false, noWeights: false, problem: null, ...p });
  if (names.includes(INDEX_FILE)) {
    const r = readIndex();
    const wm = r.ok ? (r.value as { weight_map?: unknown } | null)?.weight_map : undefined;
    if (!r.ok) return plan({ indexed: true, problem: { where: 'index', message: `${INDEX_FILE} ${r.reason}`, hint: REDOWNLOAD } });
    if (!wm || typeof wm !== 'object' || Array.isArray(wm) || Object.keys(wm).length === 0) {
      return plan({ indexed: true, problem: { where: 'index', message: `${INDEX_FILE} has no weight_map`, hint: REDOWNLOAD } });
    }
    const shards = new Set<string>();
    for (const v of Object.values(wm as Record<string, unknown>)) {
      if (typeof v !== 'string' || !SHARD_NAME.test(v) || v.startsWith('.')) {
        const hint = 'Shards must be plain .safetensors file names inside the model folder';
        return plan({ indexed: true, problem: { where: 'index', message: `${INDEX_FILE} names an invalid shard file ${quoteFileName(String(v))}`, hint } });
      }
      shards.add(v);
    }
    const files = [...shards].sort();
    const absent = files.filter((f) => !isFile(f));
    if (absent.length) {
      const which = absent.length === 1 ? 'a shard that is' : `${absent.length} shards that are`;
      const list = `${absent.slice(0, 3).map(quoteFileName).join(', ')}${absent.length > 3 ? ', …' : ''}`;
      const problem = { where: 'index' as const, message: `The index lists ${which} missing: ${list}`, hint: 'Re-download the model (an interrupted download?)' };
      return plan({ indexed: true, files: files.filter((f) => !absent.includes(f)), problem });
    }
    return plan({ indexed: true, files, weightMap: wm as Record<string, string> });
  }
  if (names.includes(SINGLE_FILE) && isFile(SINGLE_FILE)) return plan({ files: [SINGLE_FILE] });
  const any = names.filter((f) => f.endsWith('.safetensors') && isFile(f)).sort();
  if (any.length === 1) return plan({ files: any });
  if (any.length > 1) {
    return plan({ problem: { where: 'files', message: `several .safetensors files but no ${INDEX_FILE}`, hint: REDOWNLOAD } });
  }
  return plan({ noWeights: true, problem: { where: 'files', message: `no ${SINGLE_FILE} (or ${INDEX_FILE} with its shards) in the model folder`, hint: REDOWNLOAD } });
}

/** The engine's entry: the checkpoint's files and index, or a CheckpointError saying what is wrong (no paths). */
export function listCheckpointFiles(dir: string): { files: string[]; weightMap: Record<string, string> | null } {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    throw new CheckpointError('the model folder cannot be read');
  }
  const isFile = (n: string) => {
    try {
      return fs.statSync(path.join(dir, n)).isFile();
    } catch {
      return false;
    }
  };
  const p = planCheckpoint(names, isFile, () => readJsonBounded(path.join(dir, INDEX_FILE), MAX_INDEX_BYTES));
  if (p.problem) throw new CheckpointError(p.problem.message);
  return { files: p.files, weightMap: p.weightMap };
}
