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
  const { group_size: gs, bits } = cfg.quantization;
  delete cfg.quantization;
  delete cfg.quantization_config;
  const t = mx.load(path.join(dir, 'model.safetensors')) as unknown as Record<string, mx.array>;
  const res: Record<string, mx.array> = {};
  for (const [name, a] of Object.entries(t)) {
    if (name.endsWith('.scales') || name.endsWith('.biases')) continue;
    const stem = name.slice(0, -'.weight'.length);
    const sc = t[`${stem}.scales`];
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
});
