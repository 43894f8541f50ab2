// What the metrics say must be true (issue #11 items 11 and 16), against a real `mlx-bar serve --demo`:
// the response cache reports "off" (the default) and an unknown hit rate (null) before any lookup
// instead of 0; the latency percentiles cover only generation routes (a burst of /v1/models calls
// does not drag them down) over the last minute; recent requests are newest first; the loaded model
// is flagged as the DEMO model. The sliding window is checked with an injected clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetrics } from '../../main/hardening/metrics.ts';
import type { MetricsSnapshot } from '../../main/common/metrics-types.ts';
import { createMemorySampler } from '../../main/hardening/memory.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('mlx-bar serve --demo: cache off + hit_rate null, generation-only latency, newest first, demo flag', { timeout: 300_000 }, async (t) => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-truth-'));
  const child = spawn(process.execPath, [path.join(root, 'bin', 'mlx-bar.mjs'), 'serve', '--demo', '--port', '0', '--data-dir', path.join(tmp, 'data')], {
    cwd: root,
    env: { ...process.env, MLXBAR_MODEL: '', MLXBAR_RESPONSE_CACHE: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) (clearInterval(timer), resolve(m[1]));
      else if (child.exitCode !== null) (clearInterval(timer), reject(new Error(out.slice(-600))));
    }, 100);
  });
  const metrics = async () => (await (await fetch(`${url}/v1/metrics`)).json()) as MetricsSnapshot;

  const first = await metrics();
  assert.equal(first.cache.enabled, false, 'the response cache is off by default and says so');
  assert.equal(first.cache.hit_rate, null, 'no lookups: the hit rate is unknown, not 0');
  assert.equal(first.prompt_cache.hit_rate, null);
  assert.equal(first.model.demo, true, 'the DEMO model is flagged');

  const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
  const id = models.data[0].id;
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: id, messages: [{ role: 'user', content: 'hello' }], max_tokens: 3 }),
  });
  assert.equal(r.status, 200);
  // a burst of cheap listings after the generation
  for (let i = 0; i < 20; i++) assert.equal((await fetch(`${url}/v1/models`)).status, 200);

  const s = await metrics();
  assert.equal(s.latency.count, 1, 'only the generation is a latency sample');
  assert.ok(s.latency.p50 >= s.recent_requests.find((x) => x.route === '/v1/chat/completions')!.latency_s * 0.99, 'P50 is the generation, not a listing');
  assert.equal(s.latency.window_seconds, 60);
  assert.ok(s.latency.routes?.includes('/v1/chat/completions') && !s.latency.routes.includes('/v1/models'));
  assert.equal(s.recent_requests[0].route, '/v1/models', 'newest first');
  const times = s.recent_requests.map((x) => Date.parse(x.at));
  assert.deepEqual(times, [...times].sort((a, b) => b - a), 'sorted newest first');
  assert.equal(s.prompt_cache.hit_rate !== null, true, 'a prompt was computed: the reuse rate is known now');

  child.kill('SIGTERM');
  assert.equal(await new Promise((res) => child.on('exit', res)), 0);
});

test('latency percentiles slide: a minute later the window is empty again', () => {
  let now = 1_700_000_000_000;
  const m = createMetrics({ now: () => now, memory: createMemorySampler({ systemSoftPercent: 0, systemHardPercent: 0 }) });
  try {
    const rec = (latency: number) => ({ id: 'x', route: '/v1/chat/completions', stream: false, status: 200, promptTokens: 3, completionTokens: 2, cachedTokens: 0, latencySeconds: latency, ttftSeconds: latency / 2, finishReason: 'stop', responseCacheHit: false, cancelled: false, errorCode: null });
    m.recordRequest(rec(4));
    assert.equal(m.snapshot().latency.p50, 4);
    now += 61_000;
    m.recordRequest(rec(1));
    const s = m.snapshot();
    assert.equal(s.latency.count, 1, 'the sample of a minute ago left the window');
    assert.equal(s.latency.p50, 1, 'the chart follows the new traffic instead of staying flat');
  } finally {
    m.close();
  }
});
