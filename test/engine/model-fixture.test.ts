// The tiny-model fixture builder: content-addressed, and safe when several test processes build
// the same model at once (temp dir + rename: everyone gets one complete folder).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel, tinyModelKey } from '../helpers/tiny-model.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const seed = 100000 + (process.pid % 100000);
const spec = { family: 'mistral' as const, seed, vocabSize: 4096, layers: 1 };
let built: string | null = null;
after(() => {
  if (built) rmSync(built, { recursive: true, force: true });
});

describe('tiny-model fixtures', () => {
  it('parallel builders of the same spec share one complete folder', async () => {
    const helper = path.join(here, '../helpers/tiny-model.ts');
    const script = `import { buildTinyModel } from ${JSON.stringify(helper)}; process.stdout.write(await buildTinyModel(${JSON.stringify(spec)}));`;
    const run = () =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 120_000, cwd: path.join(here, '../..') });
    const [a, b, c] = await Promise.all([run(), run(), run()]);
    built = a.stdout;
    assert.equal(a.stdout, b.stdout);
    assert.equal(a.stdout, c.stdout);
    assert.equal(await buildTinyModel(spec), a.stdout, 'the same spec maps to the same folder');
    assert.ok(a.stdout.endsWith(tinyModelKey(spec)));
    const files = readdirSync(a.stdout).sort();
    assert.deepEqual(files, ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const cfg = JSON.parse(readFileSync(path.join(a.stdout, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'mistral');
    assert.equal(cfg.num_hidden_layers, 1);
    const leftovers = readdirSync(path.dirname(a.stdout)).filter((f) => f.startsWith(path.basename(a.stdout) + '.tmp-'));
    assert.deepEqual(leftovers, [], 'no temp folders left behind');
  });
});
