// Quantized (mlx-community 4/8-bit, group 32/64, quantized embeddings) and half-precision
// checkpoints load, compute in float32, match the independent reference (which unpacks the bits
// itself), and give the same logits as a float32 checkpoint of the same dequantized weights.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { loadModel } from '../../main/engine/model/generator.ts';
import { cpuFloat32Policy } from '../../main/engine/model/dtype-policy.ts';
import { ReferenceModel, maxAbsDiff } from './reference.ts';
import { engineLogits, someTokens } from './reference-helpers.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-quant-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a float32 checkpoint of the dequantized weights of `dir` (same config, no quantization). */
function dequantizedCopy(dir: string, out: string): string {
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const { group_size: gsAll, bits: bitsAll } = cfg.quantization;
  const q = cfg.quantization;
  delete cfg.quantization;
  delete cfg.quantization_config;
  const t = mx.load(path.join(dir, 'model.safetensors')) as unknown as Record<string, mx.array>;
  const res: Record<string, mx.array> = {};
  for (const [name, a] of Object.entries(t)) {
    if (name.endsWith('.scales') || name.endsWith('.biases')) continue;
    const stem = name.slice(0, -'.weight'.length);
    const sc = t[`${stem}.scales`];
    const gs = q[stem]?.group_size ?? gsAll;
    const bits = q[stem]?.bits ?? bitsAll;
    res[name] = sc
      ? mx.dequantize(a, sc.astype(mx.float32), t[`${stem}.biases`].astype(mx.float32), gs, bits)
      : a.astype(mx.float32);
  }
  mx.eval(...Object.values(res));
  writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg));
  mx.saveSafetensors(path.join(out, 'model.safetensors'), res, { format: 'mlx' });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(dir, f), path.join(out, f));
  return out;
}

// A reduced vocabulary keeps the float64 reference fast; these tests never tokenize text.
const V = 8192;
const cases: { name: string; spec: TinyModelSpec; qmm?: boolean }[] = [
  { name: 'qwen3 4-bit g64, bf16 scales, quantized tied embedding', spec: { family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: V } },
  { name: 'llama 8-bit g32, f16 scales, untied quantized lm_head', spec: { family: 'llama', dtype: 'float16', quant: { bits: 8, groupSize: 32 }, tied: false, vocabSize: V } },
  { name: 'qwen2 4-bit g32 with biases, 2 shards', spec: { family: 'qwen2', quant: { bits: 4, groupSize: 32 }, shards: 2, vocabSize: V } },
  { name: 'qwen3 4-bit g64 in low-RAM quantizedMatmul mode', spec: { family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: V }, qmm: true },
];

describe('quantized checkpoints', () => {
  for (const c of cases) {
    it(`${c.name}: matches the reference`, async (t) => {
      const dir = await buildTinyModel(c.spec);
      const lm = await loadModel(dir, c.qmm ? { policy: cpuFloat32Policy({ keepQuantized: true }) } : {});
      assert.equal(lm.info.computeDtype, 'float32');
      assert.equal(lm.info.checkpointDtype, `q${c.spec.quant!.bits}`);
      assert.deepEqual(lm.info.quantization, { bits: c.spec.quant!.bits, groupSize: c.spec.quant!.groupSize });
      const tokens = someTokens(5, 11).map((x) => x % V);
      const got = engineLogits(lm, tokens);
      const want = new ReferenceModel(dir).logits(tokens);
      let worst = 0;
      want.forEach((w, i) => (worst = Math.max(worst, maxAbsDiff(got[i], w))));
      t.diagnostic(`max abs diff vs reference ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `max abs diff ${worst}`);
    });
  }

  it('4-bit checkpoint gives the same logits as a float32 checkpoint of its dequantized weights', async () => {
    const dir = await buildTinyModel(cases[0].spec);
    const f32dir = dequantizedCopy(dir, mkdtempSync(path.join(tmp, 'deq-')));
    const q = await loadModel(dir);
    const f = await loadModel(f32dir);
    assert.equal(f.info.checkpointDtype, 'float32');
    assert.equal(q.info.numParameters, f.info.numParameters);
    assert.equal(q.info.weightBytes, f.info.weightBytes, 'the CPU policy holds quantized weights as float32');
    assert.notEqual(q.info.fingerprint, f.info.fingerprint);
    const tokens = someTokens(6, 3).map((x) => x % V);
    const a = engineLogits(q, tokens);
    const b = engineLogits(f, tokens);
    let worst = 0;
    a.forEach((row, i) => (worst = Math.max(worst, maxAbsDiff(row, b[i]))));
    assert.ok(worst <= 1e-5, `max abs diff ${worst}`);
  });

  it('mixed-precision checkpoints (per-module bits, a module kept in float) load correctly', async () => {
    const src = await buildTinyModel(cases[0].spec);
    const dir = mkdtempSync(path.join(tmp, 'mixed-'));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(src, f), path.join(dir, f));
    const cfg = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8'));
    const t = { ...(mx.load(path.join(src, 'model.safetensors')) as unknown as Record<string, mx.array>) };
    const deq = (stem: string) =>
      mx.dequantize(t[`${stem}.weight`], t[`${stem}.scales`].astype(mx.float32), t[`${stem}.biases`].astype(mx.float32), 64, 4);
    // layer 0 down_proj re-quantized to 8-bit group 32; layer 1 o_proj stored in float.
    const s8 = 'model.layers.0.mlp.down_proj';
    const [w8, sc8, b8] = mx.quantize(deq(s8), 32, 8) as unknown as mx.array[];
    const fl = 'model.layers.1.self_attn.o_proj';
    const wf = deq(fl).astype(mx.bfloat16);
    Object.assign(t, { [`${s8}.weight`]: w8, [`${s8}.scales`]: sc8.astype(mx.bfloat16), [`${s8}.biases`]: b8.astype(mx.bfloat16), [`${fl}.weight`]: wf });
    delete t[`${fl}.scales`];
    delete t[`${fl}.biases`];
    cfg.quantization = { group_size: 64, bits: 4, [s8]: { group_size: 32, bits: 8 }, [fl]: false };
    cfg.quantization_config = cfg.quantization;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    mx.saveSafetensors(path.join(dir, 'model.safetensors'), t, { format: 'mlx' });

    const mixed = await loadModel(dir);
    const f32 = await loadModel(dequantizedCopy(dir, mkdtempSync(path.join(tmp, 'mixed-f32-'))));
    const tokens = someTokens(5, 8).map((x) => x % V);
    const a = engineLogits(mixed, tokens);
    const b = engineLogits(f32, tokens);
    let worst = 0;
    a.forEach((row, i) => (worst = Math.max(worst, maxAbsDiff(row, b[i]))));
    assert.ok(worst <= 1e-5, `max abs diff ${worst}`);
    // Without the overrides the same files are rejected instead of silently misread.
    cfg.quantization = { group_size: 64, bits: 4 };
    cfg.quantization_config = cfg.quantization;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await assert.rejects(loadModel(dir), /shape/);
  });
});
