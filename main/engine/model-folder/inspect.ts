// THE model-folder inspector: what a folder holds and whether the engine could load it, without
// loading anything (no MLX): required files by exact name, config.json, the architecture (the
// engine's family registry), the tokenizer files, the checkpoint's shard list (checkpoint.ts) and
// every shard's safetensors header, and the shape the memory-fit estimate needs. Used by the library
// (its entries), preflight (its report) and settings validation; the engine loads by the same rules.
// Problems name files relative to the folder, never the folder's path.
import fs from 'node:fs';
import path from 'node:path';
import { isInside } from '../../common/paths.ts';
import { supportedModelTypes } from '../model/registry.ts';
import { describeModel } from '../model/config.ts';
import { INDEX_FILE, MAX_INDEX_BYTES, planCheckpoint, quoteFileName } from './checkpoint.ts';
import { isJsonObject, readJsonBounded } from './json.ts';
import { FLOAT_DTYPE_NAMES, readSafetensorsHeader, SafetensorsError, weightStats, type TensorHeader } from './safetensors.ts';

/** The report sections a problem belongs to (preflight's check ids). */
export type FolderCheck = 'model-folder' | 'model-files' | 'model-config' | 'model-architecture' | 'model-tokenizer' | 'model-index' | 'model-weights';

export interface FolderProblem {
  check: FolderCheck;
  message: string;
  hint: string;
}

/** What the memory-fit estimate needs (main/library/fit.ts `ModelShape`). */
export interface FolderShape {
  parameters: number | null;
  numLayers: number | null;
  numKvHeads: number | null;
  headDim: number | null;
  /** The model's own maximum context (max_position_embeddings, or the family's reading of it). */
  maxContext: number | null;
  /** The checkpoint's float dtype (float32 | bfloat16 | float16; a quantized one's scales dtype). */
  floatDtype?: string | null;
  /** Packed 4/8-bit part of the checkpoint (null/absent: none). `parameters` includes these. */
  quantized?: { parameters: number; packedBytes: number; scaleElements: number } | null;
  /** Per-layer sliding windows (null = full attention); their KV stops growing at the ring size. Absent: all full. */
  layerWindows?: readonly (number | null)[] | null;
}

export interface ModelFolderInspection {
  /** config.json as parsed (null: missing, unreadable or not an object — not a model folder). */
  config: Record<string, unknown> | null;
  /** config.json model_type, when it is a string. */
  architecture: string | null;
  /** Whether the engine's family registry runs `architecture`. */
  supported: boolean;
  /** The engine family that runs it (registry name), null when unsupported. */
  family: string | null;
  /** MoE: parameters used per token; null for dense models. */
  activeParameters: number | null;
  quantization: { bits: number; groupSize: number } | null;
  /** Checkpoint dtype: `q4`/`q8` for quantized, else float32 | float16 | bfloat16 (null: unknown). */
  dtype: string | null;
  shape: FolderShape;
  /** Required files that are absent, by exact name (the weights as one phrase). */
  missing: string[];
  /** Safetensors files whose headers were read. */
  shards: string[];
  /** Tensors in those headers. */
  tensors: number;
  /** Index ↔ shards agree (null: no index, or it could not be checked). */
  indexConsistent: boolean | null;
  /** Bytes of the folder's regular files (partial downloads excluded). */
  sizeBytes: number;
  /** Everything that keeps the engine from loading the folder; empty = loadable. */
  problems: FolderProblem[];
}

export interface InspectOptions {
  /** Every file used must resolve inside this directory (the models folder): a symlinked weight cannot point elsewhere. */
  confineTo?: string | null;
}

const REQUIRED_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const;
const NO_WEIGHTS = 'model.safetensors (or model.safetensors.index.json with its shards)';
const REDOWNLOAD = 'Re-download the model';

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);

function quantOf(config: Record<string, unknown>): { bits: number; groupSize: number } | null {
  const q = (config.quantization ?? config.quantization_config) as Record<string, unknown> | undefined;
  if (!q || typeof q !== 'object') return null;
  const bits = num(q.bits);
  const groupSize = num(q.group_size);
  return bits && groupSize ? { bits, groupSize } : null;
}

/** Header cache keyed by file identity, so listing the library on every request stays cheap. */
const headerCache = new Map<string, { key: string; tensors: Map<string, TensorHeader> }>();

async function cachedHeader(file: string, st: fs.Stats): Promise<Map<string, TensorHeader>> {
  const key = `${st.size}:${st.mtimeMs}:${st.ino}`;
  const hit = headerCache.get(file);
  if (hit && hit.key === key) return hit.tensors;
  const tensors = await readSafetensorsHeader(file);
  headerCache.set(file, { key, tensors });
  return tensors;
}

/** A regular file of the folder (inside `confineTo` when given), or null. */
function fileStat(dir: string, name: string, confineTo: string | null): fs.Stats | null {
  try {
    const p = path.join(dir, name);
    if (confineTo && !isInside(confineTo, fs.realpathSync(p))) return null;
    const st = fs.statSync(p);
    return st.isFile() ? st : null;
  } catch {
    return null;
  }
}

function folderProblem(dir: string): FolderProblem | null {
  const p = (message: string, hint: string): FolderProblem => ({ check: 'model-folder', message, hint });
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return p('The model folder does not exist', 'Pass --model <folder> with a model in the mlx-community layout, or pull one with `mlx-bar pull`');
  }
  if (!st.isDirectory()) return p('The model path is not a folder', 'Pass --model <folder>');
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    return p('The model folder is not readable', 'Check its permissions');
  }
  return null;
}

function readConfig(dir: string, present: boolean, problems: FolderProblem[]): Record<string, unknown> | null {
  if (!present) return null;
  const r = readJsonBounded(path.join(dir, 'config.json'));
  if (!r.ok) problems.push({ check: 'model-config', message: `config.json ${r.reason}`, hint: REDOWNLOAD });
  else if (!isJsonObject(r.value)) problems.push({ check: 'model-config', message: 'config.json must contain a JSON object', hint: REDOWNLOAD });
  else return r.value;
  return null;
}

function checkTokenizerFiles(dir: string, missing: string[], problems: FolderProblem[]): void {
  if (!missing.includes('tokenizer_config.json')) {
    const r = readJsonBounded(path.join(dir, 'tokenizer_config.json'));
    if (!r.ok) problems.push({ check: 'model-tokenizer', message: `tokenizer_config.json ${r.reason}`, hint: REDOWNLOAD });
  }
  if (missing.includes('tokenizer.json')) return;
  // tokenizer.json may be large: only its opening is checked here (the text pipeline parses it).
  try {
    const fd = fs.openSync(path.join(dir, 'tokenizer.json'), 'r');
    try {
      const head = Buffer.alloc(64);
      const n = fs.readSync(fd, head, 0, 64, 0);
      if (n === 0 || !head.subarray(0, n).toString('utf8').trimStart().startsWith('{')) {
        problems.push({ check: 'model-tokenizer', message: 'tokenizer.json is not a JSON object', hint: REDOWNLOAD });
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    problems.push({ check: 'model-tokenizer', message: 'tokenizer.json cannot be read', hint: 'Check its permissions' });
  }
}

/** Every shard's header, merged; null when any header is unreadable (each one is a problem). */
async function readHeaders(dir: string, shards: string[], confineTo: string | null, problems: FolderProblem[]) {
  const tensors = new Map<string, TensorHeader>();
  const tensorFile = new Map<string, string>();
  let ok = true;
  for (const s of shards) {
    const st = fileStat(dir, s, confineTo);
    try {
      if (!st) throw Object.assign(new Error('not a regular file inside the model folder'), { code: 'ENOENT' });
      for (const [k, v] of await cachedHeader(path.join(dir, s), st)) {
        tensors.set(k, v);
        tensorFile.set(k, s);
      }
    } catch (e) {
      ok = false;
      const why = e instanceof SafetensorsError ? e.message : ((e as NodeJS.ErrnoException).code ?? 'unreadable');
      problems.push({ check: 'model-weights', message: `${quoteFileName(s)} has an unreadable safetensors header (${why})`, hint: 'The file is truncated or corrupt: re-download the model' });
    }
  }
  return ok ? { tensors, tensorFile } : null;
}

/** Inspects one model folder. Never throws for bad content: every problem is in `problems`. */
export async function inspectModelFolder(dir: string, opts: InspectOptions = {}): Promise<ModelFolderInspection> {
  const confineTo = opts.confineTo ?? null;
  const problems: FolderProblem[] = [];
  const out: ModelFolderInspection = {
    config: null, architecture: null, supported: false, family: null, activeParameters: null, quantization: null, dtype: null,
    shape: { parameters: null, numLayers: null, numKvHeads: null, headDim: null, maxContext: null, floatDtype: null, quantized: null, layerWindows: null },
    missing: [], shards: [], tensors: 0, indexConsistent: null, sizeBytes: 0, problems,
  };
  const bad = folderProblem(dir);
  if (bad) {
    problems.push(bad);
    return out;
  }
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    problems.push({ check: 'model-folder', message: 'The model folder is not readable', hint: 'Check its permissions' });
    return out;
  }
  for (const n of names) if (!n.endsWith('.part')) out.sizeBytes += fileStat(dir, n, confineTo)?.size ?? 0;

  const isFile = (n: string) => fileStat(dir, n, confineTo) !== null;
  const plan = planCheckpoint(names, isFile, () => readJsonBounded(path.join(dir, INDEX_FILE), MAX_INDEX_BYTES));
  out.missing = REQUIRED_FILES.filter((f) => !isFile(f));
  if (plan.noWeights) out.missing.push(NO_WEIGHTS);
  if (out.missing.length) {
    const hint = 'A model folder needs config.json, tokenizer.json, tokenizer_config.json and model.safetensors (or an index with all its shards)';
    problems.push({ check: 'model-files', message: `The model folder is missing ${out.missing.join(', ')}`, hint });
  }

  const config = (out.config = readConfig(dir, !out.missing.includes('config.json'), problems));
  const quant = config ? quantOf(config) : null;
  out.quantization = quant;
  if (config) {
    const mt = config.model_type;
    if (typeof mt !== 'string') problems.push({ check: 'model-architecture', message: 'config.json has no model_type', hint: `Supported: ${supportedModelTypes().join(', ')}` });
    else out.architecture = mt;
    out.supported = out.architecture !== null && supportedModelTypes().includes(out.architecture);
  }
  checkTokenizerFiles(dir, out.missing, problems);

  if (plan.problem && !plan.noWeights) problems.push({ check: plan.problem.where === 'index' ? 'model-index' : 'model-files', message: plan.problem.message, hint: plan.problem.hint });
  out.shards = plan.files;
  const read = await readHeaders(dir, plan.files, confineTo, problems);
  let params: number | null = null;
  if (read) {
    out.tensors = read.tensors.size;
    if (plan.weightMap) {
      const wrong = Object.entries(plan.weightMap).filter(([t, f]) => read.tensorFile.get(t) !== f);
      out.indexConsistent = wrong.length === 0;
      if (wrong.length) {
        const n = wrong.length;
        problems.push({ check: 'model-index', message: `${n} tensor${n > 1 ? 's' : ''} listed in the index ${n > 1 ? 'are' : 'is'} not in the named shard (e.g. ${quoteFileName(wrong[0][0])})`, hint: REDOWNLOAD });
      }
    }
    if (plan.files.length && read.tensors.size === 0) problems.push({ check: 'model-weights', message: 'The weights contain no tensors', hint: REDOWNLOAD });
    else if (plan.files.length) {
      const ws = weightStats(read.tensors, quant?.groupSize ?? null);
      if (!plan.problem && ws.parameters > 0) params = ws.parameters;
      out.shape.floatDtype = ws.floatDtype ? (FLOAT_DTYPE_NAMES[ws.floatDtype] ?? ws.floatDtype.toLowerCase()) : null;
      out.shape.quantized = ws.quantizedParameters > 0 ? { parameters: ws.quantizedParameters, packedBytes: ws.packedBytes, scaleElements: ws.scaleElements } : null;
    }
  }
  out.shape.parameters = params;
  if (config) describe(out, config, problems);
  return out;
}

/** Family, parsed shape (the engine's config parser knows each family's fields, e.g. Gemma 3's text_config; raw fields are the fallback) and dtype. */
function describe(out: ModelFolderInspection, config: Record<string, unknown>, problems: FolderProblem[]): void {
  const described = describeModel(config, out.shape.parameters);
  const parsed = described.config;
  out.family = described.family;
  out.activeParameters = described.activeParameters;
  const heads = num(config.num_attention_heads);
  const hidden = parsed?.hiddenSize ?? num(config.hidden_size);
  out.shape.numLayers = parsed?.numLayers ?? num(config.num_hidden_layers);
  out.shape.numKvHeads = parsed?.numKvHeads ?? num(config.num_key_value_heads) ?? heads;
  out.shape.headDim = parsed?.headDim ?? num(config.head_dim) ?? (heads && hidden ? hidden / heads : null);
  out.shape.maxContext = parsed?.contextLength ?? num(config.max_position_embeddings);
  out.shape.layerWindows = parsed?.layerWindows ?? null;
  if (!out.shape.numLayers || !out.shape.numKvHeads || !out.shape.headDim || !hidden) {
    problems.push({ check: 'model-config', message: 'config.json lacks num_hidden_layers, hidden_size, num_attention_heads or head_dim', hint: REDOWNLOAD });
  }
  const q = out.quantization;
  out.dtype = q ? `q${q.bits}` : typeof config.torch_dtype === 'string' ? config.torch_dtype : (out.shape.floatDtype ?? null);
}
