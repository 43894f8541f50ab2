// Prefix KV persistence follows whichever model is loaded, through the whole stack (startServe:
// real engine process, real server, model manager, the prefix store on disk), with two tiny models
// of different weights (different fingerprints) and the SAME long system prompt on both — the
// realistic case of an editor switching models. The entry made right before a switch is saved by
// the switch itself; after a restart each model gets its own entry back (cached_tokens on its
// first request, same tokens as its cold run); a damaged entry of one model is quarantined when
// that model is loaded and the other model stays warm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { ENGINE_VERSION } from '../../main/core/hardening.ts';
import { MIN_PERSISTED_TOKENS } from '../../main/core/prefix-persistence.ts';
import { compatDigest, readEntry } from '../../main/caches/entry-file.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';

const A = 'tiny-prefix-a';
const B = 'tiny-prefix-b';
const SYSTEM = Array.from({ length: 70 }, (_, i) => `Rule ${i}: answer briefly and cite the file you used.`).join(' ');

let root: string;
let dataDir: string;
let prefixDir: string;
const log: string[] = [];
let running: RunningServe | null = null;
type Answer = { text: string; prompt: number; cached: number; model: string };
const cold: Record<string, Answer> = {};
const fingerprint: Record<string, string> = {};

function opts(start: string): ServeOptions {
  return serveOptionsFor(path.join(dataDir, 'models', start), dataDir, {
    settings: { ...DEFAULT_SETTINGS, dataDir, contextLength: 2048, prefixCache: { ...DEFAULT_SETTINGS.prefixCache, persist: true } },
    idleUnloadMs: 0,
  });
}

async function start(model: string): Promise<RunningServe> {
  running = await startServe(opts(model), (l) => log.push(l));
  return running;
}

async function stop(): Promise<void> {
  const r = running;
  running = null;
  if (!r) return;
  await stopServeHard(r, 20_000);
}

/** One chat request with the shared long system prompt; `model` switches the served model. */
async function ask(model: string): Promise<Answer> {
  const res = await fetch(`${running!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'first question' }], max_tokens: 4, seed: 7 }),
  });
  const body = (await res.json()) as {
    model: string;
    choices: { message: { content: string } }[];
    usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } };
  };
  assert.equal(res.status, 200, JSON.stringify(body));
  return { text: body.choices[0].message.content, prompt: body.usage.prompt_tokens, cached: body.usage.prompt_tokens_details.cached_tokens, model: body.model };
}

/** The stored prefix files of `model` (by the compat in their headers). */
async function filesOf(model: string): Promise<string[]> {
  const digest = compatDigest({ model: fingerprint[model], engine: `${ENGINE_VERSION}-float32` });
  const out: string[] = [];
  for (const name of (await readdir(prefixDir)).filter((n) => n.endsWith('.entry'))) {
    const r = await readEntry(path.join(prefixDir, name), { kind: 'prefix-kv', compatDigest: digest }, undefined, 'structure');
    if (r.ok) out.push(name);
  }
  return out;
}

function assertWarm(a: Answer, model: string, what: string): void {
  assert.equal(a.model, model);
  assert.ok(a.cached >= cold[model].prompt - 8, `${what}: expected ${model}'s stored prefix to be reused, cached ${a.cached} of ${a.prompt}`);
  assert.equal(a.text, cold[model].text, `${what}: reused KV gives the same tokens as ${model}'s cold run`);
}

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mlxbar-prefix-switch-'));
  dataDir = path.join(root, 'data');
  prefixDir = path.join(dataDir, 'cache', 'prefix-kv');
  // Same shape, different weights: different fingerprints, same tokenizer (same prompt tokens).
  await buildTinyModel({ family: 'qwen3', layers: 2, seed: 11 }, path.join(dataDir, 'models', A));
  await buildTinyModel({ family: 'qwen3', layers: 2, seed: 12 }, path.join(dataDir, 'models', B));
});

after(async () => {
  await stop();
  await rm(root, { recursive: true, force: true });
});

describe('prefix persistence across model switches', { timeout: 300_000 }, () => {
  it('the prefix made right before a switch is saved by the switch; each model keeps its own file for the same prompt', async () => {
    await start(A);
    try {
      fingerprint[A] = running!.engine.model!.fingerprint;
      cold[A] = await ask(A);
      assert.ok(cold[A].prompt > MIN_PERSISTED_TOKENS, `prompt should be long, got ${cold[A].prompt}`);
      assert.equal(cold[A].cached, 0);
      // Switch at once (well inside the 2 s idle window, so only the switch itself can save A's entry).
      cold[B] = await ask(B);
      fingerprint[B] = running!.engine.model!.fingerprint;
      assert.notEqual(fingerprint[B], fingerprint[A]);
      assert.equal(cold[B].cached, 0, "A's KV is never used for B");
      assert.equal(cold[B].prompt, cold[A].prompt, 'same tokenizer, same prompt tokens');
      assert.ok(log.some((l) => /saved 1 prompt prefix\(es\) \(switch\)/.test(l)), log.join('\n'));
      assert.equal((await filesOf(A)).length, 1, "A's entry is on disk while B is loaded");
    } finally {
      await stop(); // saves B's entry
    }
    assert.equal((await filesOf(A)).length, 1, "B's save did not replace A's entry of the same tokens");
    assert.equal((await filesOf(B)).length, 1);
  });

  it('after a restart on B, B is warm; switching to A restores A (even from a file named by an earlier version); switching back restores B', async () => {
    const restoredBefore = log.filter((l) => /restored \d+ prompt prefix/.test(l)).length;
    // Give A's entry the unsalted name earlier versions wrote (one name per token list).
    const [fileA] = await filesOf(A);
    const read = await readEntry(path.join(prefixDir, fileA), { kind: 'prefix-kv', compatDigest: compatDigest({ model: fingerprint[A], engine: `${ENGINE_VERSION}-float32` }) }, undefined, 'structure');
    assert.ok(read.ok);
    const unsalted = createHash('sha256').update(`prefix-kv\0${read.entry.meta.key}`).digest('hex').slice(0, 40) + '.entry';
    await rename(path.join(prefixDir, fileA), path.join(prefixDir, unsalted));
    await start(B);
    try {
      assertWarm(await ask(B), B, 'first request after the restart');
      assertWarm(await ask(A), A, 'first request after switching to A');
      assert.ok(log.some((l) => /adopted 1 stored prefix\(es\) of an earlier version/.test(l)), log.join('\n'));
      assertWarm(await ask(B), B, 'first request after switching back to B');
      const stats = running!.hardening!.prefixPersistence!.stats();
      assert.equal(stats.model, fingerprint[B]);
      assert.equal(stats.switches, 2);
      assert.ok(stats.restored >= 3, JSON.stringify(stats));
      assert.equal(log.filter((l) => /restored \d+ prompt prefix/.test(l)).length - restoredBefore, 3, log.join('\n'));
    } finally {
      await stop();
    }
  });

  it("a damaged entry of A is quarantined when A is loaded, A answers cold and correctly, B stays warm", async () => {
    await start(B);
    try {
      assertWarm(await ask(B), B, 'B at start');
      // Damage A's stored entries (a payload byte) while B is loaded: B's store never reads them.
      const damaged = await filesOf(A);
      assert.ok(damaged.length >= 1);
      for (const name of damaged) {
        const file = path.join(prefixDir, name);
        const buf = await readFile(file);
        buf[Math.floor(buf.length / 2)] ^= 0xff;
        await writeFile(file, buf);
      }
      const a = await ask(A);
      assert.equal(a.cached, 0, 'a damaged entry is a miss');
      assert.equal(a.text, cold[A].text, 'cold and correct');
      assertWarm(await ask(B), B, 'B after A hit the damaged entry');
      // Counted once and still counted after A's store was closed by the switch back to B.
      const persistence = running!.hardening!.prefixPersistence!;
      assert.equal(Object.values(persistence.corruptions()).reduce((x, y) => x + y, 0), damaged.length);
      await new Promise((r) => setTimeout(r, 1200)); // corruption counts are mirrored into metrics ~1/s
      const m = (await (await fetch(`${running!.url}/v1/metrics`)).json()) as { cache_corruptions: Record<string, number> };
      assert.ok(Object.values(m.cache_corruptions).reduce((x, y) => x + y, 0) >= damaged.length, JSON.stringify(m.cache_corruptions));
    } finally {
      await stop();
    }
    const quarantined = await readdir(path.join(dataDir, 'cache', 'quarantine'));
    assert.ok(quarantined.some((f) => f.includes('checksum')), `quarantine: ${quarantined.join(', ')}`);
    assert.equal((await filesOf(B)).length >= 1, true, "B's entry is untouched");
  });
});
