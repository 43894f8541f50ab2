// Prefix KV persistence through the whole stack (startServe: real engine process, real server,
// the integrity-checked prefix store on disk): a long repeated system prompt is warm after a
// restart (cached_tokens from the first request), and a damaged stored entry is quarantined and
// counted while the request still succeeds, cold.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, readFile, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';

let dataDir: string;
let modelDir: string;
const SYSTEM = Array.from({ length: 70 }, (_, i) => `Rule ${i}: answer briefly and cite the file you used.`).join(' ');

function opts(): ServeOptions {
  return serveOptionsFor(modelDir, dataDir, {
    settings: { ...DEFAULT_SETTINGS, dataDir, prefixCache: { ...DEFAULT_SETTINGS.prefixCache, persist: true } },
  });
}

async function ask(running: RunningServe, user: string) {
  const res = await fetch(`${running.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: user }], max_tokens: 4, seed: 7 }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { choices: { message: { content: string } }[]; usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
  return { text: body.choices[0].message.content, prompt: body.usage.prompt_tokens, cached: body.usage.prompt_tokens_details.cached_tokens };
}

before(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'mlxbar-prefix-persist-'));
  modelDir = await buildTinyModel({ family: 'qwen3', layers: 2 });
});
after(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

test('a restart is warm for a repeated long system prompt; damage → quarantine and a cold, correct answer', { timeout: 300_000 }, async () => {
  const log: string[] = [];
  let running = await startServe(opts(), (l) => log.push(l));
  let cold: Awaited<ReturnType<typeof ask>>;
  try {
    cold = await ask(running, 'first question');
    assert.ok(cold.prompt > 300, `prompt should be long, got ${cold.prompt}`);
    assert.equal(cold.cached, 0);
  } finally {
    await running.stop(); // flushes new prefixes to disk before the engine stops
  }
  const dir = path.join(dataDir, 'cache', 'prefix-kv');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.entry'));
  assert.equal(files.length, 1, 'one prefix entry persisted');

  // Restart: the first request of the new process reuses the stored prefix and answers the same.
  running = await startServe(opts(), (l) => log.push(l));
  try {
    const warm = await ask(running, 'first question');
    assert.ok(warm.cached >= cold.prompt - 8, `expected a warm prefix, cached ${warm.cached} of ${warm.prompt}`);
    assert.equal(warm.text, cold.text, 'reused KV gives the same tokens as the cold run');
    // The Prometheus gauges report what the prefix store holds on disk (it was once always empty).
    const prom = await (await fetch(`${running.url}/metrics`)).text();
    const gauge = (name: string) => Number(new RegExp(`^${name}\\{cache="prefix"\\} (\\S+)$`, 'm').exec(prom)?.[1]);
    assert.equal(gauge('mlxbar_cache_entries'), 1, prom);
    assert.equal(gauge('mlxbar_cache_bytes'), (await stat(path.join(dir, files[0]))).size);

    // The engine process dies: the restarted engine is warm again from disk.
    const engine = running.engine as unknown as { pid?: number; state: string };
    const pid = engine.pid;
    assert.ok(pid, 'engine pid');
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    while (!(engine.state === 'ready' && engine.pid !== pid)) {
      assert.ok(Date.now() - t0 < 120_000, `engine did not come back (state ${engine.state})`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 1500)); // the restore runs right after 'ready'
    const afterCrash = await ask(running, 'first question');
    assert.ok(afterCrash.cached >= cold.prompt - 8, `warm after a crash restart: cached ${afterCrash.cached}`);
    assert.equal(afterCrash.text, cold.text);
  } finally {
    await running.stop();
  }
  assert.ok(log.filter((l) => /restored 1 prompt prefix/.test(l)).length >= 2, log.join('\n'));

  // Damage the stored entry (flip a payload byte): the next start quarantines it and answers cold.
  const file = path.join(dir, files[0]);
  const buf = await readFile(file);
  buf[Math.floor(buf.length / 2)] ^= 0xff;
  await writeFile(file, buf);
  running = await startServe(opts(), (l) => log.push(l));
  try {
    const again = await ask(running, 'first question');
    assert.equal(again.cached, 0, 'a damaged entry is a miss');
    assert.equal(again.text, cold.text);
    const metrics = (await (await fetch(`${running.url}/v1/metrics`)).json()) as { cache_corruptions: Record<string, number> };
    await new Promise((r) => setTimeout(r, 1200)); // corruption counts are mirrored into metrics ~1/s
    const m2 = (await (await fetch(`${running.url}/v1/metrics`)).json()) as { cache_corruptions: Record<string, number> };
    const total = Object.values(m2.cache_corruptions).reduce((a, b) => a + b, 0);
    assert.ok(total >= 1, `corruption counted: ${JSON.stringify(m2.cache_corruptions)} (before ${JSON.stringify(metrics.cache_corruptions)})`);
  } finally {
    await running.stop();
  }
  const quarantined = await readdir(path.join(dataDir, 'cache', 'quarantine'));
  assert.ok(quarantined.some((f) => f.includes('checksum')), `quarantine: ${quarantined.join(', ')}`);
});
