// Settings over HTTP (GET/PUT /v1/settings) on the real headless server, started the way `mlx-bar
// serve` starts it (parseServeArgs: flags > env > config.json > defaults, then startServe with a
// supervised engine on a tiny model), on a loopback port. Covers reading, saving, invalid saves
// (nothing written), the API key never leaving the server and never erased by a plain save, the
// refusals (foreign and webview origins, cross-site fetches, key, content type, body size, method)
// and a corrupt config.json (reported, then repaired by a save that keeps the bad file aside).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseServeArgs } from '../../main/cli/serve.ts';
import { startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { LEAK_RE, rawRequest, type RawResponse } from './helpers.ts';

const FLAG_KEY = 'flag-key-0123456789';
const STORED_KEY = 'stored-key-abcdefgh';
const WEBVIEW = 'vscode-webview://abc123';

describe('settings over HTTP on the real server', { timeout: 300_000 }, () => {
  let root = '';
  let dataDir = '';
  let file = '';
  let running: RunningServe | null = null;
  let port = 0;

  const auth = { authorization: `Bearer ${FLAG_KEY}` };
  const get = (headers: Record<string, string> = {}) => rawRequest(port, { path: '/v1/settings', headers: { ...auth, ...headers } });
  const put = (body: unknown, headers: Record<string, string> = {}) =>
    rawRequest(port, {
      method: 'PUT',
      path: '/v1/settings',
      headers: { ...auth, 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const parse = (r: RawResponse) => JSON.parse(r.body) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const onDisk = () => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  /** An error answer: OpenAI shape, the stable code, nothing that looks like a path or a stack. */
  const assertError = (r: RawResponse, status: number, code: string) => {
    assert.equal(r.status, status, r.body);
    const b = parse(r);
    assert.equal(b.error.code, code, r.body);
    assert.equal(typeof b.error.message, 'string');
    assert.doesNotMatch(r.body, LEAK_RE);
    assert.ok(!r.body.includes(dataDir));
    return b;
  };

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-settings-http-'));
    dataDir = path.join(root, 'data');
    file = path.join(dataDir, 'config.json');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, JSON.stringify({ apiKey: STORED_KEY, maxConcurrent: 2, contextLength: 2048, futureSetting: { x: 1 } }, null, '\t'));
    const model = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    const argv = ['--model', model, '--data-dir', dataDir, '--port', '0', '--api-key', FLAG_KEY, '--allow-origin', 'vscode-webview://*'];
    const opts = (await parseServeArgs(argv, { MLXBAR_MAX_QUEUE: '5' })) as ServeOptions;
    running = await startServe({ ...opts, idleUnloadMs: 0 }, () => {});
    port = Number(new URL(running.url).port);
  }, { timeout: 240_000 });

  after(async () => {
    await running?.stop().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('/health advertises the settings API (public, so the page can check without a probe that 404s)', async () => {
    const r = await rawRequest(port, { path: '/health' });
    assert.equal(r.status, 200);
    assert.equal(parse(r).settings_api, true);
  });

  test('GET: the stored file over defaults, the key masked, where every value of this launch came from', async () => {
    const r = await get();
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.ok(!r.body.includes(STORED_KEY) && !r.body.includes(FLAG_KEY), 'no key in the answer');
    const b = parse(r);
    assert.equal(b.file, 'ok');
    assert.deepEqual(b.issues, []);
    assert.equal(b.values.maxConcurrent, 2, 'from the file');
    assert.equal(b.values.contextLength, 2048, 'from the file');
    assert.equal(b.values.maxQueue, 16, 'the FILE value (default), not the env override');
    assert.equal(b.values.theme, 'system', 'default');
    assert.deepEqual(b.values.responseCache, { enabled: false, maxEntries: 256, maxBytes: 256 * 1024 * 1024 });
    assert.equal(b.values.apiKey, '');
    assert.equal(b.apiKeySet, true);
    assert.equal('futureSetting' in b.values, false, 'unknown keys are not shown');
    assert.equal(b.sources.port, 'flag');
    assert.equal(b.sources.maxQueue, 'env');
    assert.equal(b.sources.maxConcurrent, 'file');
    assert.equal(b.sources.theme, 'default');
    assert.equal(b.sources['responseCache.enabled'], 'default');
    assert.deepEqual(b.overrides, { port: '--port', apiKey: '--api-key', model: '--model', allowedOrigins: '--allowed-origins', maxQueue: 'MLXBAR_MAX_QUEUE' });
    assert.deepEqual(b.restartRequired, [], 'the file is what this launch runs with');
  });

  test('PUT saves atomically through the store, keeps the stored key, keeps unknown keys, says what needs a restart', async () => {
    const current = parse(await get()).values;
    const r = await put({ values: { ...current, maxConcurrent: 3, theme: 'dark', port: 9001, responseCache: { ...current.responseCache, enabled: true } } });
    assert.equal(r.status, 200, r.body);
    const b = parse(r);
    assert.equal(b.ok, true);
    assert.deepEqual(b.issues, []);
    assert.equal(b.movedAside, false);
    // port is saved but --port overrides it in this launch, so a restart would not apply it either;
    // maxConcurrent applies while serving.
    assert.deepEqual(b.restartRequired, ['responseCache.enabled', 'theme']);
    assert.deepEqual(b.applied, ['maxConcurrent']);
    const disk = onDisk();
    assert.equal(disk.maxConcurrent, 3);
    assert.equal(disk.theme, 'dark');
    assert.equal(disk.port, 9001);
    assert.equal((disk.responseCache as Record<string, unknown>).enabled, true);
    assert.equal(disk.apiKey, STORED_KEY, 'apiKey "" in a PUT keeps the stored key');
    assert.deepEqual(disk.futureSetting, { x: 1 }, 'a newer version’s key survives');
    assert.deepEqual(readdirSync(dataDir).filter((f) => f.includes('.tmp')), [], 'no temp files left');
    if (process.platform !== 'win32') assert.equal(statSync(file).mode & 0o777, 0o600, 'the file holding the key is owner-only');
    // The pending restart is still reported after a reload of the page.
    const again = parse(await get());
    assert.equal(again.values.maxConcurrent, 3);
    assert.deepEqual(again.restartRequired, ['responseCache.enabled', 'theme']);

    // A document without apiKey at all also keeps it; absent settings go back to their defaults.
    const r2 = await put({ values: { maxConcurrent: 2, contextLength: 2048 } });
    assert.equal(r2.status, 200, r2.body);
    assert.deepEqual(parse(r2).restartRequired, []);
    assert.deepEqual(parse(r2).applied, ['maxConcurrent']);
    const disk2 = onDisk();
    assert.equal(disk2.apiKey, STORED_KEY);
    assert.equal(disk2.theme, 'system');
    assert.equal(disk2.port, 8080);
  });

  test('an invalid PUT answers 400 invalid_value with the setting path and every field issue, and writes nothing', async () => {
    const beforeText = readFileSync(file, 'utf8');
    const beforeMtime = statSync(file).mtimeMs;
    const current = parse(await get()).values;

    const r = await put({ values: { ...current, port: 70000, responseCache: { ...current.responseCache, maxEntries: 'many' } } });
    const b = assertError(r, 400, 'invalid_value');
    assert.equal(b.error.type, 'invalid_request_error');
    assert.equal(b.ok, false);
    const paths = (b.issues as { path: string }[]).map((i) => i.path).sort();
    assert.deepEqual(paths, ['/port', '/responseCache/maxEntries']);
    assert.ok(['port', 'responseCache.maxEntries'].includes(b.error.param), b.error.param);

    // an unknown setting, a new key together with clearApiKey, a short key, a network host without a key
    assert.equal(assertError(await put({ values: { ...current, portt: 1 } }), 400, 'invalid_value').error.param, 'portt');
    assert.equal(assertError(await put({ values: { ...current, apiKey: 'another-key-123' }, clearApiKey: true }), 400, 'invalid_value').error.param, 'apiKey');
    const short = assertError(await put({ values: { ...current, apiKey: 'short' } }), 400, 'invalid_value');
    assert.equal(short.error.param, 'apiKey');
    assert.ok(!JSON.stringify(short).includes('"short"'), 'the rejected key is not echoed');
    const open = assertError(await put({ values: { ...current, host: '0.0.0.0' }, clearApiKey: true }), 400, 'invalid_value');
    assert.equal(open.error.param, 'host');
    assert.match(open.issues[0].message, /API key/);
    // body shape
    assertError(await put({ settings: current }), 400, 'unsupported_parameter');
    assertError(await put({}), 400, 'missing_required_parameter');
    assertError(await put({ values: [] }), 400, 'invalid_value');
    assertError(await put('[1,2]'), 400, 'invalid_json');
    assertError(await put('{"values":'), 400, 'invalid_json');

    assert.equal(readFileSync(file, 'utf8'), beforeText, 'nothing was written');
    assert.equal(statSync(file).mtimeMs, beforeMtime);
  });

  test('clearApiKey removes the stored key; a new key replaces it', async () => {
    const current = parse(await get()).values;
    let r = await put({ values: current, clearApiKey: true });
    assert.equal(r.status, 200, r.body);
    assert.equal(onDisk().apiKey, '');
    assert.equal(parse(await get()).apiKeySet, false);
    r = await put({ values: { ...current, apiKey: 'brand-new-key-42' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(onDisk().apiKey, 'brand-new-key-42');
    const g = await get();
    assert.equal(parse(g).apiKeySet, true);
    assert.ok(!g.body.includes('brand-new-key-42'));
    // The running server still uses the launch key (from --api-key): nothing applies live.
    assert.equal((await rawRequest(port, { path: '/v1/models', headers: auth })).status, 200);
  });

  test('refusals: origins other than the server’s own (also a webview allowed for chat), cross-site fetches, key, content type, size, method', async () => {
    const beforeText = readFileSync(file, 'utf8');
    const current = parse(await get()).values;
    const changed = { values: { ...current, maxConcurrent: 7 } };
    const own = `http://127.0.0.1:${port}`;

    // The webview origin is admitted for the API (chat, models)…
    const models = await rawRequest(port, { path: '/v1/models', headers: { ...auth, origin: WEBVIEW } });
    assert.equal(models.status, 200);
    assert.equal(models.headers['access-control-allow-origin'], WEBVIEW);
    // …but not for settings, neither reading nor writing.
    assertError(await get({ origin: WEBVIEW }), 403, 'forbidden_origin');
    assertError(await put(changed, { origin: WEBVIEW }), 403, 'forbidden_origin');
    // A foreign page, a `null` origin, and another of this machine's origins for the same port (cross-origin for the browser).
    assertError(await get({ origin: 'http://evil.example' }), 403, 'forbidden_origin');
    assertError(await put(changed, { origin: 'null' }), 403, 'forbidden_origin');
    assertError(await get({ origin: `http://localhost:${port}` }), 403, 'forbidden_origin');
    assertError(await get({ origin: `http://127.0.0.1:${port + 1}` }), 403, 'forbidden_origin');
    // A browser marks no-cors / cross-site requests (e.g. <img src>) even without an Origin header.
    assertError(await get({ 'sec-fetch-site': 'cross-site' }), 403, 'forbidden_origin');
    assertError(await get({ 'sec-fetch-site': 'same-site' }), 403, 'forbidden_origin');
    // DNS rebinding: a foreign Host is refused before anything else.
    assertError(await get({ host: `evil.example:${port}` }), 403, 'forbidden_host');
    // The key (the server gate applies to these routes).
    assertError(await rawRequest(port, { path: '/v1/settings' }), 401, 'invalid_api_key');
    assertError(await rawRequest(port, { path: '/v1/settings', headers: { authorization: 'Bearer wrong-key-000' } }), 401, 'invalid_api_key');
    assertError(await put(changed, { authorization: `Bearer ${STORED_KEY}` }), 401, 'invalid_api_key');
    // Content type: a CORS-"simple" text/plain body, a form, no type at all (with and without a body).
    assertError(await put(JSON.stringify(changed), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    assertError(await put('values=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    assertError(await rawRequest(port, { method: 'PUT', path: '/v1/settings', headers: { ...auth } }), 415, 'unsupported_media_type');
    assertError(await rawRequest(port, { method: 'PUT', path: '/v1/settings', headers: { ...auth, 'content-type': 'application/json' }, body: '' }), 400, 'invalid_json');
    // Body size: a settings document is small.
    assertError(await put({ values: { ...current, model: 'x'.repeat(300 * 1024) } }), 413, 'body_too_large');
    // Methods.
    const post = await rawRequest(port, { method: 'POST', path: '/v1/settings', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    assertError(post, 405, 'method_not_allowed');
    assert.match(String(post.headers.allow), /PUT/);
    assert.equal(readFileSync(file, 'utf8'), beforeText, 'no refused request wrote anything');

    // The dashboard's own same-origin requests pass (Origin = the page's origin, Sec-Fetch-Site same-origin).
    const ok = await get({ origin: own, 'sec-fetch-site': 'same-origin' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers['access-control-allow-origin'], undefined, 'no CORS for settings');
    const saved = await put(changed, { origin: own, 'sec-fetch-site': 'same-origin' });
    assert.equal(saved.status, 200, saved.body);
    assert.equal(onDisk().maxConcurrent, 7);
  });

  test('settings requests are not counted as API traffic in the metrics', async () => {
    const r = await rawRequest(port, { path: '/v1/metrics', headers: auth });
    assert.equal(r.status, 200);
    const recent = parse(r).recent_requests as { route: string }[];
    assert.ok(recent.every((x) => x.route !== '/v1/settings'), JSON.stringify(recent.map((x) => x.route)));
    assert.ok(recent.some((x) => x.route === '/v1/models'), 'other API requests are recorded');
  });

  test('a corrupt config.json is reported, the server keeps running, and a save repairs it (the bad file kept aside)', async () => {
    writeFileSync(file, '{"maxConcurrent": 2, oops');
    const r = await get();
    assert.equal(r.status, 200, r.body);
    const b = parse(r);
    assert.equal(b.file, 'corrupt');
    assert.equal(b.issues.length, 1);
    assert.equal(b.issues[0].path, '');
    assert.match(b.issues[0].message, /not valid JSON/);
    assert.doesNotMatch(r.body, LEAK_RE);
    assert.equal(b.values.maxConcurrent, 4, 'defaults are shown');
    assert.equal(b.apiKeySet, false);
    assert.deepEqual(b.restartRequired, []);
    assert.equal((await rawRequest(port, { path: '/health' })).status, 200, 'still serving');

    const s = await put({ values: { ...b.values, maxConcurrent: 4 } });
    assert.equal(s.status, 200, s.body);
    assert.equal(parse(s).movedAside, true);
    assert.equal(onDisk().maxConcurrent, 4);
    const aside = readdirSync(dataDir).filter((f) => f.startsWith('config.json.invalid-'));
    assert.equal(aside.length, 1, readdirSync(dataDir).join(', '));
    assert.equal(readFileSync(path.join(dataDir, aside[0]), 'utf8'), '{"maxConcurrent": 2, oops', 'the bad file is kept for the user');
    const g = parse(await get());
    assert.equal(g.file, 'ok');
    assert.deepEqual(g.issues, []);

    // A file that parses but breaks the schema: shown field by field, repaired by a valid save.
    writeFileSync(file, JSON.stringify({ port: 'eighty', maxConcurrent: 2 }));
    const inv = parse(await get());
    assert.equal(inv.file, 'invalid');
    assert.deepEqual(inv.issues.map((i: { path: string }) => i.path), ['/port']);
    assert.equal(inv.values.port, 'eighty', 'the invalid value is shown so the user can fix it');
    const fix = await put({ values: { ...inv.values, port: 8088 } });
    assert.equal(fix.status, 200, fix.body);
    assert.equal(parse(fix).movedAside, true);
    assert.equal(onDisk().port, 8088);
    assert.equal(readdirSync(dataDir).filter((f) => f.startsWith('config.json.invalid-')).length, 2);
    assert.ok(existsSync(file));
  });
});
