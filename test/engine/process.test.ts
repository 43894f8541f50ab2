// The supervised engine process end to end: a real engine process (MLX, OpenBLAS) on a tiny
// random-weight Qwen3 model with the real tokenizer, driven through createEngineClient.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { createEngineClient, type SupervisedEngineClient } from '../../main/engine/process/engine-client.ts';
import { DEFAULT_SAMPLING, type EngineEvent, type EngineState, type GenerateRequest } from '../../main/engine/types.ts';
import { ENGINE_MALLOC_TUNABLES, gemvShimPath } from '../../main/engine/process/blas.ts';

const THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled';

type Done = Extract<EngineEvent, { type: 'done' }>;

// Four layers so a prefill chunk and a decode step take measurable time, still tiny. The 32k
// vocab keeps the fixture small and below the Qwen3 end-of-text ids (151,643+), so a random-weight
// model cannot end a generation early with EOS; every id it can emit is an ordinary token of the
// real tokenizer, so detokenizing stays real.
const SPEC = { family: 'qwen3' as const, layers: 4, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, seed: 11, maxPositionEmbeddings: 16384, vocabSize: 32000 };

let modelDir = '';
const clients: SupervisedEngineClient[] = [];
const logs: string[] = [];

function newClient(opts: Parameters<typeof createEngineClient>[0] = {}): SupervisedEngineClient {
  const c = createEngineClient({ log: (l) => logs.push(l), backoff: { initialMs: 50, maxMs: 400 }, ...opts });
  clients.push(c);
  return c;
}

let n = 0;
function req(promptIds: number[], sampling: Partial<GenerateRequest['sampling']> = {}, cachePrompt = false): GenerateRequest {
  return { requestId: `t${++n}`, promptIds, sampling: { ...DEFAULT_SAMPLING, ...sampling }, cachePrompt };
}

function ids(count: number, seed: number): number[] {
  let x = seed + 1;
  return Array.from({ length: count }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return 200 + (x % 30000);
  });
}

async function collect(stream: AsyncIterable<EngineEvent>, onEvent?: (e: EngineEvent) => void): Promise<{ events: EngineEvent[]; text: string; last: EngineEvent }> {
  const events: EngineEvent[] = [];
  for await (const e of stream) {
    events.push(e);
    onEvent?.(e);
  }
  assert.ok(events.length > 0, 'stream produced no events');
  const text = events.map((e) => (e.type === 'delta' ? e.text : '')).join('');
  return { events, text, last: events[events.length - 1] };
}

function waitForState(c: SupervisedEngineClient, want: EngineState, timeoutMs = 60_000): Promise<void> {
  if (c.state === want) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      c.off('state', on);
      reject(new Error(`state ${want} not reached (now ${c.state})`));
    }, timeoutMs);
    const on = (s: EngineState): void => {
      if (s === want) {
        clearTimeout(t);
        c.off('state', on);
        resolve();
      }
    };
    c.on('state', on);
  });
}

before(async () => {
  modelDir = await buildTinyModel(SPEC);
});

after(async () => {
  await Promise.all(clients.map((c) => Promise.race([c.stop(), new Promise((r) => setTimeout(r, 10_000))])));
  for (const c of clients) if (c.pid) process.kill(c.pid, 'SIGKILL');
});

describe('engine process', { timeout: 240_000 }, () => {
  let client: SupervisedEngineClient;

  before(async () => {
    client = newClient();
    const info = await client.start(modelDir);
    assert.equal(client.state, 'ready');
    assert.equal(info.architecture, 'qwen3');
    assert.equal(info.numLayers, SPEC.layers);
  });

  test('streams deltas; a second identical seeded request produces exactly the same text', async () => {
    const prompt = ids(40, 1);
    const sampling = { temperature: 0.9, topP: 0.95, seed: 1234, maxTokens: 24 };
    const a = await collect(client.generate(req(prompt, sampling)));
    const b = await collect(client.generate(req(prompt, sampling)));
    const c = await collect(client.generate(req(prompt, { ...sampling, seed: 99 })));
    for (const r of [a, b, c]) {
      assert.equal(r.last.type, 'done', JSON.stringify(r.last));
      const done = r.last as Done;
      assert.ok(done.completionTokens > 0);
      assert.equal(done.promptTokens, prompt.length);
      assert.equal(r.events.filter((e) => e.type === 'delta').reduce((s, e) => s + (e as { tokens: number }).tokens, 0) <= done.completionTokens, true);
      assert.ok(done.ttftMs >= 0 && done.prefillMs >= 0 && done.decodeMs >= 0);
    }
    assert.ok(a.events.some((e) => e.type === 'prefill'), 'prefill progress is reported');
    assert.ok(a.text.length > 0, 'some text was streamed');
    assert.equal(b.text, a.text, 'same seed → same text');
    assert.notEqual(c.text, a.text, 'another seed → different text (else the seed is not reaching the sampler)');
  });

  test('a stop string ends generation before the stop string is emitted', async () => {
    const prompt = ids(20, 2);
    const free = await collect(client.generate(req(prompt, { maxTokens: 30 })));
    assert.equal(free.last.type, 'done');
    // Pick a piece of the greedy output as the stop string: the run must end right before it.
    const text = free.text;
    assert.ok(text.length >= 6, 'need some text to pick a stop string from');
    const at = Math.floor(text.length / 2);
    const stop = text.slice(at, at + 3);
    const first = text.indexOf(stop);
    const stopped = await collect(client.generate(req(prompt, { maxTokens: 30, stop: [stop] })));
    const done = stopped.last as Done;
    assert.equal(done.type, 'done');
    assert.equal(done.stopReason, 'stop_string');
    assert.equal(done.finishReason, 'stop');
    assert.equal(stopped.text, text.slice(0, first));
    assert.ok(!stopped.text.includes(stop));
  });

  test('cancelling mid-prefill of a long chunked prompt stops before the prompt is done; the next request works', async () => {
    const prompt = ids(4_000, 3);
    const ac = new AbortController();
    const prefills: number[] = [];
    const r = await collect(client.generate(req(prompt, { maxTokens: 8 }), ac.signal), (e) => {
      if (e.type === 'prefill') {
        prefills.push(e.processed);
        ac.abort();
      }
    });
    const done = r.last as Done;
    assert.equal(done.type, 'done', JSON.stringify(done));
    assert.equal(done.finishReason, 'cancelled');
    assert.equal(done.completionTokens, 0);
    assert.ok(Math.max(...prefills) < prompt.length, `prefill was cut short (processed ${Math.max(...prefills)} of ${prompt.length})`);
    const next = await collect(client.generate(req(ids(10, 4), { maxTokens: 4 })));
    assert.equal(next.last.type, 'done');
    assert.notEqual((next.last as Done).finishReason, 'cancelled');
  });

  test('cancelling mid-decode stops within a step; the next request works', async () => {
    const ac = new AbortController();
    let deltas = 0;
    const r = await collect(client.generate(req(ids(16, 5), { maxTokens: 2000 }), ac.signal), (e) => {
      if (e.type === 'delta' && ++deltas === 3) ac.abort();
    });
    const done = r.last as Done;
    assert.equal(done.type, 'done', JSON.stringify(done));
    assert.equal(done.finishReason, 'cancelled');
    assert.equal(done.stopReason, 'cancelled');
    assert.ok(done.completionTokens < 2000, `${done.completionTokens} tokens generated`);
    assert.ok(deltas >= 3, 'the abort came after the third token');
    const next = await collect(client.generate(req(ids(10, 6), { maxTokens: 4 })));
    assert.equal(next.last.type, 'done');
  });

  test('the engine process runs with OpenBLAS', async () => {
    const stats = await client.stats();
    assert.equal(stats.blas, 'openblas');
    // ... with the one-row product shim preloaded where npm ci built it (gemv-shim.test.ts checks its results).
    assert.equal(stats.gemvShim, gemvShimPath() !== null);
    assert.ok(stats.rssBytes > 10 * 2 ** 20);
    assert.ok(stats.heapUsedBytes > 0);
    if (process.platform === 'linux' && !process.env.GLIBC_TUNABLES) {
      // ... and with the engine's malloc policy (blas.ts ENGINE_MALLOC_TUNABLES) in its environment.
      // (glibc splits the variable at ':' in place while reading it, so the process's environment
      // block shows the first tunable only.)
      const environ = readFileSync(`/proc/${client.pid}/environ`, 'utf8').split('\0');
      const first = ENGINE_MALLOC_TUNABLES.split(':')[0];
      assert.ok(environ.some((e) => e === `GLIBC_TUNABLES=${first}` || e === `GLIBC_TUNABLES=${ENGINE_MALLOC_TUNABLES}`), 'GLIBC_TUNABLES reached the engine');
      // The heap is on transparent huge pages where the kernel offers them (its default mode,
      // "madvise", gives them only to memory malloc has madvised: glibc.malloc.hugetlb=1).
      const thp = existsSync(THP_MODE) ? readFileSync(THP_MODE, 'utf8') : '[never]';
      if (!thp.includes('[never]')) {
        const huge = Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync(`/proc/${client.pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
        assert.ok(huge >= 2048, `engine AnonHugePages ${huge} kB (THP ${thp.trim()})`);
      }
    }
  });

  test('the parent event loop keeps ticking while the engine generates', async () => {
    // Ordering, not timing: the generation runs in the other process, so the parent's own
    // callbacks run between the engine's events — a setImmediate scheduled at each delta has run
    // before the next delta arrives (a blocked parent loop would deliver the deltas back to back).
    let pending = 0;
    let interleaved = 0;
    let deltas = 0;
    for await (const ev of client.generate(req(ids(3000, 7), { maxTokens: 64 }))) {
      if (ev.type !== 'delta') continue;
      deltas++;
      if (pending === 0 && deltas > 1) interleaved++;
      pending++;
      setImmediate(() => pending--);
    }
    assert.ok(deltas >= 2, `${deltas} deltas`);
    // A parent blocked for the whole generation would show 0 (IPC batching under load may merge some).
    assert.ok(interleaved >= 1, `the parent loop ran between ${interleaved} of ${deltas} deltas`);
  });

  test('a long generation keeps the engine RSS flat', async () => {
    // Warm up: the first long run grows glibc arenas and the KV cache; measure after it.
    await collect(client.generate(req(ids(32, 8), { maxTokens: 200 })));
    const before = (await client.stats()).rssBytes;
    let generated = 0;
    let peak = before;
    for (let i = 0; generated < 1000 && i < 20; i++) {
      const r = await collect(client.generate(req(ids(32, 9 + i), { maxTokens: 1000 - generated })));
      assert.equal(r.last.type, 'done');
      generated += (r.last as Done).completionTokens;
      peak = Math.max(peak, (await client.stats()).rssBytes);
    }
    assert.ok(generated >= 1000, `generated ${generated}`);
    const afterRss = (await client.stats()).rssBytes;
    const MiB = 2 ** 20;
    // Without the per-step GC policy RSS grows by gigabytes here; allow generous noise.
    assert.ok(peak - before < 300 * MiB, `RSS grew from ${(before / MiB).toFixed(0)} to a peak of ${(peak / MiB).toFixed(0)} MiB`);
    assert.ok(afterRss < before * 1.5 + 100 * MiB, `RSS ${(before / MiB).toFixed(0)} → ${(afterRss / MiB).toFixed(0)} MiB`);
  });

  test('prefix cache: reuse is reported and exact; entries export and import into a fresh engine process', async () => {
    const prompt = ids(300, 30);
    const greedy = { maxTokens: 12 };
    const first = await collect(client.generate(req(prompt, greedy, true)));
    const second = await collect(client.generate(req(prompt, greedy, true)));
    assert.equal((first.last as Done).cachedTokens, 0);
    assert.equal((second.last as Done).cachedTokens, prompt.length - 1, 'all but the last prompt token come from the cache');
    assert.equal(second.text, first.text, 'cached prefix gives exactly the cold-run text');
    const stats = await client.stats();
    assert.ok(stats.prefixCache.entries >= 1 && stats.prefixCache.hits >= 1 && stats.prefixCache.reusedTokens >= prompt.length - 1);

    const exported = await client.exportPrefixEntries({ minTokens: 100 });
    const entry = exported.find((e) => prompt.every((t, i) => e.tokens[i] === t));
    assert.ok(entry, 'the prompt entry is exported');
    assert.equal(entry.layers.length, SPEC.layers);
    assert.ok(entry.layers[0].keys instanceof Float32Array);
    assert.deepEqual(entry.layers[0].shape, [1, SPEC.kvHeads, entry.tokens.length, SPEC.headDim]);
    assert.deepEqual(await client.exportPrefixEntries({ minTokens: 100 }), [], 'already exported entries are not sent again');

    const fresh = newClient();
    try {
      await fresh.start(modelDir);
      assert.equal(await fresh.importPrefixEntry(entry), true);
      const warm = await collect(fresh.generate(req(prompt, greedy, true)));
      assert.equal((warm.last as Done).cachedTokens, prompt.length - 1, 'the imported entry is reused');
      assert.equal(warm.text, first.text);
      const broken = { ...entry, layers: entry.layers.slice(1) };
      await assert.rejects(fresh.importPrefixEntry(broken), (err: Error & { code?: string }) => err.code === 'invalid_request');
    } finally {
      await fresh.stop();
    }
  });

  test('clearing the prefix cache (soft memory pressure) releases its entries; the next run is cold and identical', async () => {
    const prompt = ids(280, 31);
    const greedy = { maxTokens: 6 };
    const first = await collect(client.generate(req(prompt, greedy, true)));
    const before = await client.stats();
    assert.ok(before.prefixCache.entries >= 1 && before.prefixCache.bytes > 0);
    assert.ok(before.kvPool, 'the CPU build keeps a KV buffer pool');
    const freed = await client.clearPrefixCache();
    const after = await client.stats();
    assert.equal(after.prefixCache.entries, 0);
    assert.equal(after.prefixCache.bytes, 0);
    // The entries gave their KV buffers to the pool as they went, and the pool let them go too.
    assert.equal(after.kvPool!.bytes, 0);
    assert.ok(freed >= before.prefixCache.bytes + before.kvPool!.bytes, `reports the bytes released (${freed})`);
    const again = await collect(client.generate(req(prompt, greedy, true)));
    assert.equal((again.last as Done).cachedTokens, 0, 'nothing left to reuse');
    assert.equal(again.text, first.text);
  });

  test('invalid requests get an invalid_request error, the engine keeps serving', async () => {
    const bad = await collect(client.generate({ requestId: 'bad-1', promptIds: [1, -5], sampling: { ...DEFAULT_SAMPLING } }));
    assert.equal(bad.last.type, 'error');
    assert.equal((bad.last as { code: string }).code, 'invalid_request');
    const ok = await collect(client.generate(req(ids(5, 10), { maxTokens: 2 })));
    assert.equal(ok.last.type, 'done');
  });

  test('a prompt longer than the context gets context_length_exceeded; the engine keeps serving', async () => {
    const tooLong = await collect(client.generate(req(ids(SPEC.maxPositionEmbeddings + 10, 40), { maxTokens: 4 })));
    assert.equal(tooLong.last.type, 'error', JSON.stringify(tooLong.last));
    assert.equal((tooLong.last as { code: string }).code, 'context_length_exceeded');
    const ok = await collect(client.generate(req(ids(5, 41), { maxTokens: 2 })));
    assert.equal(ok.last.type, 'done');
  });

  test('SIGKILL mid-stream: engine_crashed error without paths, restart, next request succeeds', async () => {
    const states: string[] = [];
    const crashes: unknown[] = [];
    const onState = (s: string): number => states.push(s);
    const onCrash = (i: unknown): number => crashes.push(i);
    client.on('state', onState).on('crash', onCrash);
    try {
      const pid = client.pid!;
      let killed = false;
      const r = await collect(client.generate(req(ids(16, 11), { maxTokens: 2000 })), (e) => {
        if (e.type === 'delta' && !killed) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      });
      assert.equal(r.last.type, 'error', JSON.stringify(r.last));
      const err = r.last as Extract<EngineEvent, { type: 'error' }>;
      assert.equal(err.code, 'engine_crashed');
      assert.ok(!err.message.includes('/') && !err.message.includes(modelDir), err.message);
      assert.equal(client.state === 'restarting' || client.state === 'ready', true);
      // While restarting, requests are refused immediately rather than queued.
      if (client.state === 'restarting') {
        const refused = await collect(client.generate(req(ids(5, 12), { maxTokens: 2 })));
        assert.equal((refused.last as { code?: string }).code, 'engine_unavailable');
      }
      await waitForState(client, 'ready');
      assert.deepEqual(states.slice(0, 2), ['restarting', 'ready']);
      assert.equal(crashes.length, 1);
      assert.equal((crashes[0] as { signal: string }).signal, 'SIGKILL');
      assert.notEqual(client.pid, pid);
      const next = await collect(client.generate(req(ids(8, 13), { maxTokens: 4 })));
      assert.equal(next.last.type, 'done');
      assert.ok(logs.every((l) => !l.includes(modelDir)), 'logs are sanitized');
    } finally {
      client.off('state', onState).off('crash', onCrash);
    }
  });

  test('stop() ends an in-flight stream with done/cancelled and stops the process', async () => {
    const pid = client.pid!;
    let stopping: Promise<void> | null = null;
    const r = await collect(client.generate(req(ids(16, 14), { maxTokens: 2000 })), (e) => {
      if (e.type === 'delta' && !stopping) stopping = client.stop();
    });
    await stopping;
    assert.equal(r.last.type, 'done');
    assert.equal((r.last as Done).finishReason, 'cancelled');
    assert.equal(client.state, 'stopped');
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    const refused = await collect(client.generate(req(ids(5, 15), { maxTokens: 2 })));
    assert.equal((refused.last as { code?: string }).code, 'engine_unavailable');
  });
});

describe('engine supervision', { timeout: 240_000 }, () => {
  test('repeated crashes: restarts with backoff, then gives up with state failed', async () => {
    const c = newClient({ maxConsecutiveCrashes: 3, stableAfterMs: 600_000 });
    const crashes: { consecutiveCrashes: number; willRestart: boolean; signal: string | null }[] = [];
    c.on('crash', (i) => crashes.push(i));
    let failedReason = '';
    c.on('state', (s, reason) => {
      if (s === 'failed') failedReason = reason ?? '';
    });
    await c.start(modelDir);
    for (let i = 0; i < 3; i++) {
      await waitForState(c, 'ready');
      // SIGABRT is what the uncatchable native abort (exit 134) looks like from outside.
      process.kill(c.pid!, i === 1 ? 'SIGABRT' : 'SIGKILL');
      await waitForState(c, i < 2 ? 'restarting' : 'failed');
    }
    assert.equal(c.state, 'failed');
    assert.deepEqual(
      crashes.map((x) => [x.consecutiveCrashes, x.willRestart]),
      [
        [1, true],
        [2, true],
        [3, false],
      ],
    );
    assert.equal(crashes[1].signal, 'SIGABRT');
    assert.match(failedReason, /3 consecutive crashes/);
    assert.ok(!failedReason.includes(modelDir));
    const refused = await collect(c.generate(req(ids(5, 20), { maxTokens: 2 })));
    assert.equal((refused.last as { code?: string }).code, 'engine_unavailable');
    // start() recovers from failed.
    await c.start(modelDir);
    const ok = await collect(c.generate(req(ids(5, 21), { maxTokens: 2 })));
    assert.equal(ok.last.type, 'done');
    await c.stop();
  });

  test('a model folder that cannot load rejects start() with model_load_failed and no path', async () => {
    const c = newClient();
    await assert.rejects(c.start('/nonexistent/mlxbar/model'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'model_load_failed');
      assert.ok(!err.message.includes('/nonexistent'), err.message);
      return true;
    });
    assert.equal(c.state, 'failed');
    await c.stop();
  });

  test('MLXBAR_BLAS_DIR selects the BLAS the engine loads (stats report what is really mapped)', { skip: !existsSync('/usr/lib/x86_64-linux-gnu/blas/libblas.so.3') && 'reference BLAS not installed' }, async () => {
    const c = newClient({ env: { ...process.env, MLXBAR_BLAS_DIR: '/usr/lib/x86_64-linux-gnu/blas' } });
    await c.start(modelDir);
    assert.equal((await c.stats()).blas, 'reference');
    await c.stop();
  });
});
