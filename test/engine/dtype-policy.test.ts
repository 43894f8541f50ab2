// The dtype policy chosen from the MLX capability probe (main/engine/probe):
//  - the probe runs for real on this build, in child processes (the half-precision ops abort them,
//    this test process survives), is cached per binary, and selects the float32 policy with reasons;
//  - with a Metal-shaped probe record (test/engine/fixtures/capabilities-metal.json — hand-made, no
//    Mac here) the same selection picks packed weights + the checkpoint's half dtype;
//  - the half path is unreachable when the probe did not verify it, even with dtypePolicy "native";
//  - the native policy's quantized path (packed weights through quantizedMatmul, float32 compute
//    here) generates the same greedy tokens as the independent float64 reference on 4-bit and
//    8-bit checkpoints, with a negative control.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { policyFromChoice, DtypePolicyError } from '../../main/engine/model/dtype-policy.ts';
import { engineDtypeChoice } from '../../main/engine/process/backend.ts';
import {
  CAPABILITIES_FILE,
  choosePolicy,
  describeCapabilities,
  getCapabilities,
  isCapabilities,
  mlxBinaryKey,
  readCachedCapabilities,
  type MlxCapabilities,
} from '../../main/engine/probe/index.ts';
import { ReferenceModel, maxAbsDiff } from './reference.ts';
import { engineGreedy, engineLogits, someTokens } from './reference-helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string): MlxCapabilities => JSON.parse(readFileSync(path.join(here, 'fixtures', name), 'utf8'));
const METAL = fixture('capabilities-metal.json');
const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-dtype-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('capability probe on this build', () => {
  let caps: MlxCapabilities;

  it('runs for real in child processes, survives the aborting ops, and caches per binary', async (t) => {
    const dataDir = path.join(tmp, 'data');
    mkdirSync(dataDir);
    caps = await getCapabilities(dataDir);
    t.diagnostic(describeCapabilities(caps).join(' | '));
    assert.ok(isCapabilities(caps));
    assert.equal(caps.binaryKey, mlxBinaryKey());
    // The CPU build of 0.0.7: half matmul aborts the process (the probe saw the abort, we survived).
    for (const d of ['float16', 'bfloat16'] as const) {
      assert.equal(caps.half[d].ok, false);
      assert.equal(caps.half[d].failedOp, 'matmul');
      assert.match(caps.half[d].detail, /aborted the probe process/);
    }
    assert.equal(caps.gpu.available, false);
    assert.equal(caps.quantizedMatmul.fast, false, caps.quantizedMatmul.detail);
    assert.ok(caps.quantizedMatmul.q4PrefillMs! > caps.quantizedMatmul.f32PrefillMs!, 'the 4-bit kernel is slower at prefill here');
    assert.equal(caps.memoryCounters.works, false);
    assert.equal(caps.memoryLimits.works, false);
    assert.equal(caps.compile.works, true);
    // Cached: the file is there and a second call returns the same record without probing again.
    assert.ok(existsSync(path.join(dataDir, CAPABILITIES_FILE)));
    const again = await getCapabilities(dataDir);
    assert.equal(again.probedAt, caps.probedAt);
    // A record made for another binary is not used.
    writeFileSync(path.join(dataDir, CAPABILITIES_FILE), JSON.stringify({ ...caps, binaryKey: 'other-binary-key' }));
    assert.equal(readCachedCapabilities(dataDir), null);
  });

  it('selects the float32 policy with the reasons', () => {
    const c = choosePolicy('auto', caps);
    assert.equal(c.mode, 'float32');
    assert.equal(c.keepQuantized, false);
    assert.deepEqual(c.halfDtypes, []);
    const why = c.reasons.join('\n');
    assert.match(why, /no float16 compute: matmul aborted/);
    assert.match(why, /no bfloat16 compute: matmul aborted/);
    assert.match(why, /quantizedMatmul is slow here/);
    assert.match(why, /no GPU/);
  });

  it('"native" on this build = packed weights + float32 compute; the half path stays unreachable', async () => {
    const { choice } = engineDtypeChoice({ dtypePolicy: 'native', capabilities: caps });
    assert.equal(choice.keepQuantized, true);
    assert.deepEqual(choice.halfDtypes, []);
    const dir = await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: 4096 });
    const lm = await loadModel(dir, { choice });
    assert.equal(lm.info.computeDtype, 'float32');
    assert.equal(lm.info.dtypePolicy, 'native-f32-packed');
    // The guard refuses a bf16 activation before any native op sees it (checking dtypes only).
    const bf = mx.zeros([1, 4], mx.bfloat16);
    assert.throws(() => lm.model.policy.assertCompute(bf, 'q_proj'), DtypePolicyError);
  });

  it('a probe record for another binary (e.g. a Metal record) is ignored by the engine process', () => {
    const { choice, capabilities } = engineDtypeChoice({ dtypePolicy: 'auto', capabilities: METAL });
    assert.equal(capabilities, null);
    assert.equal(choice.mode, 'float32');
    assert.deepEqual(choice.halfDtypes, []);
    const forced = engineDtypeChoice({ dtypePolicy: 'native', capabilities: METAL }).choice;
    assert.deepEqual(forced.halfDtypes, [], 'no unverified half dtype even when forced');
  });
});

describe('policy selection with a Metal-shaped probe record', () => {
  it('auto → packed weights, compute in the checkpoint float dtype', () => {
    const c = choosePolicy('auto', METAL);
    assert.equal(c.mode, 'native');
    assert.equal(c.keepQuantized, true);
    assert.deepEqual(c.halfDtypes, ['float16', 'bfloat16']);
    // The policy object (no compute runs here): bf16 checkpoint → bf16 compute; f32 checkpoint → f32.
    assert.equal(policyFromChoice(c, 'bfloat16').name, 'native-bfloat16-packed');
    assert.equal(String(policyFromChoice(c, 'bfloat16').computeDtype), String(mx.bfloat16));
    assert.equal(String(policyFromChoice(c, 'float32').computeDtype), String(mx.float32));
  });

  it('a dtype whose probe failed is never used, a float32 setting wins, no probe means float32', () => {
    const noBf16: MlxCapabilities = {
      ...METAL,
      half: { ...METAL.half, bfloat16: { ok: false, passed: ['matmul'], failedOp: 'attention', detail: 'attention aborted the probe process (exit code 134)' } },
    };
    const c = choosePolicy('auto', noBf16);
    assert.deepEqual(c.halfDtypes, ['float16']);
    assert.equal(policyFromChoice(c, 'bfloat16').name, 'native-f32-packed');
    assert.match(c.reasons.join('\n'), /no bfloat16 compute: attention aborted/);
    const f = choosePolicy('float32', METAL);
    assert.equal(f.mode, 'float32');
    assert.equal(f.keepQuantized, false);
    const none = choosePolicy('auto', null);
    assert.equal(none.mode, 'float32');
    assert.match(none.reasons.join('\n'), /no capability probe result/);
  });
});

/** Greedy continuation by the float64 reference (full recompute each step). */
function referenceGreedy(dir: string, prompt: number[], n: number): number[] {
  const ref = new ReferenceModel(dir);
  const seq = prompt.slice();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const rows = ref.logits(seq);
    const last = rows[rows.length - 1];
    let best = 0;
    for (let j = 1; j < last.length; j++) if (last[j] > last[best]) best = j;
    out.push(best);
    seq.push(best);
  }
  return out;
}


describe('native quantized path (packed weights, float32 compute on this build) vs the float64 reference', () => {
  const V = 4096;
  const nativeChoice = () => engineDtypeChoice({ dtypePolicy: 'native' }).choice; // no probe needed: packed + float32
  const cases: { name: string; spec: TinyModelSpec }[] = [
    { name: '4-bit g64 qwen3, bf16 scales, tied quantized embedding', spec: { family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: V, seed: 21 } },
    { name: '8-bit g32 llama, f16 scales, untied quantized lm_head', spec: { family: 'llama', dtype: 'float16', quant: { bits: 8, groupSize: 32 }, tied: false, vocabSize: V, seed: 22 } },
  ];
  for (const c of cases) {
    it(`${c.name}: same greedy tokens, weights held packed`, async (t) => {
      const dir = await buildTinyModel(c.spec);
      const lm = await loadModel(dir, { choice: nativeChoice() });
      const expanded = await loadModel(dir);
      assert.equal(lm.info.dtypePolicy, 'native-f32-packed');
      assert.equal(lm.model.weights.layers[0].q.kind, 'quantized');
      assert.equal(lm.model.weights.embed.kind, 'quantized');
      assert.equal(expanded.model.weights.layers[0].q.kind, 'dense');
      t.diagnostic(`weights in memory: packed ${lm.info.weightBytes} B vs expanded float32 ${expanded.info.weightBytes} B`);
      assert.ok(lm.info.weightBytes < expanded.info.weightBytes / (c.spec.quant!.bits === 4 ? 4 : 2.5));
      const prompt = someTokens(6, 5).map((x) => x % V);
      const want = referenceGreedy(dir, prompt, 10);
      const got = await engineGreedy(lm, prompt, 10);
      assert.deepEqual(got, want);
    });
  }

  it('negative control: swapped scales/biases in one projection are caught by the reference', async () => {
    const dir = await buildTinyModel(cases[0].spec);
    const lm = await loadModel(dir, { choice: nativeChoice() });
    const tokens = someTokens(5, 9).map((x) => x % V);
    const want = new ReferenceModel(dir).logits(tokens);
    const diff = () => Math.max(...engineLogits(lm, tokens).map((row, i) => maxAbsDiff(row, want[i])));
    const ok = diff();
    assert.ok(ok < 1e-4, `clean model max diff ${ok}`);
    const q = lm.model.weights.layers[0].q;
    assert.equal(q.kind, 'quantized');
    if (q.kind === 'quantized') [q.scales, q.biases] = [q.biases, q.scales];
    const bad = diff();
    assert.ok(bad > 1e-2, `the bug moves the logits by ${bad}`);
  });
});
