// The model library: what is on disk and ready to load. Scans `<data-dir>/models/` plus explicit
// folders from settings. Request strings are matched against the ids found here, exactly; they are
// never joined into a path (Ollama CVE-2024-37032 class). Symlinks in the models folder that lead
// outside it are ignored, as are the download staging area and folders missing required files.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { estimateFit, type FitEstimate, type FitOptions, type ModelShape } from './fit.ts';
import { readManifest } from './pull-files.ts';
import { INCOMING_DIR, modelsDirOf } from './paths.ts';
import { isInside, isSafeRemoteFileName } from './validate.ts';
import { inspectModelFolder } from '../engine/model-folder/index.ts';

const MAX_MODEL_ID_LENGTH = 256;

export interface LibraryEntry {
  /** What clients put in `model`: `owner/name[@rev]` for pulled models, else the folder name. */
  id: string;
  /** Folder name; also accepted by findModel as an alias. */
  folder: string;
  /** Absolute folder. Internal only: never send it over HTTP or show it in errors. */
  dir: string;
  source: 'hub' | 'folder';
  repo: string | null;
  revision: string | null;
  commit: string | null;
  sizeBytes: number;
  /** config.model_type (llama | mistral | qwen2 | qwen3 | qwen3_moe | gemma3 …). */
  architecture: string | null;
  /** The engine family that runs it (registry name), or null when unsupported. */
  family?: string | null;
  /** MoE: parameters used per token (router + top-k experts + the rest); null for dense models. */
  activeParameters?: number | null;
  quantization: { bits: number; groupSize: number } | null;
  /** Checkpoint dtype: `q4`/`q8` for quantized, else float32 | float16 | bfloat16. */
  dtype: string | null;
  parameters: number | null;
  numLayers: number | null;
  numKvHeads: number | null;
  headDim: number | null;
  contextLength: number | null;
  /** Float dtype of the stored weights (a quantized checkpoint's scales) and its packed 4/8-bit part: what the fit sizes per dtype policy. */
  floatDtype?: string | null;
  packedWeights?: ModelShape['quantized'];
  /** Per-layer sliding windows (null = full attention), so the fit counts their bounded KV; absent/null: all full. */
  layerWindows?: ModelShape['layerWindows'];
  fitsInMemory: FitEstimate;
  ready: boolean;
  /** Why the folder is not ready (only with `includeIncomplete`). */
  problem?: string;
}

export interface ListOptions extends FitOptions {
  /** Extra model folders configured by the user (settings); trusted as given. */
  extraDirs?: string[];
  /** Also return folders that look like models but are not loadable (ready: false, problem). */
  includeIncomplete?: boolean;
}

interface Inspection {
  entry: Omit<LibraryEntry, 'fitsInMemory' | 'id'> & { id: string | null };
  shape: ModelShape;
}

/**
 * One folder as a library entry, from the model-folder inspector (main/engine/model-folder) plus
 * what only the library knows (the download manifest). `confineTo`: every file used must resolve
 * inside this directory (the models folder). Null: not a model folder (no readable config.json).
 */
async function inspect(dir: string, confineTo: string | null): Promise<Inspection | null> {
  const ins = await inspectModelFolder(dir, { confineTo });
  const config = ins.config;
  if (!config) return null;
  const problems = ins.problems.map((p) => p.message);
  // A pulled folder must still match what was verified at download time (sizes; cheap).
  const manifest = await readManifest(dir);
  if (manifest) {
    for (const f of manifest.files ?? []) {
      if (!isSafeRemoteFileName(f.path)) continue;
      const st = await fsp.stat(path.join(dir, f.path)).catch(() => null);
      if (!st?.isFile() || st.size !== f.size) problems.push(`${f.path} differs from the downloaded file`);
    }
  }
  const shape = ins.shape;
  return {
    entry: {
      id: manifest ? (manifest.id ?? manifest.repo) : null,
      folder: path.basename(dir),
      dir,
      source: manifest ? 'hub' : 'folder',
      repo: manifest?.repo ?? null,
      revision: manifest?.revision ?? null,
      commit: manifest?.commit ?? null,
      sizeBytes: ins.sizeBytes,
      architecture: ins.architecture,
      family: ins.family,
      activeParameters: ins.activeParameters,
      quantization: ins.quantization,
      dtype: ins.dtype,
      ...shapeFields(shape),
      ready: problems.length === 0,
      ...(problems.length ? { problem: [...new Set(problems)].join('; ') } : {}),
    },
    shape,
  };
}

/** The memory-fit shape stored flat in an entry: [entry field, shape field] (two have public names of their own). */
const SHAPE_FIELDS = [
  ['parameters', 'parameters'],
  ['numLayers', 'numLayers'],
  ['numKvHeads', 'numKvHeads'],
  ['headDim', 'headDim'],
  ['contextLength', 'maxContext'],
  ['floatDtype', 'floatDtype'],
  ['packedWeights', 'quantized'],
  ['layerWindows', 'layerWindows'],
] as const satisfies ReadonlyArray<readonly [keyof LibraryEntry, keyof ModelShape]>;

type ShapeFields = Pick<LibraryEntry, (typeof SHAPE_FIELDS)[number][0]>;

function shapeFields(shape: ModelShape): ShapeFields {
  return Object.fromEntries(SHAPE_FIELDS.map(([field, s]) => [field, shape[s] ?? null])) as unknown as ShapeFields;
}

/** The shape the memory-fit estimate needs, read back from an entry (e.g. to re-estimate with other memory). */
export function shapeOf(entry: Omit<LibraryEntry, 'fitsInMemory'>): ModelShape {
  return Object.fromEntries(SHAPE_FIELDS.map(([field, s]) => [s, entry[field] ?? null])) as unknown as ModelShape;
}

/** Candidate folders in the models dir: real directories, or symlinks that stay inside it. */
async function scanModelsDir(modelsDir: string): Promise<Array<{ dir: string; confine: string }>> {
  let realModels: string;
  try {
    realModels = await fsp.realpath(modelsDir);
  } catch {
    return [];
  }
  const out: Array<{ dir: string; confine: string }> = [];
  const entries = await fsp.readdir(modelsDir, { withFileTypes: true }).catch(() => [] as fs.Dirent[]);
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name === INCOMING_DIR) continue; // staging, manifests, hidden
    const p = path.join(modelsDir, e.name);
    try {
      const real = await fsp.realpath(p);
      if (!isInside(realModels, real) || real === realModels) continue; // symlink escaping the dir
      if (!(await fsp.stat(real)).isDirectory()) continue;
      out.push({ dir: p, confine: realModels });
    } catch {
      // dangling symlink or vanished entry
    }
  }
  return out.sort((a, b) => a.dir.localeCompare(b.dir));
}

/** Lists models, ready ones only unless `includeIncomplete`. Sorted by id. */
export async function listModels(dataDir: string, opts: ListOptions = {}): Promise<LibraryEntry[]> {
  const candidates = await scanModelsDir(modelsDirOf(dataDir));
  for (const d of opts.extraDirs ?? []) {
    if (typeof d === 'string' && path.isAbsolute(d)) candidates.push({ dir: path.resolve(d), confine: '' });
  }
  const seen = new Set<string>();
  const out: LibraryEntry[] = [];
  for (const c of candidates) {
    const ins = await inspect(c.dir, c.confine || null).catch(() => null);
    if (!ins) continue;
    if (!ins.entry.ready && !opts.includeIncomplete) continue;
    const id = ins.entry.id ?? ins.entry.folder;
    if (seen.has(id)) continue; // first one wins (models dir before extra folders)
    seen.add(id);
    out.push({ ...ins.entry, id, fitsInMemory: estimateFit(ins.shape, opts) });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** Checks the shape of a client-supplied model string before matching (no path semantics at all). */
export function isPlausibleModelId(s: unknown): s is string {
  return typeof s === 'string' && s.length > 0 && s.length <= MAX_MODEL_ID_LENGTH && !/[\u0000-\u001f\u007f]/.test(s);
}

/**
 * Finds a ready model by the exact `id` (or exact folder name). The string is compared to the ids
 * the scan produced, never used to build a path, so `../../etc/passwd` simply matches nothing.
 */
export async function findModel(id: unknown, dataDir: string, opts: ListOptions = {}): Promise<LibraryEntry | null> {
  if (!isPlausibleModelId(id)) return null;
  const all = await listModels(dataDir, { ...opts, includeIncomplete: false });
  return all.find((m) => m.id === id) ?? all.find((m) => m.folder === id) ?? null;
}

/** Inspects one explicit folder (e.g. `--model ./my-model`), trusted as given by the user. */
export async function inspectFolder(dir: string, opts: FitOptions = {}): Promise<LibraryEntry | null> {
  const ins = await inspect(path.resolve(dir), null).catch(() => null);
  if (!ins) return null;
  return { ...ins.entry, id: ins.entry.id ?? ins.entry.folder, fitsInMemory: estimateFit(ins.shape, opts) };
}
