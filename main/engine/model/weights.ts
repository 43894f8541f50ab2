// Loads a checkpoint (model.safetensors, or shards listed in model.safetensors.index.json) and turns
// it into the weights the forward pass uses, applying the dtype policy one layer at a time and
// evaluating as it goes so peak memory stays near the final in-memory size.
import { core as mx } from '@frost-beta/mlx';
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { ModelConfig } from './config.ts';
import type { DtypePolicy, LinearWeight, RawModuleTensors } from './dtype-policy.ts';

export class WeightsError extends Error {
  override name = 'WeightsError';
}

export interface LayerWeights {
  inputNorm: mx.array;
  postNorm: mx.array;
  q: LinearWeight;
  k: LinearWeight;
  v: LinearWeight;
  o: LinearWeight;
  qNorm: mx.array | null;
  kNorm: mx.array | null;
  gate: LinearWeight;
  up: LinearWeight;
  down: LinearWeight;
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

const INDEX_FILE = 'model.safetensors.index.json';

/** Lists the checkpoint's safetensors files and, for sharded checkpoints, validates the index. */
export function listCheckpointFiles(dir: string): { files: string[]; weightMap: Record<string, string> | null } {
  const indexPath = path.join(dir, INDEX_FILE);
  if (existsSync(indexPath)) {
    let index: unknown;
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch {
      throw new WeightsError(`${INDEX_FILE} is not valid JSON`);
    }
    const wm = (index as { weight_map?: unknown })?.weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new WeightsError(`${INDEX_FILE} has no "weight_map" object`);
    const weightMap = wm as Record<string, string>;
    const files = [...new Set(Object.values(weightMap))];
    for (const f of files) {
      if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f.startsWith('.')) {
        throw new WeightsError(`${INDEX_FILE} names an invalid shard file`);
      }
      if (!existsSync(path.join(dir, f))) throw new WeightsError(`${INDEX_FILE} lists shard "${f}", which is missing`);
    }
    return { files, weightMap };
  }
  if (existsSync(path.join(dir, 'model.safetensors'))) return { files: ['model.safetensors'], weightMap: null };
  const any = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (any.length === 0) throw new WeightsError('no model.safetensors (or shards with an index) in the model folder');
  if (any.length > 1) throw new WeightsError(`several .safetensors files but no ${INDEX_FILE}`);
  return { files: any, weightMap: null };
}

/**
 * The checkpoint's float dtype (float32 | bfloat16 | float16), read from a safetensors header
 * without loading anything: the embedding's scales for a quantized checkpoint, else its weight.
 * mlx-lm computes in this dtype; null when it cannot be told.
 */
export function peekCheckpointFloatDtype(dir: string): string | null {
  const names: Record<string, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };
  try {
    const { files, weightMap } = listCheckpointFiles(dir);
    const want = ['model.embed_tokens.scales', 'model.embed_tokens.weight'];
    const file = (weightMap && (weightMap[want[0]] ?? weightMap[want[1]])) || files[0];
    const fd = openSync(path.join(dir, file), 'r');
    try {
      const len = Buffer.alloc(8);
      readSync(fd, len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE(0));
      if (n <= 0 || n > 100 * 1024 * 1024) return null;
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, 8);
      const header = JSON.parse(buf.toString('utf8')) as Record<string, { dtype?: string }>;
      for (const name of want) {
        const d = header[name]?.dtype;
        if (d) return names[d] ?? null;
      }
      return null;
    } finally {
      closeSync(fd);
    }
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
  return [w.weight.shape[0], (w.weight.shape[1] * 32) / w.bits];
}

function expectShape(w: LinearWeight, outDim: number, inDim: number, name: string) {
  const [o, i] = linearShape(w);
  if (o !== outDim || i !== inDim) {
    throw new WeightsError(`tensor "${name}" has shape [${o}, ${i}] but config.json implies [${outDim}, ${inDim}]`);
  }
}

export function linearArrays(w: LinearWeight): mx.array[] {
  const out = [w.weight];
  if (w.kind === 'quantized') out.push(w.scales, w.biases);
  if (w.bias) out.push(w.bias);
  return out;
}

function describeDtype(tensors: Map<string, mx.array>, quant: ModelConfig['quantization']): string {
  if (quant) return `q${quant.bits}`;
  const e = tensors.get('model.embed_tokens.weight');
  return e ? String(e.dtype) : 'unknown';
}

/**
 * Builds the compute weights. `afterLayer` runs after each layer is evaluated (the async loader
 * uses it to let the GC free the raw tensors between layers).
 */
export async function buildModelWeights(
  dir: string,
  cfg: ModelConfig,
  policy: DtypePolicy,
  afterLayer: () => Promise<void> = async () => {},
): Promise<{ weights: ModelWeights; info: CheckpointInfo }> {
  const { tensors, files } = loadCheckpointTensors(dir);
  const checkpointDtype = describeDtype(tensors, cfg.quantization);
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

  const embed = lin('model.embed_tokens', cfg.vocabSize, cfg.hiddenSize, false);
  mx.eval(...linearArrays(embed));
  await afterLayer();

  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    const layer: LayerWeights = {
      inputNorm: dense(`${p}.input_layernorm.weight`, cfg.hiddenSize),
      postNorm: dense(`${p}.post_attention_layernorm.weight`, cfg.hiddenSize),
      q: lin(`${p}.self_attn.q_proj`, qDim, cfg.hiddenSize, cfg.qkvBias),
      k: lin(`${p}.self_attn.k_proj`, kvDim, cfg.hiddenSize, cfg.qkvBias),
      v: lin(`${p}.self_attn.v_proj`, kvDim, cfg.hiddenSize, cfg.qkvBias),
      o: lin(`${p}.self_attn.o_proj`, cfg.hiddenSize, qDim, cfg.oBias),
      qNorm: cfg.qkNorm ? dense(`${p}.self_attn.q_norm.weight`, cfg.headDim) : null,
      kNorm: cfg.qkNorm ? dense(`${p}.self_attn.k_norm.weight`, cfg.headDim) : null,
      gate: lin(`${p}.mlp.gate_proj`, cfg.intermediateSize, cfg.hiddenSize, cfg.mlpBias),
      up: lin(`${p}.mlp.up_proj`, cfg.intermediateSize, cfg.hiddenSize, cfg.mlpBias),
      down: lin(`${p}.mlp.down_proj`, cfg.hiddenSize, cfg.intermediateSize, cfg.mlpBias),
    };
    const arrays: mx.array[] = [layer.inputNorm, layer.postNorm];
    for (const w of [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down]) arrays.push(...linearArrays(w));
    if (layer.qNorm) arrays.push(layer.qNorm);
    if (layer.kNorm) arrays.push(layer.kNorm);
    mx.eval(...arrays);
    layers.push(layer);
    await afterLayer();
  }
  const norm = dense('model.norm.weight', cfg.hiddenSize);
  let lmHead: LinearWeight;
  if (cfg.tieWordEmbeddings) {
    lmHead = embed;
    tensors.delete('lm_head.weight'); // some tied checkpoints still carry a copy; ignore it
  } else {
    lmHead = lin('lm_head', cfg.vocabSize, cfg.hiddenSize, false);
    mx.eval(...linearArrays(lmHead));
  }
  mx.eval(norm);
  tensors.clear();
  await afterLayer();
  return { weights: { embed, layers, norm, lmHead }, info: { files, checkpointDtype, numParameters } };
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
  for (const l of w.layers) {
    add(l.inputNorm);
    add(l.postNorm);
    add(l.qNorm);
    add(l.kNorm);
    [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].forEach(addLin);
  }
  return total;
}
