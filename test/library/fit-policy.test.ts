// Memory-fit figures per dtype policy: float32 (the CPU build) expands everything to 4 bytes per
// parameter; the native policy sizes 4/8-bit weights packed (stored uint32 + scales/biases in the
// compute dtype) and the KV cache in the compute dtype. Checked on a Qwen3-8B-shaped 4-bit
// checkpoint header (the example: ~5 GB native vs ~33 GB float32) and against what the
// engine really holds after loading a tiny 4-bit checkpoint with the native policy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { estimateFit, type ModelShape } from '../../main/library/fit.ts';
import { weightStats, type TensorHeader } from '../../main/engine/model-folder/index.ts';
import { inspectFolder } from '../../main/library/library.ts';
import { choosePolicy, FLOAT32_CHOICE, type MlxCapabilities } from '../../main/engine/probe/index.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel } from '../../main/engine/model/generator.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const caps = (name: string): MlxCapabilities => JSON.parse(readFileSync(path.join(here, '../engine/fixtures', name), 'utf8'));
const METAL = caps('capabilities-metal.json');
const CPU = caps('capabilities-linux-cpu.json');
const GB = 1e9;

/** The tensor headers of an mlx-community Qwen3-8B-4bit checkpoint (group 64, bf16 scales, untied). */
function qwen3_8b_q4(): Map<string, TensorHeader> {
  const t = new Map<string, TensorHeader>();
  const H = 4096, I = 12288, V = 151936, L = 36, Q = 32 * 128, KV = 8 * 128, G = 64, bits = 4;
  const q = (name: string, out: number, inp: number) => {
    t.set(`${name}.weight`, { dtype: 'U32', shape: [out, (inp * bits) / 32], bytes: (out * inp * bits) / 8 });
    for (const s of ['scales', 'biases']) t.set(`${name}.${s}`, { dtype: 'BF16', shape: [out, inp / G], bytes: (out * inp * 2) / G });
  };
  const f = (name: string, n: number) => t.set(name, { dtype: 'BF16', shape: [n], bytes: n * 2 });
  q('model.embed_tokens', V, H);
  q('lm_head', V, H);
  f('model.norm.weight', H);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    q(`${p}.self_attn.q_proj`, Q, H);
    q(`${p}.self_attn.k_proj`, KV, H);
    q(`${p}.self_attn.v_proj`, KV, H);
    q(`${p}.self_attn.o_proj`, H, Q);
    q(`${p}.mlp.gate_proj`, I, H);
    q(`${p}.mlp.up_proj`, I, H);
    q(`${p}.mlp.down_proj`, H, I);
    f(`${p}.input_layernorm.weight`, H);
    f(`${p}.post_attention_layernorm.weight`, H);
    f(`${p}.self_attn.q_norm.weight`, 128);
    f(`${p}.self_attn.k_norm.weight`, 128);
  }
  return t;
}

function shapeOf(t: Map<string, TensorHeader>): ModelShape {
  const ws = weightStats(t, 64);
  return {
    parameters: ws.parameters,
    numLayers: 36,
    numKvHeads: 8,
    headDim: 128,
    maxContext: 40960,
    floatDtype: 'bfloat16',
    quantized: { parameters: ws.quantizedParameters, packedBytes: ws.packedBytes, scaleElements: ws.scaleElements },
  };
}

describe('memory fit per dtype policy', () => {
  const shape = shapeOf(qwen3_8b_q4());
  const opts = { contextTokens: 4096, availableBytes: 16 * 2 ** 30 };

  it('8B 4-bit: ~5 GB with the native policy on a Metal build, ~33 GB expanded to float32', (t) => {
    const f32 = estimateFit(shape, { ...opts, policy: FLOAT32_CHOICE });
    const metal = estimateFit(shape, { ...opts, policy: choosePolicy('auto', METAL) });
    t.diagnostic(`params ${(shape.parameters! / 1e9).toFixed(2)} B; float32: ${f32.reason}; metal: ${metal.reason}`);
    assert.ok(shape.parameters! > 8.1e9 && shape.parameters! < 8.3e9);
    assert.ok(f32.weightsBytes > 32 * GB && f32.weightsBytes < 34 * GB, `${f32.weightsBytes}`);
    assert.equal(f32.computeDtype, 'float32');
    assert.equal(f32.kvBytes, 2 * 36 * 8 * 128 * 4 * 4096);
    assert.ok(metal.weightsBytes > 4.4 * GB && metal.weightsBytes < 5.0 * GB, `${metal.weightsBytes}`);
    assert.equal(metal.computeDtype, 'bfloat16');
    assert.equal(metal.packed, true);
    assert.equal(metal.kvBytes, 2 * 36 * 8 * 128 * 2 * 4096);
    assert.ok(metal.needBytes < 6.5 * GB);
    // On a 16 GiB Mac: fits natively, refused expanded.
    assert.equal(metal.fits, true);
    assert.equal(f32.fits, false);
    assert.match(metal.reason, /packed quantized, bfloat16 compute/);
  });

  it('this CPU build: auto stays float32; native = packed weights with float32 scales and KV', () => {
    const auto = estimateFit(shape, { ...opts, policy: choosePolicy('auto', CPU) });
    assert.equal(auto.computeDtype, 'float32');
    assert.equal(auto.packed, false);
    assert.equal(auto.weightsBytes, shape.parameters! * 4);
    const native = estimateFit(shape, { ...opts, policy: choosePolicy('native', CPU) });
    assert.equal(native.packed, true);
    assert.equal(native.computeDtype, 'float32');
    const q = shape.quantized!;
    assert.equal(native.weightsBytes, q.packedBytes + q.scaleElements * 4 + (shape.parameters! - q.parameters) * 4);
    assert.equal(native.kvBytes, auto.kvBytes);
  });

  it('the native estimate equals what the engine holds after loading a 4-bit checkpoint natively', async () => {
    const dir = await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: 4096, seed: 31 });
    const choice = choosePolicy('native', CPU);
    const entry = await inspectFolder(dir, { policy: choice, availableBytes: 2 ** 40 });
    assert.ok(entry);
    const lm = await loadModel(dir, { choice });
    assert.equal(entry!.fitsInMemory.weightsBytes, lm.info.weightBytes);
    assert.equal(entry!.fitsInMemory.kvBytes / entry!.fitsInMemory.contextTokens, lm.info.kvBytesPerToken);
    const expanded = await inspectFolder(dir, { availableBytes: 2 ** 40 });
    const lmF32 = await loadModel(dir);
    assert.equal(expanded!.fitsInMemory.weightsBytes, lmF32.info.weightBytes);
  });
});
