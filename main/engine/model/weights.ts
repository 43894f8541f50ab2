// Loads a checkpoint (model.safetensors, or shards listed in model.safetensors.index.json) and turns
// it into the weights the forward pass uses, applying the dtype policy one layer at a time and
// evaluating as it goes so peak memory stays near the final in-memory size.
import { core as mx } from '@frost-beta/mlx';
import path from 'node:path';
import type { ModelConfig } from './config.ts';
import { FLOAT_DTYPE_NAMES, INDEX_FILE, listCheckpointFiles, readSafetensorsHeaderSync } from '../model-folder/index.ts';
import type { DtypePolicy, KBlockPlan, KBlockRole, LinearWeight, RawModuleTensors } from './dtype-policy.ts';
import { kBlockWidth, toKBlocks } from './linear.ts';
import { loadMoeWeights, moeArrays, type MoeWeights } from './moe.ts';

export class WeightsError extends Error {
  override name = 'WeightsError';
}

export interface LayerWeights {
  inputNorm: mx.array;
  /** The norm before the MLP (post_attention_layernorm; Gemma: pre_feedforward_layernorm). */
  postNorm: mx.array;
  q: LinearWeight;
  k: LinearWeight;
  v: LinearWeight;
  /**
   * q, k and v as ONE [qDim + 2·kvDim, hidden] matrix (rows q, then k, then v) when the forward pass
   * should use it; `q`/`k`/`v` are then row views of it. One matrix-vector product per layer instead
   * of three: fewer BLAS calls (each has a fixed thread wake-up cost) over a larger matrix. Dense
   * weights only (packed ones stay separate: see fuseRows).
   */
  qkv: LinearWeight | null;
  o: LinearWeight;
  qNorm: mx.array | null;
  kNorm: mx.array | null;
  /** Dense MLP (null on sparse-MoE layers). */
  gate: LinearWeight | null;
  up: LinearWeight | null;
  /** gate and up as one [2·intermediate, hidden] matrix (gate rows first); `gate`/`up` are its row views. */
  gateUp: LinearWeight | null;
  down: LinearWeight | null;
  /** Sparse-MoE MLP (Qwen3-MoE layers), else null. */
  moe: MoeWeights | null;
  /** Gemma: norm of the attention output (post_attention_layernorm) and of the MLP output. */
  attnOutNorm: mx.array | null;
  mlpOutNorm: mx.array | null;
}

/** What a family-specific loader (moe.ts) needs from the checkpoint being read. */
export interface WeightLoader {
  tensors: Map<string, mx.array>;
  policy: DtypePolicy;
  quantFor(stem: string): { groupSize: number; bits: number } | null;
  /** A linear module `stem` checked against [outDim, inDim]. */
  lin(stem: string, outDim: number, inDim: number, bias: boolean): LinearWeight;
  /** The raw tensors of module `stem` (removed from the map), or null when `stem.weight` is absent. */
  takeRaw(stem: string): RawModuleTensors | null;
  /** Adds to the parameter count. */
  count(n: number): void;
  error(message: string): Error;
}

export interface ModelWeights {
  /** Embedding table as a linear weight [vocab, hidden] (dense or quantized); rows are looked up. */
  embed: LinearWeight;
  layers: LayerWeights[];
  norm: mx.array;
  /** Output projection; the same object as `embed` when embeddings are tied. */
  lmHead: LinearWeight;
}

export interface CheckpointInfo {
  /** Safetensors file names (no directories), in load order. */
  files: string[];
  /** What the checkpoint stores, e.g. float32 | bfloat16 | float16 | q4 | q8. */
  checkpointDtype: string;
  numParameters: number;
}

/**
 * The checkpoint's float dtype (float32 | bfloat16 | float16), read from a safetensors header
 * without loading anything: the embedding's scales for a quantized checkpoint, else its weight.
 * mlx-lm computes in this dtype; null when it cannot be told.
 */
export function peekCheckpointFloatDtype(dir: string): string | null {
  try {
    const { files, weightMap } = listCheckpointFiles(dir);
    const want = ['model.embed_tokens.scales', 'model.embed_tokens.weight'];
    const file = (weightMap && (weightMap[want[0]] ?? weightMap[want[1]])) || files[0];
    const header = readSafetensorsHeaderSync(path.join(dir, file));
    for (const name of want) {
      const d = header.get(name)?.dtype;
      if (d) return FLOAT_DTYPE_NAMES[d] ?? null;
    }
    return null;
  } catch {
    return null;
  }
}

/** Reads every tensor (lazily, as MLX does) and checks the index matches the shards exactly. */
export function loadCheckpointTensors(dir: string): { tensors: Map<string, mx.array>; files: string[] } {
  const { files, weightMap } = listCheckpointFiles(dir);
  const tensors = new Map<string, mx.array>();
  for (const f of files) {
    let loaded: Record<string, mx.array>;
    try {
      loaded = mx.load(path.join(dir, f)) as unknown as Record<string, mx.array>;
    } catch {
      throw new WeightsError(`cannot read safetensors file "${f}"`);
    }
    for (const [name, arr] of Object.entries(loaded)) {
      if (weightMap && weightMap[name] !== f) {
        throw new WeightsError(
          weightMap[name] === undefined
            ? `${INDEX_FILE} is inconsistent: shard "${f}" holds tensor "${name}", which the index does not list`
            : `${INDEX_FILE} is inconsistent: tensor "${name}" is in shard "${f}" but the index says "${weightMap[name]}"`,
        );
      }
      if (tensors.has(name)) throw new WeightsError(`tensor "${name}" appears in more than one shard`);
      tensors.set(name, arr);
    }
  }
  if (weightMap) {
    for (const [name, f] of Object.entries(weightMap)) {
      if (!tensors.has(name)) {
        throw new WeightsError(`${INDEX_FILE} is inconsistent: it lists tensor "${name}" in shard "${f}", which does not contain it`);
      }
    }
  }
  return { tensors, files };
}

function take(tensors: Map<string, mx.array>, name: string): mx.array {
  const t = tensors.get(name);
  if (!t) throw new WeightsError(`checkpoint is missing tensor "${name}"`);
  tensors.delete(name); // drop our reference so the raw (half/packed) copy can be freed once converted
  return t;
}

function takeModule(tensors: Map<string, mx.array>, stem: string, withBias: boolean): RawModuleTensors {
  const weight = take(tensors, `${stem}.weight`);
  const scales = tensors.get(`${stem}.scales`);
  const biases = tensors.get(`${stem}.biases`);
  tensors.delete(`${stem}.scales`);
  tensors.delete(`${stem}.biases`);
  const bias = withBias ? take(tensors, `${stem}.bias`) : undefined;
  return { weight, scales, biases, bias };
}

function linearShape(w: LinearWeight): [number, number] {
  if (w.kind === 'dense') return [w.weight.shape[0], w.weight.shape[1]];
  if (w.kind === 'kblocks') return [w.blocks.shape[1], w.blocks.shape[0] * w.width];
  return [w.weight.shape[0], (w.weight.shape[1] * 32) / w.bits];
}

function expectShape(w: LinearWeight, outDim: number, inDim: number, name: string) {
  const [o, i] = linearShape(w);
  if (o !== outDim || i !== inDim) {
    throw new WeightsError(`tensor "${name}" has shape [${o}, ${i}] but config.json implies [${outDim}, ${inDim}]`);
  }
}

export function linearArrays(w: LinearWeight): mx.array[] {
  // A K-blocked weight's `parts` are views of `blocks` (not counted).
  const out = [w.kind === 'kblocks' ? w.blocks : w.weight];
  if (w.kind === 'quantized') out.push(w.scales, w.biases);
  if (w.bias) out.push(w.bias);
  return out;
}

/** Rows [from, to) of a linear weight (a fused projection's part), kept in the same form. */
function rowSlice(w: LinearWeight, from: number, to: number): LinearWeight {
  const rows = (a: mx.array) => a.index(mx.Slice(from, to));
  const bias = w.bias ? rows(w.bias) : null;
  if (w.kind === 'dense') return { kind: 'dense', weight: rows(w.weight), bias };
  if (w.kind === 'kblocks') {
    // Rows [from, to) of every block: each block's slice is still contiguous.
    const blocks = w.blocks.index(mx.Slice(), mx.Slice(from, to));
    return { kind: 'kblocks', blocks, parts: w.parts.map((_, j) => blocks.index(j).T), width: w.width, bias };
  }
  return { ...w, weight: rows(w.weight), scales: rows(w.scales), biases: rows(w.biases), bias };
}

/**
 * Projections that read the same input, stacked row-wise into one matrix (and their parts as row
 * views of it), so a step runs one matmul instead of several. Only dense weights of one dtype with
 * all-or-no biases are fused; anything else (packed 4/8-bit: per-module bits may differ, and the
 * native policy's guard tests read the separate modules) is returned as it is, with `fused` null.
 */
function fuseRows(parts: LinearWeight[]): { fused: LinearWeight | null; parts: LinearWeight[] } {
  const ws = parts.map((p) => (p.kind === 'dense' ? p.weight : null));
  const dense = ws.every((w) => w && w.dtype === ws[0]!.dtype);
  const biases = parts.filter((p) => p.bias).length;
  if (!dense || (biases !== 0 && biases !== parts.length)) return { fused: null, parts };
  const weight = mx.concatenate(ws as mx.array[], 0);
  const bias = biases ? mx.concatenate(parts.map((p) => p.bias!), 0) : null;
  const fused: LinearWeight = { kind: 'dense', weight, bias };
  const views: LinearWeight[] = [];
  let row = 0;
  for (const w of ws as mx.array[]) {
    const n = w.shape[0];
    views.push(rowSlice(fused, row, row + n));
    row += n;
  }
  return { fused, parts: views };
}

function describeDtype(tensors: Map<string, mx.array>, quant: ModelConfig['quantization'], prefix: string): string {
  if (quant) return `q${quant.bits}`;
  const e = tensors.get(`${prefix}model.embed_tokens.weight`);
  return e ? String(e.dtype) : 'unknown';
}

/**
 * Builds the compute weights. `afterLayer` runs after each layer is evaluated (the async loader
 * uses it to let the GC free the raw tensors between layers). `fuseProjections: false` keeps q/k/v
 * and gate/up as separate matrices (the bench's A/B; default: fused where fuseRows allows).
 */
export async function buildModelWeights(
  dir: string,
  cfg: ModelConfig,
  policy: DtypePolicy,
  afterLayer: () => Promise<void> = async () => {},
  opts: { fuseProjections?: boolean; kBlocks?: KBlockPlan } = {},
): Promise<{ weights: ModelWeights; info: CheckpointInfo }> {
  const fuse = opts.fuseProjections !== false;
  // Dense float32 matrices the plan names are re-laid out as K-blocks (CPU only: dtype-policy.ts).
  const plan = opts.kBlocks ?? policy.kBlocks ?? {};
  const block = (w: LinearWeight, role: KBlockRole): LinearWeight => {
    const target = plan[role];
    if (!target || w.kind !== 'dense' || w.weight.dtype !== mx.float32) return w;
    const width = kBlockWidth(linearShape(w)[1], target);
    return width ? toKBlocks(w, width) : w;
  };
  const { tensors, files } = loadCheckpointTensors(dir);
  const P = cfg.weightPrefix; // '' or 'language_model.' (multimodal checkpoint: its text model)
  const checkpointDtype = describeDtype(tensors, cfg.quantization, P);
  // Mixed-precision checkpoints override bits/group size per module (or keep it in float).
  const quantFor = (stem: string) => {
    const o = cfg.quantizationOverrides[stem];
    return o === false ? null : (o ?? cfg.quantization);
  };
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  let numParameters = 0;
  const countLinear = (w: LinearWeight) => {
    const [o, i] = linearShape(w);
    numParameters += o * i + (w.bias ? w.bias.size : 0);
  };
  const lin = (stem: string, outDim: number, inDim: number, bias: boolean) => {
    const w = policy.prepareLinear(takeModule(tensors, stem, bias), quantFor(stem));
    expectShape(w, outDim, inDim, `${stem}.weight`);
    countLinear(w);
    return w;
  };
  const dense = (name: string, n: number) => {
    const a = policy.prepareDense(take(tensors, name));
    if (a.ndim !== 1 || a.shape[0] !== n) throw new WeightsError(`tensor "${name}" has the wrong shape`);
    numParameters += n;
    return a;
  };
  // RMSNorm weights; Gemma stores w - 1 and applies (1 + w): the 1 is added here, once.
  const norm = (name: string, n: number) => {
    const a = dense(name, n);
    return cfg.normPlusOne ? mx.add(a, mx.array(1, a.dtype)) : a;
  };
  const loader: WeightLoader = {
    tensors,
    policy,
    quantFor,
    lin,
    takeRaw: (stem) => (tensors.has(`${stem}.weight`) ? takeModule(tensors, stem, false) : null),
    count: (n) => {
      numParameters += n;
    },
    error: (message) => new WeightsError(message),
  };

  // Gemma checkpoints have no lm_head tensor and no tie_word_embeddings flag: tied when absent.
  const tied = cfg.tieWordEmbeddings || (cfg.normPlusOne && !tensors.has(`${P}lm_head.weight`));
  let embed: LinearWeight = lin(`${P}model.embed_tokens`, cfg.vocabSize, cfg.hiddenSize, false);
  // Tied: the one table is laid out for the lm_head's product; lookups gather from its blocks.
  if (tied) embed = block(embed, 'lm_head');
  mx.eval(...linearArrays(embed));
  await afterLayer();

  const layers: LayerWeights[] = [];
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `${P}model.layers.${l}`;
    let q: LinearWeight, k: LinearWeight, v: LinearWeight;
    let qkv: LinearWeight | null = null;
    if (cfg.fusedQkv) {
      // Phi-3 qkv_proj: rows are q, then k, then v.
      qkv = lin(`${p}.self_attn.qkv_proj`, qDim + 2 * kvDim, H, cfg.qkvBias);
      [q, k, v] = [rowSlice(qkv, 0, qDim), rowSlice(qkv, qDim, qDim + kvDim), rowSlice(qkv, qDim + kvDim, qDim + 2 * kvDim)];
      if (qkv.kind !== 'dense') qkv = null; // packed: kept as row views (see fuseRows)
    } else {
      q = lin(`${p}.self_attn.q_proj`, qDim, H, cfg.qkvBias);
      k = lin(`${p}.self_attn.k_proj`, kvDim, H, cfg.qkvBias);
      v = lin(`${p}.self_attn.v_proj`, kvDim, H, cfg.qkvBias);
      if (fuse) ({ fused: qkv, parts: [q, k, v] } = fuseRows([q, k, v]));
    }
    if (qkv) {
      // Blocked: the q/k/v views are re-cut from the blocks (no second copy of the matrix).
      qkv = block(qkv, 'qkv');
      if (qkv.kind === 'kblocks') [q, k, v] = [rowSlice(qkv, 0, qDim), rowSlice(qkv, qDim, qDim + kvDim), rowSlice(qkv, qDim + kvDim, qDim + 2 * kvDim)];
    } else [q, k, v] = [block(q, 'qkv'), block(k, 'qkv'), block(v, 'qkv')];
    const moe = cfg.moe?.sparseLayers[l] ? loadMoeWeights(loader, `${p}.mlp`, cfg) : null;
    let gate: LinearWeight | null = null, up: LinearWeight | null = null, down: LinearWeight | null = null;
    let gateUp: LinearWeight | null = null;
    if (!moe) {
      if (cfg.fusedGateUp) {
        // Phi-3 gate_up_proj: gate rows first, then up.
        const gu = lin(`${p}.mlp.gate_up_proj`, 2 * I, H, cfg.mlpBias);
        [gate, up] = [rowSlice(gu, 0, I), rowSlice(gu, I, 2 * I)];
        if (gu.kind === 'dense') gateUp = gu;
      } else {
        gate = lin(`${p}.mlp.gate_proj`, I, H, cfg.mlpBias);
        up = lin(`${p}.mlp.up_proj`, I, H, cfg.mlpBias);
        if (fuse) ({ fused: gateUp, parts: [gate, up] } = fuseRows([gate, up]));
      }
      if (gateUp) {
        gateUp = block(gateUp, 'gate_up');
        if (gateUp.kind === 'kblocks') [gate, up] = [rowSlice(gateUp, 0, I), rowSlice(gateUp, I, 2 * I)];
      } else [gate, up] = [block(gate!, 'gate_up'), block(up!, 'gate_up')];
      down = block(lin(`${p}.mlp.down_proj`, H, I, cfg.mlpBias), 'down');
    }
    const sandwich = cfg.sandwichNorms;
    const layer: LayerWeights = {
      inputNorm: norm(`${p}.input_layernorm.weight`, H),
      postNorm: norm(`${p}.${sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`, H),
      q,
      k,
      v,
      qkv,
      o: block(lin(`${p}.self_attn.o_proj`, H, qDim, cfg.oBias), 'o'),
      qNorm: cfg.qkNorm ? norm(`${p}.self_attn.q_norm.weight`, cfg.headDim) : null,
      kNorm: cfg.qkNorm ? norm(`${p}.self_attn.k_norm.weight`, cfg.headDim) : null,
      gate,
      up,
      gateUp,
      down,
      moe,
      attnOutNorm: sandwich ? norm(`${p}.post_attention_layernorm.weight`, H) : null,
      mlpOutNorm: sandwich ? norm(`${p}.post_feedforward_layernorm.weight`, H) : null,
    };
    mx.eval(...layerArrays(layer));
    layers.push(layer);
    await afterLayer();
  }
  const finalNorm = norm(`${P}model.norm.weight`, cfg.hiddenSize);
  let lmHead: LinearWeight;
  if (tied) {
    lmHead = embed;
    tensors.delete(`${P}lm_head.weight`); // some tied checkpoints still carry a copy; ignore it
  } else {
    lmHead = block(lin(`${P}lm_head`, cfg.vocabSize, cfg.hiddenSize, false), 'lm_head');
    mx.eval(...linearArrays(lmHead));
  }
  mx.eval(finalNorm);
  tensors.clear();
  await afterLayer();
  return { weights: { embed, layers, norm: finalNorm, lmHead }, info: { files, checkpointDtype, numParameters } };
}

/** Every array a layer holds (to evaluate it, or to count its bytes). */
export function layerArrays(l: LayerWeights): mx.array[] {
  const out: mx.array[] = [];
  for (const a of [l.inputNorm, l.postNorm, l.qNorm, l.kNorm, l.attnOutNorm, l.mlpOutNorm]) if (a) out.push(a);
  // A fused matrix holds the bytes; its parts are views of it (not counted twice).
  const attn = l.qkv ? [l.qkv] : [l.q, l.k, l.v];
  const mlp = l.gateUp ? [l.gateUp] : [l.gate, l.up];
  for (const w of [...attn, l.o, ...mlp, l.down]) if (w) out.push(...linearArrays(w));
  if (l.moe) out.push(...moeArrays(l.moe));
  return out;
}

/** Bytes of all weight arrays held in memory (tied lm_head counted once). */
export function weightBytes(w: ModelWeights): number {
  const seen = new Set<mx.array>();
  let total = 0;
  const add = (a: mx.array | null) => {
    if (a && !seen.has(a)) {
      seen.add(a);
      total += a.nbytes ?? a.size * a.itemsize;
    }
  };
  const addLin = (l: LinearWeight) => linearArrays(l).forEach(add);
  addLin(w.embed);
  addLin(w.lmHead);
  add(w.norm);
  for (const l of w.layers) layerArrays(l).forEach(add);
  return total;
}
