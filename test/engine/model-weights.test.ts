// Loading: sharded checkpoints with an index load and equal the single-file checkpoint; an index
// that disagrees with its shards, a missing shard, a missing tensor, an unsupported architecture
// or bad config fail with clear errors that carry no file-system paths; the dtype policy refuses
// half-precision compute instead of letting the native code abort the process.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, ModelError } from '../../main/engine/model/generator.ts';
import { cpuFloat32Policy } from '../../main/engine/model/dtype-policy.ts';
import { parseModelConfig } from '../../main/engine/model/config.ts';
import { engineLogits, engineLogitsChunked, someTokens } from './reference-helpers.ts';
import { choosePolicy } from '../../main/engine/probe/policy-choice.ts';
import { attentionLimits } from '../../main/engine/model/base.ts';
import { maxAbsDiff } from './reference.ts';

const V = 8192;
const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-weights-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function shardedCopy(): Promise<string> {
  const src = await buildTinyModel({ family: 'qwen2', shards: 3, vocabSize: V });
  const dst = mkdtempSync(path.join(tmp, 'm-'));
  cpSync(src, dst, { recursive: true });
  return dst;
}

async function expectLoadError(dir: string, pattern: RegExp) {
  await assert.rejects(loadModel(dir), (e: unknown) => {
    assert.ok(e instanceof ModelError, `expected ModelError, got ${String(e)}`);
    assert.equal(e.code, 'model_load_failed');
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes(tmp) && !e.message.includes('/'), `message leaks a path: ${e.message}`);
    return true;
  });
}

describe('checkpoint loading', () => {
  it('a sharded checkpoint with an index loads and equals the single-file checkpoint', async () => {
    const single = await loadModel(await buildTinyModel({ family: 'qwen2', vocabSize: V }));
    const sharded = await loadModel(await buildTinyModel({ family: 'qwen2', shards: 3, vocabSize: V }));
    assert.equal(sharded.info.numParameters, single.info.numParameters);
    const toks = someTokens(5).map((t) => t % V);
    const a = engineLogits(single, toks);
    const b = engineLogits(sharded, toks);
    a.forEach((row, i) => assert.equal(maxAbsDiff(row, b[i]), 0));
  });

  it('reports model facts (kv bytes/token, weight bytes, context length, eos ids)', async () => {
    const lm = await loadModel(await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', vocabSize: V, maxPositionEmbeddings: 2048 }));
    const c = lm.info;
    assert.equal(c.architecture, 'qwen3');
    assert.equal(c.checkpointDtype, 'bfloat16');
    assert.equal(c.computeDtype, 'float32');
    assert.equal(c.contextLength, 2048);
    assert.equal(c.kvBytesPerToken, 2 * c.numLayers * c.numKvHeads * c.headDim * 4);
    assert.ok(c.weightBytes >= c.numParameters * 4, 'bf16 weights are held as float32');
    assert.deepEqual([...c.eosTokenIds].sort(), [151643, 151645]);
    assert.match(c.fingerprint, /^[0-9a-f]{32}$/);
    const again = await loadModel(await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', vocabSize: V, maxPositionEmbeddings: 2048 }));
    assert.equal(again.info.fingerprint, c.fingerprint, 'fingerprint is stable');
  });

  it('q/k/v and gate/up are fused into one matrix each: same logits as separate matrices, bytes counted once, packed weights left separate', async () => {
    // qwen2: q/k/v carry biases, so the fused bias is exercised too.
    const dir = await buildTinyModel({ family: 'qwen2', vocabSize: V });
    const fused = await loadModel(dir);
    const separate = await loadModel(dir, { fuseProjections: false });
    const c = fused.config;
    const l0 = fused.model.weights.layers[0];
    assert.ok(l0.qkv && l0.qkv.kind === 'dense' && l0.gateUp && l0.gateUp.kind === 'dense');
    assert.deepEqual(l0.qkv.weight.shape, [(c.numHeads + 2 * c.numKvHeads) * c.headDim, c.hiddenSize]);
    assert.deepEqual(l0.qkv.bias?.shape, [(c.numHeads + 2 * c.numKvHeads) * c.headDim]);
    assert.deepEqual(l0.gateUp.weight.shape, [2 * c.intermediateSize, c.hiddenSize]);
    assert.equal(separate.model.weights.layers[0].qkv, null);
    // The parts are row views of the fused matrix, holding exactly the checkpoint's modules.
    const s0 = separate.model.weights.layers[0];
    for (const k of ['q', 'k', 'v', 'gate', 'up'] as const) {
      const a = l0[k]!;
      const b = s0[k]!;
      assert.equal(mx.max(mx.abs(mx.subtract((a as { weight: mx.array }).weight, (b as { weight: mx.array }).weight))).item(), 0, k);
    }
    assert.equal(fused.info.weightBytes, separate.info.weightBytes);
    // Prefill (all rows) and chunked decode-shaped steps give the same logits either way.
    const toks = someTokens(7).map((t) => t % V);
    const a = engineLogits(fused, toks);
    const b = engineLogits(separate, toks);
    a.forEach((row, i) => assert.ok(maxAbsDiff(row, b[i]) <= 1e-5, `row ${i}: ${maxAbsDiff(row, b[i])}`));
    const ac = engineLogitsChunked(fused, toks, [4, 1, 1, 1]);
    const bc = engineLogitsChunked(separate, toks, [4, 1, 1, 1]);
    ac.forEach((row, i) => assert.ok(maxAbsDiff(row, bc[i]) <= 1e-5, `step row ${i}: ${maxAbsDiff(row, bc[i])}`));
    // Packed 4-bit weights (native policy) keep their separate modules.
    const q4 = await loadModel(await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: V }), {
      choice: choosePolicy('native', null),
    });
    assert.equal(q4.model.weights.layers[0].q.kind, 'quantized');
    assert.equal(q4.model.weights.layers[0].qkv, null);
    assert.equal(q4.model.weights.layers[0].gateUp, null);
  });

  it('attention in blocks of query rows (bounded score arrays) gives the same logits, full and sliding-window layers', async (t) => {
    for (const spec of [
      { family: 'qwen3', vocabSize: V },
      { family: 'gemma3_text', dtype: 'bfloat16', layers: 4, slidingPattern: 2, slidingWindow: 8, vocabSize: V },
    ] as const) {
      const lm = await loadModel(await buildTinyModel(spec));
      const toks = someTokens(14, 3).map((x) => x % V);
      const whole = engineLogitsChunked(lm, toks, [9, 1, 4]);
      const saved = attentionLimits.scoreBytes;
      attentionLimits.scoreBytes = 1; // one query row per block
      let blocked: number[][];
      try {
        blocked = engineLogitsChunked(lm, toks, [9, 1, 4]);
      } finally {
        attentionLimits.scoreBytes = saved;
      }
      const d = Math.max(...whole.map((row, i) => maxAbsDiff(row, blocked[i])));
      t.diagnostic(`${spec.family}: max diff ${d}`);
      assert.ok(d <= 1e-5, `${spec.family}: ${d}`);
    }
  });

  it('an index naming the wrong shard for a tensor is rejected', async () => {
    const dir = await shardedCopy();
    const p = path.join(dir, 'model.safetensors.index.json');
    const idx = JSON.parse(readFileSync(p, 'utf8'));
    const name = Object.keys(idx.weight_map).find((k) => idx.weight_map[k].startsWith('model-00001'))!;
    idx.weight_map[name] = 'model-00002-of-00003.safetensors';
    writeFileSync(p, JSON.stringify(idx));
    await expectLoadError(dir, /inconsistent/);
  });

  it('an index listing a tensor that no shard holds is rejected', async () => {
    const dir = await shardedCopy();
    const p = path.join(dir, 'model.safetensors.index.json');
    const idx = JSON.parse(readFileSync(p, 'utf8'));
    idx.weight_map['model.layers.9.mlp.up_proj.weight'] = 'model-00003-of-00003.safetensors';
    writeFileSync(p, JSON.stringify(idx));
    await expectLoadError(dir, /inconsistent.*does not contain/);
  });

  it('an index that omits a tensor present in a shard is rejected', async () => {
    const dir = await shardedCopy();
    const p = path.join(dir, 'model.safetensors.index.json');
    const idx = JSON.parse(readFileSync(p, 'utf8'));
    delete idx.weight_map['model.norm.weight'];
    writeFileSync(p, JSON.stringify(idx));
    await expectLoadError(dir, /inconsistent.*does not list/);
  });

  it('a missing shard file is rejected', async () => {
    const dir = await shardedCopy();
    unlinkSync(path.join(dir, 'model-00002-of-00003.safetensors'));
    await expectLoadError(dir, /missing/);
  });

  it('a missing tensor is rejected by name', async () => {
    const src = await buildTinyModel({ family: 'llama', vocabSize: V });
    const dir = mkdtempSync(path.join(tmp, 'm-'));
    cpSync(src, dir, { recursive: true });
    const t = mx.load(path.join(dir, 'model.safetensors')) as unknown as Record<string, mx.array>;
    delete t['model.layers.1.mlp.down_proj.weight'];
    mx.saveSafetensors(path.join(dir, 'model.safetensors'), t);
    await expectLoadError(dir, /missing tensor "model\.layers\.1\.mlp\.down_proj\.weight"/);
  });

  it('unsupported architectures and broken configs fail clearly', async () => {
    const src = await buildTinyModel({ family: 'llama', vocabSize: V });
    const dir = mkdtempSync(path.join(tmp, 'm-'));
    cpSync(src, dir, { recursive: true });
    const cfgPath = path.join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, model_type: 'gpt_neox' }));
    await expectLoadError(dir, /unsupported model_type "gpt_neox".*llama, mistral, qwen2, qwen3/);
    writeFileSync(cfgPath, '{not json');
    await expectLoadError(dir, /config\.json is not valid JSON/);
    assert.throws(() => parseModelConfig({ ...cfg, num_key_value_heads: 3 }), /multiple of num_key_value_heads/);
    assert.throws(() => parseModelConfig({ ...cfg, rope_scaling: { rope_type: 'ntk-by-parts', factor: 4 } }), /unsupported rope_scaling type "ntk-by-parts"/);
    assert.throws(() => parseModelConfig({ ...cfg, hidden_size: undefined }), /missing "hidden_size"/);
    assert.throws(() => parseModelConfig({ ...cfg, quantization: { group_size: 64, bits: 6 } }), /unsupported quantization bits 6/);
    assert.throws(() => parseModelConfig({ ...cfg, hidden_act: 'gelu' }), /unsupported hidden_act/);
  });

  it('the CPU dtype policy refuses half-precision compute with an exception (no process abort)', () => {
    const policy = cpuFloat32Policy();
    const half = mx.array([1, 2, 3]).astype(mx.bfloat16);
    assert.throws(() => policy.assertCompute(half, 'matmul'), /refusing bfloat16 compute/);
    assert.throws(() => policy.assertCompute(half.astype(mx.float16), 'matmul'), /refusing float16 compute/);
    policy.assertCompute(mx.array([1, 2]), 'matmul');
    const w = policy.prepareLinear({ weight: mx.ones([4, 4]).astype(mx.bfloat16) }, null);
    assert.equal(w.kind, 'dense');
    assert.equal(w.weight.dtype, mx.float32);
  });
});
