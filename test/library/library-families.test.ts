// The library describes the newer families from their folders alone: the engine family, MoE
// active/total parameters, Gemma 3's multimodal config (text_config) — and the memory fit counts
// every expert (all of them are held in memory), not the active ones.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { listModels } from '../../main/library/library.ts';
import { loadModel } from '../../main/engine/model/generator.ts';
import { cpuFloat32Policy } from '../../main/engine/model/dtype-policy.ts';
import { renderTable } from '../../main/cli/models.ts';

let root: string;
let models: string;
const GiB = 1024 ** 3;
const moe = { experts: 8, topK: 2, intermediate: 256, router8bit: true, mlpOnlyLayers: [1] };

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-libfam-'));
  models = path.join(root, 'models');
  mkdirSync(models, { recursive: true });
  await buildTinyModel({ family: 'qwen3_moe', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, layers: 3, moe, vocabSize: 1024 }, path.join(models, 'tiny-moe-q4'));
  await buildTinyModel({ family: 'gemma3', dtype: 'bfloat16', layers: 3, slidingPattern: 3, vocabSize: 1024 }, path.join(models, 'tiny-gemma3-mm'));
  await buildTinyModel({ family: 'gemma3_text', layers: 6, slidingPattern: 6, slidingWindow: 16, vocabSize: 1024 }, path.join(models, 'tiny-gemma3-text'));
});

after(() => rmSync(root, { recursive: true, force: true }));

describe('library: families', () => {
  it('MoE: family, active vs total parameters, and a fit sized for every expert', async () => {
    const [m] = (await listModels(root, { availableBytes: 64 * GiB, overheadBytes: 0 })).filter((x) => x.id === 'tiny-moe-q4');
    assert.equal(m.architecture, 'qwen3_moe');
    assert.equal(m.family, 'qwen3_moe');
    // The engine counts the same parameters when it loads the folder (every expert of every layer).
    const lm = await loadModel(path.join(models, 'tiny-moe-q4'), { policy: cpuFloat32Policy() });
    assert.equal(m.parameters, lm.info.numParameters);
    // Two sparse layers (layer 1 is dense) each skip experts - topK experts of 3 · hidden · moe_intermediate.
    assert.equal(m.activeParameters, m.parameters! - 2 * (8 - 2) * 3 * 256 * 256);
    assert.ok(m.activeParameters! < m.parameters!);
    assert.equal(m.fitsInMemory.weightsBytes, m.parameters! * 4, 'all experts are held in float32');
    // `mlx-bar models` shows total and active parameters.
    assert.match(renderTable([m]).split('\n')[1], /qwen3_moe .*\d+(\.\d)?[KMB] \(\d+(\.\d)?[KMB] active\)/);
  });

  it('sliding-window layers: the fit counts their KV only up to the ring, as the loaded engine reports it', async () => {
    const [g] = (await listModels(root, { availableBytes: 64 * GiB, overheadBytes: 0, contextTokens: 4096 })).filter((x) => x.id === 'tiny-gemma3-text');
    assert.deepEqual(g.layerWindows, [16, 16, 16, 16, 16, null]);
    const layer = 2 * 2 * 32 * 4; // keys + values × 2 KV heads × head_dim 32 × float32
    // One global layer holds all 4,096 tokens; five local ones a ring of 15 + 256 slots.
    assert.equal(g.fitsInMemory.kvBytes, layer * 4096 + 5 * layer * (15 + 256));
    const lm = await loadModel(path.join(models, 'tiny-gemma3-text'), { policy: cpuFloat32Policy() });
    assert.equal(lm.info.kvBytesPerToken, 6 * layer);
    assert.deepEqual(lm.info.kvSliding, { bytesPerToken: 5 * layer, maxTokens: 15 + 256 });
  });

  it('Gemma 3 multimodal: dimensions from text_config, so the fit is known', async () => {
    const [g] = (await listModels(root, { availableBytes: 64 * GiB })).filter((x) => x.id === 'tiny-gemma3-mm');
    assert.equal(g.architecture, 'gemma3');
    assert.equal(g.family, 'gemma3');
    assert.equal(g.activeParameters, null);
    assert.equal(g.numLayers, 3);
    assert.equal(g.numKvHeads, 2);
    assert.equal(g.headDim, 32);
    assert.ok(Number.isFinite(g.fitsInMemory.needBytes) && g.fitsInMemory.fits, g.fitsInMemory.reason);
  });
});
