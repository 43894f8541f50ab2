// Renderer logic that does not need a browser: editor snippets, schema → form fields, input
// parsing, ajv error mapping, chart history, SSE framing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { settingsRootSchema, SETTINGS_SCHEMA } from '../../main/settings/schema.ts';
import { SseParser, isSnapshot } from '../../renderer/src/api/feed.ts';
import { appendSample } from '../../renderer/src/api/history.ts';
import { duration, pct, secs } from '../../renderer/src/format.ts';
import { fieldsOf, fromInput, getAt, issuesFromAjv, setAt, type JsonSchema } from '../../renderer/src/settings-form.ts';
import { buildSnippets } from '../../renderer/src/snippets.ts';
import type { MetricsSnapshot } from '../../main/common/metrics-types.ts';

function snapAt(ts: string, count = 0): MetricsSnapshot {
  return {
    cache: { cache_hits: 0, cache_misses: 0, hit_rate: 0 },
    prompt_cache: { reused_tokens: 0, computed_tokens: 0, hit_rate: 0 },
    latency: { p50: 0.5, p95: 0.9, p99: 1.2, count },
    ttft: { p50: 0.1, p95: 0.2, p99: 0.3 },
    tokens_per_second: 10,
    memory: { current_mb: 1, peak_mb: 1, growth_percent: 0, server_rss_mb: 1, engine_rss_mb: 1, engine_peak_mb: 1 },
    throughput: { total_requests: count, requests_per_second: 0 },
    requests: { active: 0, queued: 0, cancelled: 0, errors: 0, by_status: {} },
    tokens: { prompt_total: 0, completion_total: 0 },
    degradation: { state: 'normal', cache_enabled: true, reason: null, since: ts },
    cache_corruptions: {},
    engine_restarts: 0,
    model: { id: 'm', state: 'ready' },
    recent_requests: [],
    timestamp: ts,
    uptime_seconds: 1,
  };
}

describe('snippets', () => {
  const input = { endpoint: 'http://127.0.0.1:9123/v1/', model: 'Qwen3-0.6B-4bit', apiKey: "k3y'with\"quotes", contextLength: 32768 };
  const by = Object.fromEntries(buildSnippets(input).map((s) => [s.id, s]));

  test('every client, filled with the real endpoint, model and key', () => {
    assert.deepEqual(Object.keys(by), ['continue', 'zed', 'cline', 'claude-code', 'codex', 'ollama', 'openai-js', 'openai-py', 'curl']);
    for (const s of Object.values(by)) {
      assert.ok(s.text.includes('http://127.0.0.1:9123'), `${s.id} has the endpoint`);
      assert.ok(!s.text.includes('/v1//'), `${s.id}: trailing slash trimmed`);
      assert.ok(s.text.includes('Qwen3-0.6B-4bit'), `${s.id} has the model`);
    }
    const zed = JSON.parse(by.zed.text);
    assert.equal(zed.language_models.openai_compatible['MLX Bar'].api_url, 'http://127.0.0.1:9123/v1');
    assert.equal(zed.language_models.openai_compatible['MLX Bar'].available_models[0].max_tokens, 32768);
    assert.match(by.continue.text, /apiBase: "http:\/\/127\.0\.0\.1:9123\/v1"/);
    assert.match(by.continue.text, /provider: openai/);
    assert.match(by.cline.text, /API Provider: OpenAI Compatible/);
    assert.ok(by['openai-js'].text.includes(`apiKey: ${JSON.stringify(input.apiKey)}`));
    assert.ok(by['openai-py'].text.includes(`api_key=${JSON.stringify(input.apiKey)}`));
  });

  test('Claude Code, Codex CLI and Ollama clients: the server root or /v1 as each expects, model and key', () => {
    const cc = by['claude-code'].text;
    assert.match(cc, /^export ANTHROPIC_BASE_URL='http:\/\/127\.0\.0\.1:9123'$/m, 'Claude Code adds /v1/messages itself');
    assert.ok(cc.includes(`export ANTHROPIC_AUTH_TOKEN='k3y'\\''with"quotes'`), cc);
    for (const v of ['ANTHROPIC_MODEL', 'ANTHROPIC_DEFAULT_SONNET_MODEL', 'ANTHROPIC_DEFAULT_HAIKU_MODEL']) assert.match(cc, new RegExp(`^export ${v}='Qwen3-0\\.6B-4bit'$`, 'm'));
    const codex = by.codex.text;
    assert.match(codex, /^model_provider = "mlx-bar"$/m);
    assert.match(codex, /^\[model_providers\.mlx-bar\]$/m);
    assert.match(codex, /^base_url = "http:\/\/127\.0\.0\.1:9123\/v1"$/m);
    assert.match(codex, /^wire_api = "responses"$/m);
    assert.match(codex, /^env_key = "MLXBAR_API_KEY"$/m);
    assert.match(codex, /^model_context_window = 32768$/m);
    assert.match(by.ollama.text, /^Ollama URL: http:\/\/127\.0\.0\.1:9123$/m);
    assert.match(by.ollama.text, /"github\.copilot\.chat\.byok\.ollamaEndpoint": "http:\/\/127\.0\.0\.1:9123"/);
    const noKey = Object.fromEntries(buildSnippets({ ...input, apiKey: null }).map((x) => [x.id, x]));
    assert.doesNotMatch(noKey.codex.text, /env_key/, 'no key: Codex needs no env_key');
    assert.match(noKey['claude-code'].text, /ANTHROPIC_AUTH_TOKEN='not-needed'/);
  });

  test('the curl command is valid shell even with quotes in the key', () => {
    const curl = by.curl.text;
    assert.ok(curl.includes(`-H 'Authorization: Bearer k3y'\\''with"quotes'`), curl);
    const body = /-d '(.*)'\n?$/.exec(curl)?.[1];
    assert.ok(body);
    assert.deepEqual(JSON.parse(body!), { model: 'Qwen3-0.6B-4bit', messages: [{ role: 'user', content: 'Hello!' }] });
  });

  test('without a key: no Authorization header, a placeholder for SDKs that require one', () => {
    const s = Object.fromEntries(buildSnippets({ ...input, apiKey: null }).map((x) => [x.id, x]));
    assert.doesNotMatch(s.curl.text, /Authorization/);
    assert.match(s['openai-js'].text, /apiKey: "not-needed"/);
  });
});

describe('settings form from the schema', () => {
  const schema = settingsRootSchema() as JsonSchema;
  const fields = fieldsOf(schema);

  test('one field per setting, nested groups flattened with their group title', () => {
    const leafCount = Object.values(SETTINGS_SCHEMA).reduce<number>((n, s) => n + (s.type === 'object' && s.properties ? Object.keys(s.properties as object).length : 1), 0);
    assert.equal(fields.length, leafCount);
    const port = fields.find((f) => f.pointer === '/port')!;
    assert.equal(port.kind, 'integer');
    assert.equal(port.label, 'Port');
    assert.equal(port.group, null);
    const enabled = fields.find((f) => f.pointer === '/responseCache/enabled')!;
    assert.equal(enabled.kind, 'boolean');
    assert.equal(enabled.group, 'Response cache');
    assert.equal(fields.find((f) => f.pointer === '/apiKey')!.kind, 'secret');
    assert.equal(fields.find((f) => f.pointer === '/logLevel')!.kind, 'enum');
    assert.equal(fields.find((f) => f.pointer === '/allowedOrigins')!.kind, 'string-list');
    assert.equal(fields.find((f) => f.pointer === '/memory/softPercent')!.kind, 'number');
  });

  test('typed text becomes values; bad numbers stay visible for validation', () => {
    const port = fields.find((f) => f.pointer === '/port')!;
    assert.equal(fromInput(port, '8080'), 8080);
    assert.equal(fromInput(port, ' 12a '), ' 12a ');
    assert.equal(fromInput(port, '1e3'), 1000);
    assert.equal(fromInput(port, ''), undefined);
    const origins = fields.find((f) => f.pointer === '/allowedOrigins')!;
    assert.deepEqual(fromInput(origins, 'vscode-webview://*\n\n http://localhost:3000 \n'), ['vscode-webview://*', 'http://localhost:3000']);
    const level = fields.find((f) => f.pointer === '/logLevel')!;
    assert.equal(fromInput(level, '"debug"'), 'debug');
  });

  test('nested get/set are immutable', () => {
    const v = { responseCache: { enabled: false, maxEntries: 5 } };
    const next = setAt(v, ['responseCache', 'enabled'], true);
    assert.equal(getAt(next, ['responseCache', 'enabled']), true);
    assert.equal(getAt(next, ['responseCache', 'maxEntries']), 5);
    assert.equal(v.responseCache.enabled, false);
  });

  test('ajv errors map to field pointers', () => {
    const issues = issuesFromAjv([
      { instancePath: '/port', keyword: 'maximum', message: 'must be <= 65535' },
      { instancePath: '/port', keyword: 'maximum', message: 'must be <= 65535' },
      { instancePath: '', keyword: 'required', message: "must have required property 'host'", params: { missingProperty: 'host' } },
      { instancePath: '/logLevel', keyword: 'enum', message: 'must be equal to one of the allowed values', params: { allowedValues: ['info', 'debug'] } },
    ]);
    assert.deepEqual(issues, [
      { path: '/port', message: 'must be <= 65535' },
      { path: '/host', message: "must have required property 'host'" },
      { path: '/logLevel', message: 'must be one of "info", "debug"' },
    ]);
  });
});

describe('chart history and feed parsing', () => {
  test('keeps a bounded, time-ordered series; repeated timestamps are dropped', () => {
    let h = appendSample([], snapAt('2026-01-01T00:00:00.000Z', 1), 3);
    h = appendSample(h, snapAt('2026-01-01T00:00:00.000Z', 1), 3);
    assert.equal(h.length, 1);
    for (let i = 1; i <= 5; i++) h = appendSample(h, snapAt(`2026-01-01T00:00:0${i}.000Z`, i), 3);
    assert.equal(h.length, 3);
    assert.deepEqual(h.map((s) => s.n), [3, 4, 5]);
    assert.equal(h[0].p95, 900, 'milliseconds on the chart');
  });

  test('SSE frames split across chunks, comments and CRLF', () => {
    const p = new SseParser();
    assert.deepEqual(p.push('retry: 2000\n\n: ping\n\ndata: {"a"'), []);
    assert.deepEqual(p.push(':1}\n\ndata: 2\r\n\r\ndata: x\ndata: y\n\n'), ['{"a":1}', '2', 'x\ny']);
  });

  test('only snapshot-shaped bodies are accepted', () => {
    assert.equal(isSnapshot(snapAt('2026-01-01T00:00:00Z')), true);
    assert.equal(isSnapshot({ error: { message: 'nope' } }), false);
    assert.equal(isSnapshot('<html>'), false);
    assert.equal(isSnapshot(null), false);
  });

  test('formatting', () => {
    assert.equal(pct(0.3077), '30.8%');
    assert.equal(secs(0.4123), '412 ms');
    assert.equal(secs(1.239), '1.24 s');
    assert.equal(duration(93784), '1d 2h 3m');
    assert.equal(duration(125), '2m 5s');
    assert.equal(pct(Number.NaN), '—');
  });
});
