// The model library: what is on disk and ready to load. Scans `<data-dir>/models/` plus explicit
// folders from settings. Request strings are matched against the ids found here, exactly; they are
// never joined into a path (Ollama CVE-2024-37032 class). Symlinks in the models folder that lead
// outside it are ignored, as are the download staging area and folders missing required files.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { estimateFit, type FitEstimate, type FitOptions, type ModelShape } from './fit.ts';
import { readManifest } from './downloader.ts';
import { INCOMING_DIR, modelsDirOf } from './paths.ts';
import { readSafetensorsHeader, weightStats, type WeightStats } from './safetensors.ts';
import { isInside, isSafeRemoteFileName } from './validate.ts';
import { describeModel } from '../engine/model/registry.ts';

const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_INDEX_BYTES = 16 * 1024 * 1024;
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

type Json = Record<string, unknown>;

async function readJsonFile(file: string, maxBytes: number): Promise<Json> {
  const st = await fsp.stat(file);
  if (!st.isFile()) throw new Error('not a file');
  if (st.size > maxBytes) throw new Error('file too large');
  const v = JSON.parse(await fsp.readFile(file, 'utf8'));
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
  return v as Json;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);

function quantOf(config: Json): { bits: number; groupSize: number } | null {
  const q = (config.quantization ?? config.quantization_config) as Json | undefined;
  if (!q || typeof q !== 'object') return null;
  const bits = num(q.bits);
  const groupSize = num(q.group_size);
  return bits && groupSize ? { bits, groupSize } : null;
}

const DTYPE_NAMES: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Header stats cache keyed by file identity, so listing on every request stays cheap. */
const headerCache = new Map<string, { key: string; params: number; floatDtype: string | null; quantized: boolean; ws: WeightStats }>();

interface Inspection {
  entry: Omit<LibraryEntry, 'fitsInMemory' | 'id'> & { id: string | null };
  shape: ModelShape;
}

/**
 * Inspects one folder. `confineTo`: every file used must resolve inside this directory (the models
 * folder), so a symlinked weight file cannot point at something else on the disk.
 */
async function inspect(dir: string, confineTo: string | null): Promise<Inspection | null> {
  const folder = path.basename(dir);
  let config: Json;
  try {
    config = await readJsonFile(path.join(dir, 'config.json'), MAX_CONFIG_BYTES);
  } catch {
    return null; // not a model folder at all
  }
  const problems: string[] = [];
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const checkFile = async (name: string): Promise<fs.Stats | null> => {
    try {
      const p = path.join(dir, name);
      if (confineTo) {
        const real = await fsp.realpath(p);
        if (!isInside(confineTo, real)) return null;
      }
      const st = await fsp.stat(p);
      return st.isFile() ? st : null;
    } catch {
      return null;
    }
  };
  if (confineTo && !(await checkFile('config.json'))) return null;

  let sizeBytes = 0;
  for (const n of names) {
    if (n.endsWith('.part')) continue;
    const st = await checkFile(n);
    if (st) sizeBytes += st.size;
  }
  if (!(await checkFile('tokenizer.json'))) problems.push('tokenizer.json is missing');

  let shards = names.filter((n) => n.endsWith('.safetensors'));
  if (names.includes('model.safetensors.index.json')) {
    try {
      const idx = await readJsonFile(path.join(dir, 'model.safetensors.index.json'), MAX_INDEX_BYTES);
      const map = idx.weight_map as Record<string, unknown> | undefined;
      const wanted = new Set(Object.values(map ?? {}).filter((v): v is string => typeof v === 'string'));
      if (wanted.size === 0) problems.push('model.safetensors.index.json lists no shards');
      for (const w of wanted) {
        if (!isSafeRemoteFileName(w) || w.includes('/')) problems.push('the shard index names an unsafe file');
        else if (!(await checkFile(w))) problems.push(`shard ${w} is missing`);
      }
      shards = [...wanted].filter((w) => isSafeRemoteFileName(w) && !w.includes('/'));
    } catch {
      problems.push('model.safetensors.index.json is unreadable');
    }
  }
  if (shards.length === 0) problems.push('no .safetensors weights');

  const quantization = quantOf(config);
  let params: number | null = 0;
  let floatDtype: string | null = null;
  const packed = { parameters: 0, packedBytes: 0, scaleElements: 0 };
  for (const s of shards) {
    const st = await checkFile(s);
    if (!st) {
      problems.push(`${s} is not a regular file inside the model folder`);
      params = null;
      continue;
    }
    const file = path.join(dir, s);
    const key = `${st.size}:${st.mtimeMs}:${st.ino}:${quantization?.groupSize ?? 0}`;
    let c = headerCache.get(file);
    if (!c || c.key !== key) {
      try {
        const ws = weightStats(await readSafetensorsHeader(file), quantization?.groupSize ?? null);
        c = { key, params: ws.parameters, floatDtype: ws.floatDtype, quantized: ws.quantized, ws };
        headerCache.set(file, c);
      } catch {
        problems.push(`${s} has an invalid safetensors header`);
        params = null;
        continue;
      }
    }
    if (params !== null) params += c.params;
    floatDtype ??= c.floatDtype;
    packed.parameters += c.ws.quantizedParameters;
    packed.packedBytes += c.ws.packedBytes;
    packed.scaleElements += c.ws.scaleElements;
  }

  // A pulled folder must still match what was verified at download time (sizes; cheap).
  const manifest = await readManifest(dir);
  if (manifest) {
    for (const f of manifest.files ?? []) {
      if (!isSafeRemoteFileName(f.path)) continue;
      const st = await checkFile(f.path);
      if (!st || st.size !== f.size) problems.push(`${f.path} differs from the downloaded file`);
    }
  }

  // The engine's own config parser knows each family's fields (e.g. Gemma 3's text_config); the
  // raw fields are the fallback for architectures it does not run.
  const described = describeModel(config, params && params > 0 ? params : null);
  const parsed = described.config;
  const heads = num(config.num_attention_heads);
  const hidden = num(config.hidden_size);
  const headDim = parsed?.headDim ?? num(config.head_dim) ?? (heads && hidden ? hidden / heads : null);
  const dtype = quantization
    ? `q${quantization.bits}`
    : typeof config.torch_dtype === 'string'
      ? config.torch_dtype
      : floatDtype
        ? DTYPE_NAMES[floatDtype] ?? floatDtype.toLowerCase()
        : null;
  const shape: ModelShape = {
    parameters: params && params > 0 ? params : null,
    numLayers: parsed?.numLayers ?? num(config.num_hidden_layers),
    numKvHeads: parsed?.numKvHeads ?? num(config.num_key_value_heads) ?? heads,
    headDim,
    maxContext: parsed?.contextLength ?? num(config.max_position_embeddings),
    floatDtype: floatDtype ? (DTYPE_NAMES[floatDtype] ?? floatDtype.toLowerCase()) : null,
    quantized: packed.parameters > 0 ? packed : null,
    layerWindows: parsed?.layerWindows ?? null,
  };
  if (typeof config.model_type !== 'string') problems.push('config.json has no model_type');
  return {
    entry: {
      id: manifest ? (manifest.id ?? manifest.repo) : null,
      folder,
      dir,
      source: manifest ? 'hub' : 'folder',
      repo: manifest?.repo ?? null,
      revision: manifest?.revision ?? null,
      commit: manifest?.commit ?? null,
      sizeBytes,
      architecture: typeof config.model_type === 'string' ? config.model_type : null,
      family: described.family,
      activeParameters: described.activeParameters,
      quantization,
      dtype,
      parameters: shape.parameters,
      numLayers: shape.numLayers,
      numKvHeads: shape.numKvHeads,
      headDim: shape.headDim,
      contextLength: shape.maxContext,
      floatDtype: shape.floatDtype ?? null,
      packedWeights: shape.quantized ?? null,
      layerWindows: shape.layerWindows ?? null,
      ready: problems.length === 0,
      ...(problems.length ? { problem: [...new Set(problems)].join('; ') } : {}),
    },
    shape,
  };
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
