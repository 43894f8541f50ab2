// The app's DEMO model: a clearly labelled random-weight Qwen3-layout folder with the real
// tokenizer, written at runtime, that the engine loads and generates from.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildDemoModel, DEMO_MODEL_SPEC } from '../../main/engine/demo/write-model.ts';
import { QWEN3_TOKENIZER_DIR } from '../helpers/tiny-model.ts';
import { loadModel, generateAll } from '../../main/engine/model/generator.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-demo-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('demo model', () => {
  it('is written in the real layout, labelled as random weights, and generates', async () => {
    const dir = buildDemoModel(path.join(tmp, 'MLX-Bar-Demo'), QWEN3_TOKENIZER_DIR);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      assert.ok(existsSync(path.join(dir, f)), f);
    }
    assert.match(readFileSync(path.join(dir, 'README.md'), 'utf8'), /DEMO.*\n[\s\S]*Random weights/);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'qwen3');
    assert.equal(cfg.vocab_size, 151936);
    const lm = await loadModel(dir);
    assert.equal(lm.info.id, 'MLX-Bar-Demo');
    assert.equal(lm.info.numLayers, DEMO_MODEL_SPEC.layers);
    assert.equal(lm.info.checkpointDtype, 'bfloat16');
    const r = await generateAll(lm, null, { promptIds: [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198], sampling: { ...DEFAULT_SAMPLING, maxTokens: 5 } });
    assert.ok(r.tokens.length > 0 && r.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < 151936));
  });
});
