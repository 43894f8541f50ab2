// The `model` setting is validated as what it is (#11 item 4): a model folder that exists and holds
// a model MLX Bar runs, or the id of a model the library holds (or the demo model's id). Through the
// real HTTP settings API of a real `serve` (PUT /v1/settings): "/etc", "../../etc/passwd",
// "file:///etc", an existing folder that is not a model, a model of an architecture we do not run,
// an incomplete model folder and an id that is not downloaded are refused with 400 invalid_value
// (param "model", no path in the answer) and nothing is saved; a real model folder, a library
// owner/repo id and the demo id are saved. And through the real command line: a config.json
// holding such a value stops `mlx-bar serve` with one clear line (exit 2, no stack), while a good
// value in config.json starts it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseServeArgs } from '../../main/cli/serve.ts';
import { startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { DEMO_MODEL_ID } from '../../main/core/demo-model.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';
import { killAll, runMlxBar, stopChild } from '../helpers/cli.ts';
import { rawRequest } from './helpers.ts';

const KEY = 'model-setting-key-0123456789';
const HELD = 'test-org/tiny-held';
const spec = { family: 'qwen3' as const, hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 };

describe('the model setting is checked as a model', { timeout: 400_000 }, () => {
  let root = '';
  let dataDir = '';
  let modelDir = '';
  let running: RunningServe | null = null;
  let port = 0;
  const configFile = () => path.join(dataDir, 'config.json');
  const storedModel = () => (existsSync(configFile()) ? (JSON.parse(readFileSync(configFile(), 'utf8')) as { model?: string }).model : undefined);
  const put = (values: unknown) =>
    rawRequest(port, {
      method: 'PUT',
      path: '/v1/settings',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ values }),
    });

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-model-setting-'));
    dataDir = path.join(root, 'data');
    mkdirSync(dataDir, { recursive: true });
    modelDir = await buildTinyModel(spec);
    // A model the library holds under its owner/repo id (a pulled folder carries the manifest).
    const held = path.join(dataDir, 'models', 'test-org--tiny-held');
    cpSync(modelDir, held, { recursive: true });
    writeFileSync(path.join(held, '.mlx-bar.json'), JSON.stringify({ repo: HELD, revision: 'main', commit: 'c'.repeat(40), id: HELD, downloadedAt: new Date().toISOString(), files: [] }));
    // Folders that exist but are not models MLX Bar can run.
    mkdirSync(path.join(root, 'not-a-model'));
    writeFileSync(path.join(root, 'not-a-model', 'notes.txt'), 'hello');
    cpSync(modelDir, path.join(root, 'bert'), { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
    writeFileSync(path.join(root, 'bert', 'config.json'), JSON.stringify({ ...cfg, model_type: 'bert', architectures: ['BertModel'] }));
    cpSync(modelDir, path.join(root, 'no-weights'), { recursive: true, filter: (src) => !src.endsWith('.safetensors') });

    const opts = (await parseServeArgs(['--model', modelDir, '--data-dir', dataDir, '--port', '0', '--api-key', KEY], {})) as ServeOptions;
    running = await startServe({ ...opts, idleUnloadMs: 0 }, () => {});
    port = Number(new URL(running.url).port);
  }, { timeout: 240_000 });

  after(async () => {
    killAll();
    await stopServeHard(running);
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('PUT /v1/settings refuses values that are not a model folder or a library id, and saves nothing', async () => {
    const cases: Array<[string, RegExp]> = [
      ['/etc', /not a model folder/],
      ['../../etc/passwd', /absolute folder path/],
      ['file:///etc', /not a URL/],
      ['/etc/passwd', /not a folder/],
      [path.join(root, 'not-a-model'), /not a model folder/],
      [path.join(root, 'bert'), /"bert" model, which MLX Bar does not run/],
      [path.join(root, 'no-weights'), /not a complete model folder: .*safetensors/],
      [path.join(root, 'does-not-exist'), /not an existing folder/],
      ['test-org/not-downloaded', /not a downloaded model/],
      ['just-a-name', /neither a model folder .* nor the id of a downloaded model/],
    ];
    for (const [value, reason] of cases) {
      const r = await put({ model: value });
      assert.equal(r.status, 400, `${value}: ${r.body}`);
      const b = JSON.parse(r.body) as { ok: boolean; issues: Array<{ path: string; message: string }>; error: { code: string; param: string; type: string; message: string } };
      assert.equal(b.error.code, 'invalid_value', value);
      assert.equal(b.error.type, 'invalid_request_error');
      assert.equal(b.error.param, 'model');
      assert.match(b.error.message, reason, value);
      assert.deepEqual(b.issues.map((i) => i.path), ['/model']);
      // Nothing but what the user sent: no data folder, no temp folder, no resolved path.
      assert.ok(!r.body.includes(dataDir) && !r.body.includes(tmpdir()), `${value}: a path leaked: ${r.body}`);
      assert.equal(existsSync(configFile()), false, `${value}: nothing may be written`);
    }
  });

  test('a real model folder, an owner/repo id the library holds and the demo id are saved', async () => {
    for (const value of [modelDir, HELD, DEMO_MODEL_ID, '']) {
      const r = await put({ model: value });
      assert.equal(r.status, 200, `${value}: ${r.body}`);
      assert.equal(storedModel(), value);
    }
    // A refused value leaves the saved one in place.
    await put({ model: HELD });
    assert.equal((await put({ model: '/etc' })).status, 400);
    assert.equal(storedModel(), HELD);
  });

  test('mlx-bar serve with a bad model in config.json: one clear line, exit 2, no stack; a good one starts', async () => {
    const cli = mkdtempSync(path.join(root, 'cli-'));
    for (const bad of ['/etc', 'file:///etc', '../../etc/passwd']) {
      writeFileSync(path.join(cli, 'config.json'), JSON.stringify({ model: bad }));
      const r = runMlxBar(['serve', '--data-dir', cli, '--port', '0']);
      assert.equal(await r.exited, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /the "model" setting in config\.json (is not a model folder|must be)/, bad);
      assert.match(r.stderr, /--model <folder \| owner\/repo> \(or --demo\)/);
      assert.doesNotMatch(r.stderr, /^\s+at\s/m, 'no stack trace');
      assert.ok(!r.stderr.includes(cli), 'no data folder path');
    }
    // Control: the same launch with a model folder in config.json serves it.
    writeFileSync(path.join(cli, 'config.json'), JSON.stringify({ model: modelDir }));
    const ok = runMlxBar(['serve', '--data-dir', cli, '--port', '0']);
    await ok.waitFor(/MLX Bar listening on http:\/\/127\.0\.0\.1:\d+/);
    assert.equal(await stopChild(ok), 0);
  });
});
