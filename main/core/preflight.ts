// Preflight: validates everything a launch depends on and returns a structured report, used by
// `mlx-bar check` (main/cli/check.ts) and at the start of `serve`. Never throws for bad input: every
// problem is a check with status ok | warn | error, a message a user can act on, and a hint.
// Messages name files relative to the model folder ("config.json", "model-00001-of-00002.safetensors")
// and call folders "the model folder"/"the data folder"; everything is passed through the sanitizer
// too, so the report can be shown in the dashboard.
//
// What the seed's validator got wrong and this does instead: exact file names (not substrings:
// "robin.txt" is not a weights file), the safetensors header of every weight file is read and checked
// (bounded, against the real file size), the shard index is checked against the shards, the
// architecture is checked, a busy port is an error (with a free port suggested) found by binding (not
// a connect probe), a non-numeric env var is an error instead of a crash, native dependencies are
// loaded in a child process so an abort cannot kill the checker, and the port checked is the one
// actually used.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { sanitizeMessage } from '../common/sanitize.ts';
import { loadSettings, type LoadSettingsResult } from '../settings/load.ts';
import type { Settings } from '../settings/schema.ts';
import { isLoopbackHost } from '../server/config.ts';
import { engineProcessEnv, detectLoadedBlas } from '../engine/process/blas.ts';
import { describeModel, supportedModelTypes } from '../engine/model/registry.ts';
import { readSafetensorsHeader, weightStats, type TensorHeader } from '../library/safetensors.ts';
import { estimateFit, type ModelShape } from '../library/fit.ts';
import { capabilitiesDir, choosePolicy, describeCapabilities, getCapabilities, type MlxCapabilities, type PolicyChoice } from '../engine/probe/index.ts';
import { modelsDirOf } from '../library/paths.ts';
import { isValidRepoId, modelDirName, parseRepoSpec } from '../library/validate.ts';
import { readSystemMemory } from '../hardening/memory.ts';
import { isDemoModelId } from './demo-model.ts';

export type CheckStatus = 'ok' | 'warn' | 'error';
export interface PreflightCheck {
  id: string;
  status: CheckStatus;
  message: string;
  hint: string | null;
}
export interface PreflightReport {
  ok: boolean;
  checks: PreflightCheck[];
  /** The settings the launch would use (null only if loading them failed outright). */
  settings: Settings | null;
  /** A free port on the configured host when the configured one is busy. */
  suggestedPort: number | null;
  /** An MLX Bar server already listening on the configured port (then `ok` is false, exit code 3). */
  running?: RunningMlxBar | null;
  /** Facts gathered on the way (for `serve` and the dashboard). */
  model: { dir: string | null; architecture: string | null; parameters: number | null; weightFiles: number } | null;
  /** The MLX capability probe of this build (null: skipped, failed, or dtypePolicy float32). */
  capabilities?: MlxCapabilities | null;
  /** The dtype policy serve would use, with its reasons. */
  dtypePolicy?: PolicyChoice | null;
}

export interface PreflightOptions {
  /** Setting path → raw value, from the command line (parseSettingFlags(...).flags). */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Precomputed settings (e.g. serve already loaded them). */
  loaded?: LoadSettingsResult;
  /** Move a bad settings file aside (serve) or only report it (check, default). */
  repairSettings?: boolean;
  /** A missing model is an error (serve) or a warning (check, default). */
  requireModel?: boolean;
  /** Skip the port bind test (e.g. the caller binds itself right after). */
  skipPortCheck?: boolean;
  /** serve --demo: the built-in demo model is used, no model folder is checked. */
  demo?: boolean;
  /** Skip loading MLX in a child process. */
  skipNative?: boolean;
  nativeTimeoutMs?: number;
}

// The one list of supported architectures is the engine's family registry (pure data, no MLX).
const REQUIRED_MODEL_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const;
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MAX_INDEX_BYTES = 32 * 1024 * 1024;
const MB = 1024 * 1024;

const fmtBytes = (b: number) => (b >= 1024 * MB ? `${(b / (1024 * MB)).toFixed(1)} GB` : `${Math.round(b / MB)} MB`);
/** A file name from a model folder or index, safe to print. */
const fname = (s: string) => `"${s.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 80)}"`;

// ---------------------------------------------------------------- port

/** Tries to bind host:port exclusively; resolves null when free, else the error code. */
export function probePort(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'ERROR'));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(null)));
  });
}

/** A port the OS says is free on host right now (bind to port 0). */
export function findFreePort(host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const a = srv.address();
      const p = a && typeof a === 'object' ? a.port : null;
      srv.close(() => resolve(p));
    });
  });
}

/** An MLX Bar server found on a busy port (GET /health answered as MLX Bar). */
export interface RunningMlxBar {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  version: string | null;
  /** The model it serves (its /health `model`), printable and short. */
  model: string | null;
  demo: boolean;
  /** Its /health status (ok, loading, …). */
  status: string;
}

const HEALTH_MAX_BYTES = 64 * 1024;
const printable = (v: unknown, max: number) => (typeof v === 'string' ? v.replace(/[^\x20-\x7e]/g, '?').slice(0, max) : null);

/**
 * Asks the program on host:port whether it is an MLX Bar server: GET /health (public, no key),
 * a short timeout and a bounded body, so any other program on the port (or one that never answers)
 * is simply "not MLX Bar". Recognised by `service: "mlx-bar"`, or by the /health shape of versions
 * before that field (status + engine.state + uptime_seconds + requests).
 */
export async function probeMlxBar(host: string, port: number, timeoutMs = 2000): Promise<RunningMlxBar | null> {
  const h = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    if (!(res.headers.get('content-type') ?? '').includes('application/json') || !res.body) {
      await res.body?.cancel().catch(() => {});
      return null;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += c.byteLength;
      if (size > HEALTH_MAX_BYTES) return null;
      chunks.push(Buffer.from(c));
    }
    const b = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    if (!b || typeof b !== 'object') return null;
    const engine = b.engine as { state?: unknown } | undefined;
    const olderShape = typeof b.status === 'string' && typeof engine?.state === 'string' && typeof b.uptime_seconds === 'number' && 'requests' in b;
    if (b.service !== 'mlx-bar' && !olderShape) return null;
    return { url, version: printable(b.version, 40), model: printable(b.model, 80), demo: b.demo === true, status: printable(b.status, 20) ?? 'unknown' };
  } catch {
    return null;
  }
}

/** One line naming the server found: "MLX Bar 0.1.0 … serving "id" (the DEMO model)". */
export function describeRunning(r: RunningMlxBar): string {
  return `MLX Bar${r.version && r.version !== 'unknown' ? ` ${r.version}` : ''} is already running on ${r.url}${r.model ? `, serving "${r.model}"${r.demo ? ' (the DEMO model)' : ''}` : ''}${r.status !== 'ok' ? ` (status: ${r.status})` : ''}`;
}

async function checkPort(s: Settings, out: PreflightCheck[], skipBind: boolean, found: { running: RunningMlxBar | null }): Promise<number | null> {
  const { port, host } = s;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    out.push({ id: 'port', status: 'error', message: `Port ${String(port)} is outside 1–65535`, hint: 'Use --port with a number between 1024 and 65535' });
    return null;
  }
  if (port === 0) {
    out.push({ id: 'port', status: 'ok', message: 'Port 0: a free port will be picked at start', hint: null });
    return null;
  }
  if (port < 1024) out.push({ id: 'port-privileged', status: 'warn', message: `Port ${port} is privileged (< 1024) and may need administrator rights`, hint: 'Use a port between 1024 and 65535' });
  if (skipBind) return null;
  const code = await probePort(host, port);
  if (code === null) {
    out.push({ id: 'port', status: 'ok', message: `Port ${port} on ${host} is free`, hint: null });
    return null;
  }
  if (code === 'EADDRINUSE') {
    const free = await findFreePort(host);
    const running = await probeMlxBar(host, port);
    if (running) {
      // Not a problem with this setup: the server the user wants is already there.
      found.running = running;
      out.push({
        id: 'port',
        status: 'warn',
        message: describeRunning(running),
        hint: `Use it: ${running.url}/v1 (dashboard ${running.url}/dashboard/). To start another one, stop it first${free ? ` or use --port ${free}` : ' or choose another --port'}`,
      });
      return free;
    }
    out.push({
      id: 'port',
      status: 'error',
      message: `Port ${port} on ${host} is already in use${free ? `; port ${free} is free` : ''}`,
      hint: free ? `Start with --port ${free} (or stop the program using port ${port})` : 'Choose another port with --port',
    });
    return free;
  }
  if (code === 'EACCES') {
    out.push({ id: 'port', status: 'error', message: `Not allowed to listen on port ${port}`, hint: 'Use a port between 1024 and 65535' });
    return null;
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    out.push({ id: 'port', status: 'error', message: `Host ${host} is not an address of this machine`, hint: 'Use --host 127.0.0.1' });
    return null;
  }
  out.push({ id: 'port', status: 'error', message: `Cannot listen on ${host}:${port} (${code})`, hint: 'Choose another --host/--port' });
  return null;
}

function checkHostPolicy(s: Settings, out: PreflightCheck[]): void {
  const loop = isLoopbackHost(s.host);
  if (!loop && !s.apiKey) {
    out.push({
      id: 'host-policy',
      status: 'error',
      message: `Host ${s.host} is reachable from other machines and no API key is set`,
      hint: 'Set --api-key (or MLXBAR_API_KEY), or use --host 127.0.0.1',
    });
  } else if (!loop) {
    out.push({ id: 'host-policy', status: 'warn', message: `Listening on ${s.host}: other machines can reach the API (an API key is required)`, hint: null });
  } else {
    out.push({ id: 'host-policy', status: 'ok', message: `Loopback only (${s.host})${s.apiKey ? ', API key set' : ''}`, hint: null });
  }
}

// ---------------------------------------------------------------- model folder

function readJsonBounded(file: string, max: number): { ok: true; value: unknown } | { ok: false; reason: string } {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return { ok: false, reason: 'is missing' };
  }
  if (!st.isFile()) return { ok: false, reason: 'is not a file' };
  if (st.size === 0) return { ok: false, reason: 'is empty' };
  if (st.size > max) return { ok: false, reason: `is too large (${fmtBytes(st.size)})` };
  try {
    return { ok: true, value: JSON.parse(fs.readFileSync(file, 'utf8')) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code) return { ok: false, reason: `cannot be read (${(e as NodeJS.ErrnoException).code})` };
    return { ok: false, reason: 'is not valid JSON' };
  }
}

/** Resolves settings.model (a folder, or a library id such as owner/name) to a folder. */
export function resolveModelDir(model: string, dataDir: string): string | null {
  if (!model) return null;
  const asPath = path.resolve(model);
  if (fs.existsSync(asPath)) return asPath;
  try {
    if (isValidRepoId(model.split('@')[0])) return path.join(modelsDirOf(dataDir), modelDirName(parseRepoSpec(model)));
  } catch {
    // not an id either
  }
  return asPath;
}

interface ModelFacts {
  architecture: string | null;
  parameters: number | null;
  numLayers: number | null;
  numKvHeads: number | null;
  headDim: number | null;
  maxContext: number | null;
  weightFiles: number;
  floatDtype?: string | null;
  quantized?: ModelShape['quantized'];
  layerWindows?: ModelShape['layerWindows'];
}

async function checkModel(dir: string, out: PreflightCheck[]): Promise<ModelFacts | null> {
  const push = (id: string, status: CheckStatus, message: string, hint: string | null = null) => out.push({ id, status, message, hint });
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    push('model-folder', 'error', 'The model folder does not exist', 'Pass --model <folder> with a model in the mlx-community layout, or pull one with `mlx-bar pull`');
    return null;
  }
  if (!st.isDirectory()) {
    push('model-folder', 'error', 'The model path is not a folder', 'Pass --model <folder>');
    return null;
  }
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    push('model-folder', 'error', 'The model folder is not readable', 'Check its permissions');
    return null;
  }
  const facts: ModelFacts = { architecture: null, parameters: null, numLayers: null, numKvHeads: null, headDim: null, maxContext: null, weightFiles: 0 };

  // required files, by exact name
  const missing = REQUIRED_MODEL_FILES.filter((f) => {
    try {
      return !fs.statSync(path.join(dir, f)).isFile();
    } catch {
      return true;
    }
  });
  const hasSingle = fs.existsSync(path.join(dir, 'model.safetensors'));
  const hasIndex = fs.existsSync(path.join(dir, 'model.safetensors.index.json'));
  if (!hasSingle && !hasIndex) missing.push('model.safetensors (or model.safetensors.index.json with its shards)' as never);
  if (missing.length) {
    push('model-files', 'error', `The model folder is missing ${missing.join(', ')}`, 'A model folder needs config.json, tokenizer.json, tokenizer_config.json and model.safetensors (or an index with all its shards)');
  } else {
    push('model-files', 'ok', 'config.json, tokenizer.json, tokenizer_config.json and weights are present', null);
  }

  // config.json + architecture
  let config: Record<string, unknown> | null = null;
  if (!missing.includes('config.json' as never)) {
    const r = readJsonBounded(path.join(dir, 'config.json'), MAX_JSON_BYTES);
    if (!r.ok) push('model-config', 'error', `config.json ${r.reason}`, 'Re-download the model');
    else if (!r.value || typeof r.value !== 'object' || Array.isArray(r.value)) push('model-config', 'error', 'config.json must contain a JSON object', 'Re-download the model');
    else config = r.value as Record<string, unknown>;
  }
  if (config) {
    const mt = config.model_type;
    if (typeof mt !== 'string') {
      push('model-architecture', 'error', 'config.json has no model_type', `Supported: ${supportedModelTypes().join(', ')}`);
    } else if (!supportedModelTypes().includes(mt)) {
      push('model-architecture', 'error', `model_type ${fname(mt)} is not supported`, `Supported: ${supportedModelTypes().join(', ')}`);
    } else {
      facts.architecture = mt;
      push('model-architecture', 'ok', `Architecture ${mt}`, null);
    }
    const int = (v: unknown) => (Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : null);
    // The engine's own parser knows each family's fields (Gemma 3 multimodal keeps them in
    // text_config; sliding-window layers); the raw top-level fields are the fallback.
    const parsed = describeModel(config, null).config;
    const heads = parsed?.numHeads ?? int(config.num_attention_heads);
    const hidden = parsed?.hiddenSize ?? int(config.hidden_size);
    facts.numLayers = parsed?.numLayers ?? int(config.num_hidden_layers);
    facts.numKvHeads = parsed?.numKvHeads ?? int(config.num_key_value_heads) ?? heads;
    facts.headDim = parsed?.headDim ?? int(config.head_dim) ?? (heads && hidden ? Math.floor(hidden / heads) : null);
    facts.maxContext = parsed?.contextLength ?? int(config.max_position_embeddings);
    facts.layerWindows = parsed?.layerWindows ?? null;
    if (!facts.numLayers || !facts.numKvHeads || !facts.headDim || !hidden) {
      push('model-config', 'error', 'config.json lacks num_hidden_layers, hidden_size, num_attention_heads or head_dim', 'Re-download the model');
    }
  }

  // tokenizer files: parseable (tokenizer.json may be large: only its opening is checked)
  if (!missing.includes('tokenizer_config.json' as never)) {
    const r = readJsonBounded(path.join(dir, 'tokenizer_config.json'), MAX_JSON_BYTES);
    if (!r.ok) push('model-tokenizer', 'error', `tokenizer_config.json ${r.reason}`, 'Re-download the model');
  }
  if (!missing.includes('tokenizer.json' as never)) {
    try {
      const fd = fs.openSync(path.join(dir, 'tokenizer.json'), 'r');
      try {
        const head = Buffer.alloc(64);
        const n = fs.readSync(fd, head, 0, 64, 0);
        if (n === 0 || !head.subarray(0, n).toString('utf8').trimStart().startsWith('{')) push('model-tokenizer', 'error', 'tokenizer.json is not a JSON object', 'Re-download the model');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      push('model-tokenizer', 'error', 'tokenizer.json cannot be read', 'Check its permissions');
    }
  }

  // weights: the shard list (single file or index), every header, index ↔ shards consistency
  let shards: string[] = [];
  let weightMap: Record<string, string> | null = null;
  if (hasIndex) {
    const r = readJsonBounded(path.join(dir, 'model.safetensors.index.json'), MAX_INDEX_BYTES);
    const wm = r.ok ? (r.value as { weight_map?: unknown })?.weight_map : undefined;
    if (!r.ok) push('model-index', 'error', `model.safetensors.index.json ${r.reason}`, 'Re-download the model');
    else if (!wm || typeof wm !== 'object' || Array.isArray(wm) || Object.keys(wm).length === 0) push('model-index', 'error', 'model.safetensors.index.json has no weight_map', 'Re-download the model');
    else {
      weightMap = wm as Record<string, string>;
      const names = new Set<string>();
      let bad: string | null = null;
      for (const v of Object.values(weightMap)) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9._-]{1,200}\.safetensors$/.test(v) || v.startsWith('.')) {
          bad = String(v);
          break;
        }
        names.add(v);
      }
      if (bad !== null) {
        push('model-index', 'error', `model.safetensors.index.json names an invalid shard file ${fname(bad)}`, 'Shards must be plain .safetensors file names inside the model folder');
        weightMap = null;
      } else {
        shards = [...names].sort();
        const absent = shards.filter((s) => !fs.existsSync(path.join(dir, s)));
        if (absent.length) {
          push('model-index', 'error', `The index lists ${absent.length === 1 ? 'a shard that is' : `${absent.length} shards that are`} missing: ${absent.slice(0, 3).map(fname).join(', ')}${absent.length > 3 ? ', …' : ''}`, 'Re-download the model (an interrupted download?)');
          shards = shards.filter((s) => !absent.includes(s));
          weightMap = null;
        }
      }
    }
  } else if (hasSingle) {
    shards = ['model.safetensors'];
  }
  const tensors = new Map<string, TensorHeader>();
  const tensorFile = new Map<string, string>();
  let headerErrors = 0;
  for (const s of shards) {
    try {
      const h = await readSafetensorsHeader(path.join(dir, s));
      for (const [k, v] of h) {
        tensors.set(k, v);
        tensorFile.set(k, s);
      }
      facts.weightFiles++;
    } catch (e) {
      headerErrors++;
      const why = (e as Error).name === 'SafetensorsError' ? (e as Error).message : ((e as NodeJS.ErrnoException).code ?? 'unreadable');
      push('model-weights', 'error', `${fname(s)} has an unreadable safetensors header (${why})`, 'The file is truncated or corrupt: re-download the model');
    }
  }
  if (weightMap && headerErrors === 0) {
    const wrong = Object.entries(weightMap).filter(([t, f]) => tensorFile.get(t) !== f);
    if (wrong.length) {
      push('model-index', 'error', `${wrong.length} tensor${wrong.length > 1 ? 's' : ''} listed in the index ${wrong.length > 1 ? 'are' : 'is'} not in the named shard (e.g. ${fname(wrong[0][0])})`, 'Re-download the model');
    } else {
      push('model-index', 'ok', `Index consistent with ${shards.length} shard${shards.length > 1 ? 's' : ''}`, null);
    }
  }
  if (shards.length && headerErrors === 0 && tensors.size === 0) push('model-weights', 'error', 'The weights contain no tensors', 'Re-download the model');
  else if (shards.length && headerErrors === 0) {
    const q = config?.quantization as { group_size?: unknown } | undefined;
    const gs = q && Number.isSafeInteger(q.group_size) ? (q.group_size as number) : null;
    const ws = weightStats(tensors, gs);
    facts.parameters = ws.parameters;
    facts.floatDtype = ws.floatDtype ? ({ F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as Record<string, string>)[ws.floatDtype] ?? null : null;
    facts.quantized = ws.quantizedParameters > 0 ? { parameters: ws.quantizedParameters, packedBytes: ws.packedBytes, scaleElements: ws.scaleElements } : null;
    push('model-weights', 'ok', `${tensors.size} tensors, ${(ws.parameters / 1e6).toFixed(1)}M parameters${ws.quantized ? ' (quantized checkpoint)' : ws.floatDtype ? ` (${ws.floatDtype})` : ''}`, null);
  }
  return facts;
}

function checkMemoryFit(facts: ModelFacts, s: Settings, out: PreflightCheck[], policy: PolicyChoice): void {
  const sys = readSystemMemory();
  // "auto": the server caps the context to what fits in its memory budget (the hard watermark, 90 % of
  // RAM by default) next to the weights; the same sizing here, and no "not available right now" warning.
  const auto = s.contextLength === 'auto';
  const ctx = s.contextLength === 'auto' ? 'auto' : s.contextLength > 0 ? s.contextLength : (facts.maxContext ?? 4096);
  const shape: ModelShape = {
    parameters: facts.parameters,
    numLayers: facts.numLayers,
    numKvHeads: facts.numKvHeads,
    headDim: facts.headDim,
    maxContext: facts.maxContext,
    floatDtype: facts.floatDtype ?? null,
    quantized: facts.quantized ?? null,
    layerWindows: facts.layerWindows ?? null,
  };
  const vsTotal = estimateFit(shape, { contextTokens: ctx, availableBytes: Math.floor(sys.totalBytes * 0.9), policy });
  if (!Number.isFinite(vsTotal.needBytes)) {
    out.push({ id: 'memory-fit', status: 'error', message: 'The memory this model needs could not be estimated', hint: 'Check config.json and the weights' });
    return;
  }
  const avail = sys.availableBytes;
  const held = vsTotal.packed ? `packed, ${vsTotal.computeDtype} compute` : `in ${vsTotal.computeDtype}`;
  const explain = `weights ${fmtBytes(vsTotal.weightsBytes)} ${held} + KV cache ${fmtBytes(vsTotal.kvBytes)} for ${vsTotal.contextTokens} tokens + ${fmtBytes(vsTotal.overheadBytes)} runtime = ${fmtBytes(vsTotal.needBytes)}`;
  if (!vsTotal.fits) {
    out.push({ id: 'memory-fit', status: 'error', message: `The model does not fit in this machine's memory: ${explain}, RAM ${fmtBytes(sys.totalBytes)}`, hint: 'Use a smaller model or a smaller --context-length' });
  } else if (!auto && avail !== null && vsTotal.needBytes > avail) {
    out.push({ id: 'memory-fit', status: 'warn', message: `The model needs ${fmtBytes(vsTotal.needBytes)} but only ${fmtBytes(avail)} is available now (${explain})`, hint: 'Close other programs or lower --context-length' });
  } else {
    out.push({ id: 'memory-fit', status: 'ok', message: `Fits: ${explain}; ${avail !== null ? `${fmtBytes(avail)} available` : `RAM ${fmtBytes(sys.totalBytes)}`}`, hint: null });
  }
}

// ---------------------------------------------------------------- data folder

function nearestExisting(p: string): string | null {
  let cur = p;
  for (let i = 0; i < 64; i++) {
    if (fs.existsSync(cur)) return cur;
    const up = path.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
  return null;
}

function checkDataDir(s: Settings, out: PreflightCheck[]): void {
  const dir = s.dataDir;
  let target = dir;
  let exists = false;
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) {
      out.push({ id: 'data-dir', status: 'error', message: 'The data folder path exists but is not a folder', hint: 'Pass --data-dir <folder>' });
      return;
    }
    exists = true;
  } catch {
    const anc = nearestExisting(dir);
    if (!anc) {
      out.push({ id: 'data-dir', status: 'error', message: 'The data folder cannot be created', hint: 'Pass --data-dir <folder>' });
      return;
    }
    target = anc;
  }
  // Writable: a real write test in an existing folder; otherwise a real (removed) sub-folder in
  // the nearest existing ancestor (access(W_OK) lies for root and on read-only mounts).
  try {
    if (exists) {
      const probe = path.join(dir, `.mlxbar-write-test-${process.pid}`);
      fs.writeFileSync(probe, 'ok');
      fs.rmSync(probe, { force: true });
    } else {
      const probeDir = fs.mkdtempSync(path.join(target, '.mlxbar-write-test-'));
      fs.rmdirSync(probeDir);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    out.push({
      id: 'data-dir',
      status: 'error',
      message: exists ? `The data folder is not writable (${code})` : `The data folder cannot be created: its parent is not writable (${code})`,
      hint: 'Fix its permissions or pass another --data-dir',
    });
    return;
  }
  // Free disk for the cache budget.
  const budget = (s.responseCache.enabled ? s.responseCache.maxBytes : 0) + (s.prefixCache.persist ? s.prefixCache.maxBytes : 0);
  let free: number | null = null;
  try {
    const sf = fs.statfsSync(target);
    free = Number(sf.bavail) * Number(sf.bsize);
  } catch {
    free = null;
  }
  const where = exists ? 'The data folder is writable' : 'The data folder will be created';
  if (free === null) {
    out.push({ id: 'data-dir', status: 'ok', message: `${where} (free disk space unknown)`, hint: null });
  } else if (free < 64 * MB) {
    out.push({ id: 'data-dir', status: 'error', message: `${where} but only ${fmtBytes(free)} of disk is free`, hint: 'Free some disk space' });
  } else if (free < budget) {
    out.push({ id: 'data-dir', status: 'warn', message: `${fmtBytes(free)} of disk is free, less than the cache budget of ${fmtBytes(budget)}; caches will stop growing when the disk fills`, hint: 'Lower prefixCache.maxBytes / responseCache.maxBytes or free disk space' });
  } else {
    out.push({ id: 'data-dir', status: 'ok', message: `${where}; ${fmtBytes(free)} free for a cache budget of ${fmtBytes(budget)}`, hint: null });
  }
}

// ---------------------------------------------------------------- native dependencies (child process)

const PROBE_SCRIPT = `
const t0 = Date.now();
const out = { loaded: false, matmul: false, ms: 0, blasFiles: [] };
try {
  const mlx = require(process.env.MLXBAR_PROBE_MLX);
  out.loaded = true;
  const mx = mlx.core;
  const a = mx.ones([32, 32], mx.float32);
  const b = mx.matmul(a, a);
  mx.eval(b);
  out.matmul = b.index(0, 0).item() === 32;
} catch (e) {
  out.error = String(e && e.message || e).split('\\n')[0].slice(0, 200);
}
try {
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  const files = new Set();
  for (const l of maps.split('\\n')) { const i = l.indexOf('/'); if (i >= 0 && /blas|lapack/i.test(l)) files.add(l.slice(i).trim()); }
  out.blasFiles = [...files];
} catch {}
out.ms = Date.now() - t0;
process.stdout.write(JSON.stringify(out));
`;

export interface NativeProbeResult {
  status: 'ok' | 'missing' | 'failed' | 'crashed' | 'timeout';
  blas: 'openblas' | 'reference' | 'unknown';
  detail: string;
  ms: number;
}

/** Loads MLX and runs one float32 matmul in a child process with the engine's environment
 *  (OpenBLAS first on LD_LIBRARY_PATH, see main/engine/process/blas.ts). */
export function probeNative(env: NodeJS.ProcessEnv = process.env, timeoutMs = 30_000): Promise<NativeProbeResult> {
  let mlxPath: string;
  try {
    mlxPath = createRequire(import.meta.url).resolve('@frost-beta/mlx');
  } catch {
    return Promise.resolve({ status: 'missing', blas: 'unknown', detail: '@frost-beta/mlx is not installed', ms: 0 });
  }
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['-e', PROBE_SCRIPT], {
      env: { ...engineProcessEnv(env), MLXBAR_PROBE_MLX: mlxPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout = (stdout + d).slice(-1_000_000)));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', () => {
      clearTimeout(timer);
      resolve({ status: 'failed', blas: 'unknown', detail: 'could not start a child process', ms: Date.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (timedOut) return resolve({ status: 'timeout', blas: 'unknown', detail: `no answer within ${Math.round(timeoutMs / 1000)} s`, ms });
      let r: { loaded?: boolean; matmul?: boolean; error?: string; blasFiles?: string[] } = {};
      try {
        r = JSON.parse(stdout);
      } catch {
        // crashed before printing
      }
      const blas = process.platform === 'linux' && r.blasFiles ? detectLoadedBlas(r.blasFiles.map((f) => `0-0 r-xp 0 0:0 0 ${f}`).join('\n')) : 'unknown';
      if (signal || (code !== 0 && !r.loaded)) {
        const last = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
        return resolve({ status: 'crashed', blas, detail: `the MLX binding aborted (${signal ?? `exit ${code}`})${last ? `: ${last.slice(0, 160)}` : ''}`, ms });
      }
      if (!r.loaded) return resolve({ status: 'failed', blas, detail: `the MLX binding did not load${r.error ? `: ${r.error}` : ''}`, ms });
      if (!r.matmul) return resolve({ status: 'failed', blas, detail: `a float32 matmul failed${r.error ? `: ${r.error}` : ''}`, ms });
      resolve({ status: 'ok', blas, detail: 'MLX loaded and a float32 matmul ran', ms });
    });
  });
}

async function checkNative(env: NodeJS.ProcessEnv, out: PreflightCheck[], timeoutMs: number): Promise<void> {
  const r = await probeNative(env, timeoutMs);
  if (r.status === 'ok') out.push({ id: 'native-mlx', status: 'ok', message: `${r.detail} (${r.ms} ms, in a child process)`, hint: null });
  else
    out.push({
      id: 'native-mlx',
      status: 'error',
      message: `MLX is not usable: ${r.detail}`,
      hint: r.status === 'missing' ? 'Run npm ci in the app folder' : 'Install the runtime libraries: apt-get install libblas3 liblapack3 libopenblas0-pthread',
    });
  if (process.platform !== 'linux') return;
  if (r.blas === 'openblas') out.push({ id: 'blas', status: 'ok', message: 'OpenBLAS is active', hint: null });
  else if (r.blas === 'reference')
    out.push({
      id: 'blas',
      status: 'warn',
      message: 'The reference BLAS is in use: prompt processing will be 30–70× slower than with OpenBLAS',
      hint: 'apt-get install libopenblas0-pthread, or set MLXBAR_BLAS_DIR to a folder with an OpenBLAS libblas.so.3',
    });
  else if (r.status === 'ok') out.push({ id: 'blas', status: 'warn', message: 'Could not tell which BLAS library MLX loaded', hint: null });
}

// ---------------------------------------------------------------- entry point

export async function runPreflight(opts: PreflightOptions = {}): Promise<PreflightReport> {
  const env = opts.env ?? process.env;
  const checks: PreflightCheck[] = [];
  let loaded: LoadSettingsResult | null = opts.loaded ?? null;
  if (!loaded) {
    try {
      loaded = loadSettings({ flags: opts.flags, env, repair: opts.repairSettings ?? false });
    } catch (e) {
      checks.push({ id: 'settings', status: 'error', message: `Settings could not be loaded: ${sanitizeMessage(e)}`, hint: null });
    }
  }
  let suggestedPort: number | null = null;
  const found: { running: RunningMlxBar | null } = { running: null };
  let model: PreflightReport['model'] = null;
  let policy: PolicyChoice = choosePolicy('float32', null);
  const report: Pick<PreflightReport, 'capabilities' | 'dtypePolicy'> = { capabilities: null, dtypePolicy: null };
  if (loaded) {
    for (const e of loaded.errors) checks.push({ id: e.source === 'env' ? 'env' : 'flags', status: 'error', message: e.message, hint: `Fix ${e.where}` });
    for (const w of loaded.warnings) checks.push({ id: w.source === 'file' ? 'settings-file' : 'settings', status: 'warn', message: `${w.where} — ${w.message}`, hint: null });
    if ((loaded.file.status === 'invalid' || loaded.file.status === 'corrupt') && !loaded.file.movedTo) {
      checks.push({ id: 'settings-file', status: 'warn', message: 'config.json has problems: the server will keep it aside (config.json.invalid-<time>) and use defaults for the bad values', hint: 'Fix or delete config.json in the data folder' });
    }
    if (!loaded.errors.length && !loaded.warnings.length) checks.push({ id: 'settings', status: 'ok', message: loaded.file.status === 'missing' ? 'No settings file yet: defaults, environment and flags are used' : 'Settings file, environment and flags are valid', hint: null });
    const s = loaded.settings;
    checkHostPolicy(s, checks);
    suggestedPort = await checkPort(s, checks, !!opts.skipPortCheck, found);
    checkDataDir(s, checks);
    // What this MLX build can do (probed once per binary in child processes, cached in the data
    // folder) and the dtype policy it gives with the dtypePolicy setting; the memory fit uses it.
    let capabilities: MlxCapabilities | null = null;
    if (!opts.skipNative && s.dtypePolicy !== 'float32') {
      try {
        capabilities = await getCapabilities(capabilitiesDir(s.dataDir, env), { env });
      } catch (e) {
        checks.push({ id: 'mlx-probe', status: 'warn', message: `The MLX capability probe failed: ${sanitizeMessage(e)}`, hint: 'The engine will compute in float32' });
      }
    }
    policy = choosePolicy(s.dtypePolicy, capabilities);
    report.capabilities = capabilities;
    report.dtypePolicy = policy;
    if (capabilities) {
      const [build, ...rest] = describeCapabilities(capabilities);
      checks.push({ id: 'mlx-probe', status: 'ok', message: build, hint: null });
      for (const line of rest) checks.push({ id: 'mlx-probe', status: 'ok', message: line, hint: null });
    }
    checks.push({ id: 'dtype-policy', status: 'ok', message: `${policy.mode} policy (dtypePolicy "${s.dtypePolicy}"), because:`, hint: null });
    for (const r of policy.reasons) checks.push({ id: 'dtype-policy', status: 'ok', message: `  ${r}`, hint: null });
    // The demo model's id (what /v1/models and `mlx-bar models` show for it) means --demo.
    const demo = opts.demo || isDemoModelId(s.model);
    const dir = demo ? null : resolveModelDir(s.model, s.dataDir);
    if (demo) {
      checks.push({ id: 'model-folder', status: 'ok', message: 'The built-in DEMO model (random weights) will be served', hint: null });
    } else if (!dir) {
      checks.push({
        id: 'model-folder',
        status: opts.requireModel ? 'error' : 'warn',
        message: 'No model is configured',
        hint: 'Pass --model <folder | owner/repo> (or set MLXBAR_MODEL), or --demo to try the built-in random-weight demo model',
      });
    } else {
      const facts = await checkModel(dir, checks);
      if (facts) {
        model = { dir, architecture: facts.architecture, parameters: facts.parameters, weightFiles: facts.weightFiles };
        if (facts.parameters) checkMemoryFit(facts, s, checks, policy);
      }
    }
  }
  if (!opts.skipNative) await checkNative(env, checks, opts.nativeTimeoutMs ?? 30_000);
  for (const c of checks) {
    c.message = sanitizeMessage(c.message);
    if (c.hint) c.hint = sanitizeMessage(c.hint);
  }
  return { ok: !checks.some((c) => c.status === 'error') && !found.running, checks, settings: loaded?.settings ?? null, suggestedPort, model, running: found.running, ...report };
}

const ICON: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', error: '✖' };
const COLOR: Record<CheckStatus, string> = { ok: '\x1b[32m', warn: '\x1b[33m', error: '\x1b[31m' };

/** Human-readable report (one line per check, hints indented below problems, summary last). */
export function formatReport(r: PreflightReport, opts: { color?: boolean } = {}): string {
  const w = Math.max(...r.checks.map((c) => c.id.length), 4);
  const lines = ['MLX Bar preflight check', ''];
  for (const c of r.checks) {
    const icon = opts.color ? `${COLOR[c.status]}${ICON[c.status]}\x1b[0m` : ICON[c.status];
    lines.push(`  ${icon} ${c.id.padEnd(w)}  ${c.message}`);
    if (c.hint && c.status !== 'ok') lines.push(`    ${' '.repeat(w)}  → ${c.hint}`);
  }
  const errors = r.checks.filter((c) => c.status === 'error').length;
  const warns = r.checks.filter((c) => c.status === 'warn').length;
  lines.push('');
  lines.push(
    errors
      ? `${errors} error${errors > 1 ? 's' : ''}, ${warns} warning${warns === 1 ? '' : 's'}: the server would not start.`
      : r.running
        ? `No errors, but MLX Bar is already running on this port: use that server, or stop it before starting another here.`
        : `No errors${warns ? `, ${warns} warning${warns > 1 ? 's' : ''}` : ''}: ready to serve.`,
  );
  return lines.join('\n') + '\n';
}

/** Total RAM, for callers that want to show it next to the report. */
export const totalRamBytes = () => os.totalmem();
