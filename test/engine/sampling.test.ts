// Sampling: each control transforms hand-built logits exactly as specified (HF repetition penalty,
// OpenAI presence/frequency penalties, temperature, top_k, top_p, min_p); draws follow the
// distribution; the same seed gives the same tokens (also in another process) and top_k=1 equals
// greedy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { core as mx } from '@frost-beta/mlx';
import { processLogits, Sampler, type SamplingControls } from '../../main/engine/model/sampling.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll } from '../../main/engine/model/generator.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { someTokens } from './reference-helpers.ts';

const base: SamplingControls = { ...DEFAULT_SAMPLING };
const none = { seen: new Set<number>(), counts: new Map<number, number>() };
const run = (logits: number[], p: Partial<SamplingControls>, ctx = none) =>
  processLogits(mx.array(logits, mx.float32), { ...base, ...p }, ctx).tolist() as number[];
const close = (a: number[], b: number[]) => {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => {
    if (!Number.isFinite(b[i])) assert.equal(x, b[i], `index ${i}: ${a} vs ${b}`);
    else assert.ok(Math.abs(x - b[i]) < 1e-5, `index ${i}: ${a} vs ${b}`);
  });
};
const NEG = -Infinity;

describe('logit processing', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const ctx = { seen: new Set([0, 1]), counts: new Map<number, number>() };
    close(run([2, -1, 0.5, 3], { repetitionPenalty: 2 }, ctx), [1, -2, 0.5, 3]);
  });

  it('presence and frequency penalties subtract per generated occurrence', () => {
    const ctx = { seen: new Set<number>(), counts: new Map([[2, 3], [0, 1]]) };
    close(run([2, -1, 0.5, 3], { presencePenalty: 0.5, frequencyPenalty: 0.25 }, ctx), [2 - 0.75, -1, 0.5 - 0.5 - 0.75, 3]);
  });

  it('temperature scales, top_k keeps the k best', () => {
    close(run([2, -1, 0.5, 3], { temperature: 2 }), [1, -0.5, 0.25, 1.5]);
    close(run([2, -1, 0.5, 3], { temperature: 1, topK: 2 }), [2, NEG, NEG, 3]);
  });

  it('top_p keeps the smallest set reaching p; min_p drops tokens below min_p * max prob', () => {
    const lp = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    close(run(lp, { temperature: 1, topP: 0.6 }), [lp[0], lp[1], NEG, NEG]);
    close(run(lp, { temperature: 1, topP: 0.45 }), [lp[0], NEG, NEG, NEG]);
    close(run(lp, { temperature: 1, topP: 0.9 }), [lp[0], lp[1], lp[2], NEG]);
    close(run(lp, { temperature: 1, minP: 0.5 }), [lp[0], lp[1], NEG, NEG]);
    close(run(lp, { temperature: 1, minP: 0.2 }), [lp[0], lp[1], lp[2], NEG]);
  });

  it('greedy applies penalties before argmax', () => {
    const s = new Sampler({ ...base, temperature: 0, repetitionPenalty: 4 }, [3]);
    assert.equal(s.sample(mx.array([[2, -1, 0.5, 3]])), 0, 'token 3 is penalized to 0.75');
    assert.equal(new Sampler({ ...base, temperature: 0 }, [3]).sample(mx.array([[2, -1, 0.5, 3]])), 3);
  });
});

describe('sampler draws', () => {
  it('follow the processed distribution', () => {
    const s = new Sampler({ ...base, temperature: 1, seed: 7 }, []);
    const logits = mx.array([[0.5, 0.3, 0.2].map(Math.log)]);
    const n = [0, 0, 0];
    for (let i = 0; i < 1500; i++) n[s.sample(logits)]++;
    [0.5, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(n[i] / 1500 - p) < 0.05, `token ${i}: ${n[i] / 1500} vs ${p}`));
  });

  it('same seed → same draws; different seed → different draws', () => {
    const logits = mx.array([new Array(64).fill(0)]);
    const draw = (seed: number) => {
      const s = new Sampler({ ...base, temperature: 1, seed }, []);
      return Array.from({ length: 40 }, () => s.sample(logits));
    };
    assert.deepEqual(draw(123), draw(123));
    assert.notDeepEqual(draw(123), draw(124));
  });
});

describe('seeded generation on a model', () => {
  const V = 8192;
  const spec = { family: 'llama', vocabSize: V, seed: 2 } as const;
  const prompt = someTokens(12, 8).map((t) => t % V);
  const params = (seed: number) => ({ ...DEFAULT_SAMPLING, temperature: 1.0, topP: 0.9, topK: 50, minP: 0.01, seed, maxTokens: 16 });

  it('is reproducible across loads and across processes, and top_k=1 equals greedy', async () => {
    const dir = await buildTinyModel(spec);
    const a = await generateAll(await loadModel(dir), null, { promptIds: prompt, sampling: params(99) });
    const lm2 = await loadModel(dir);
    const b = await generateAll(lm2, null, { promptIds: prompt, sampling: params(99) });
    const c = await generateAll(lm2, null, { promptIds: prompt, sampling: params(100) });
    assert.equal(a.tokens.length, 16);
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.tokens, c.tokens);

    const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sampling-child.ts');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, dir, '99', prompt.join(',')], {
      timeout: 60_000,
    });
    assert.deepEqual(JSON.parse(stdout), a.tokens, 'another process draws the same tokens');

    const g = await generateAll(lm2, null, { promptIds: prompt, sampling: { ...DEFAULT_SAMPLING, maxTokens: 10 } });
    const k1 = await generateAll(lm2, null, { promptIds: prompt, sampling: { ...DEFAULT_SAMPLING, temperature: 0.8, topK: 1, seed: 5, maxTokens: 10 } });
    assert.deepEqual(k1.tokens, g.tokens);
  });
});
