// Settings values are validated as what they are, through the real HTTP settings API of a real
// `serve` (PUT /v1/settings) and the real command line: a wildcard web origin (`http://*`) is
// refused like `*` (it would admit every web site), and nothing is written.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseServeArgs } from '../../main/cli/serve.ts';
import { startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { rawRequest } from './helpers.ts';

const KEY = 'values-key-0123456789';

describe('settings values over HTTP and flags', { timeout: 300_000 }, () => {
  let root = '';
  let dataDir = '';
  let running: RunningServe | null = null;
  let port = 0;
  const put = (values: unknown) =>
    rawRequest(port, {
      method: 'PUT',
      path: '/v1/settings',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ values }),
    });

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-values-'));
    dataDir = path.join(root, 'data');
    mkdirSync(dataDir, { recursive: true });
    const model = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    const opts = (await parseServeArgs(['--model', model, '--data-dir', dataDir, '--port', '0', '--api-key', KEY], {})) as ServeOptions;
    running = await startServe({ ...opts, idleUnloadMs: 0 }, () => {});
    port = Number(new URL(running.url).port);
  }, { timeout: 240_000 });

  after(async () => {
    await running?.stop().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('wildcard web origins are refused like "*"; nothing is saved', async () => {
    for (const bad of ['http://*', 'https://*', 'http://localhost*', '*']) {
      const r = await put({ allowedOrigins: [bad] });
      assert.equal(r.status, 400, `${bad}: ${r.body}`);
      const b = JSON.parse(r.body) as { error: { code: string; param: string } };
      assert.equal(b.error.code, 'invalid_value');
      assert.match(b.error.param, /^allowedOrigins/);
      assert.equal(existsSync(path.join(dataDir, 'config.json')), false, 'nothing written');
    }
    // what editors need still saves: an app scheme prefix, one web host on any port, an exact origin
    const ok = await put({ allowedOrigins: ['vscode-webview://*', 'http://localhost:*', 'https://example.com'] });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(JSON.parse(readFileSync(path.join(dataDir, 'config.json'), 'utf8')).allowedOrigins, ['vscode-webview://*', 'http://localhost:*', 'https://example.com']);
  });

  test('--allow-origin "http://*" stops the launch with the reason', async () => {
    await assert.rejects(parseServeArgs(['--model', 'x', '--data-dir', dataDir, '--allow-origin', 'http://*'], {}), /allowed-origins|allow-origin|allowedOrigins/);
  });
});
