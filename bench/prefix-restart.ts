// Bench section `prefix-restart`: TTFT of a long-system-prompt request cold vs warm-from-disk after
// a restart. The real stack (`startServe`, prefixCache.persist on, temp data dir); request 1 runs
// cold (full prefill); `stop()` persists the engine's prompt prefix to the integrity-checked store;
// a fresh stack on the same data dir imports it at start; the same request again should skip the
// prefill of the stored prefix. TTFT = client-side time to the first streamed content chunk; the
// server-side ttft_s from the metrics' recent_requests is reported alongside.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { ensureStackModel, r3, STACK_MODELS, startStack, streamChat } from './stack.ts';

/** A deterministic, varied "system prompt" of roughly `words` words (≈ tokens for this text). */
function longSystemPrompt(words: number): string {
  const vocab = [
    'repository', 'function', 'module', 'interface', 'always', 'never', 'prefer', 'explain', 'tests', 'types',
    'error', 'handling', 'concise', 'answers', 'code', 'review', 'style', 'guide', 'imports', 'exports',
    'async', 'await', 'promise', 'buffer', 'stream', 'server', 'client', 'request', 'response', 'cache',
    'memory', 'latency', 'tokens', 'model', 'editor', 'refactor', 'document', 'comment', 'variable', 'constant',
  ];
  let x = 12345;
  const out: string[] = ['You are a careful coding assistant. Follow these project rules exactly.'];
  for (let i = 0; i < words; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out.push(vocab[x % vocab.length] + (i % 12 === 11 ? '.' : ''));
  }
  return out.join(' ');
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const which = opts.quick ? 'quick' : 'default';
  const modelDir = await ensureStackModel(which, opts.log);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'mlxbar-bench-prefix-restart-'));
  const words = typeof opts.args['prefix-words'] === 'string' ? Number(opts.args['prefix-words']) : opts.quick ? 500 : 1900;
  const patch = (s: Parameters<Parameters<typeof startStack>[2]>[0]) => ({ ...s, prefixCache: { ...s.prefixCache, persist: true } });
  let stack: Awaited<ReturnType<typeof startStack>> | null = null;
  try {
    const messages = [
      { role: 'system', content: longSystemPrompt(words) },
      { role: 'user', content: 'Summarize the rules in one sentence.' },
    ];
    const request = async (label: string) => {
      const models = await fetch(`${stack!.url}/v1/models`).then((r) => r.json() as Promise<{ data: { id: string }[] }>);
      const r = await streamChat(stack!.port, { model: models.data[0].id, messages, max_tokens: 4, temperature: 0 });
      if (r.status !== 200 || r.ttftMs === null) throw new Error(`${label} request failed (status ${r.status})`);
      const recent = stack!.hardening?.metrics.snapshot().recent_requests ?? [];
      const serverTtft = recent.at(-1)?.ttft_s ?? null;
      opts.log(`${label}: ttft ${r.ttftMs.toFixed(1)} ms (server ${serverTtft}), prompt ${r.usage?.prompt_tokens}, cached ${r.usage?.prompt_tokens_details?.cached_tokens}`);
      return { ...r, serverTtftMs: serverTtft === null ? null : r3(serverTtft * 1000) };
    };

    let t = Date.now();
    stack = await startStack(modelDir, dataDir, patch, opts.log);
    const firstStartMs = Date.now() - t;
    const cold = await request('cold');
    t = Date.now();
    await stack.stop(); // persists the new prompt prefix (engine export → prefix store)
    const stopMs = Date.now() - t;
    stack = null;

    t = Date.now();
    stack = await startStack(modelDir, dataDir, patch, opts.log);
    const restartMs = Date.now() - t;
    const restored = stack.hardening?.prefixPersistence?.restored ?? 0;
    const warm = await request('warm');
    const persisted = stack.hardening?.prefixPersistence?.stats() ?? null;
    // The same request once more on the warm server (prefix now live in the engine's memory): the
    // floor the disk-warm first request is compared against (it separates the cost of using the
    // imported entry the first time from the prefill that was skipped).
    const repeat = await request('warm repeat');

    // A third start, where one short unrelated request runs first: if the disk-warm request is then
    // as fast as the repeat, the first request's extra time is the fresh engine process warming up
    // (first kernels, BLAS threads, page faults), not the use of the imported entry.
    await stack.stop();
    stack = null;
    stack = await startStack(modelDir, dataDir, patch, opts.log);
    {
      const models = await fetch(`${stack.url}/v1/models`).then((r) => r.json() as Promise<{ data: { id: string }[] }>);
      const w = await streamChat(stack.port, { model: models.data[0].id, messages: [{ role: 'user', content: 'Hi.' }], max_tokens: 1, temperature: 0 });
      if (w.status !== 200) throw new Error(`warm-up request failed (status ${w.status})`);
    }
    const warmAfterWarmup = await request('warm after a short warm-up request');

    const promptTokens = cold.usage?.prompt_tokens ?? null;
    const cachedTokens = warm.usage?.prompt_tokens_details?.cached_tokens ?? null;
    return {
      result: {
        model: STACK_MODELS[which].label,
        prompt_tokens: promptTokens,
        cold_ttft_ms: r3(cold.ttftMs!),
        warm_ttft_ms: r3(warm.ttftMs!),
        warm_repeat_ttft_ms: r3(repeat.ttftMs!),
        warm_after_warmup_ttft_ms: r3(warmAfterWarmup.ttftMs!),
        warm_after_warmup_cached_tokens: warmAfterWarmup.usage?.prompt_tokens_details?.cached_tokens ?? null,
        cold_server_ttft_ms: cold.serverTtftMs,
        warm_server_ttft_ms: warm.serverTtftMs,
        cold_cached_tokens: cold.usage?.prompt_tokens_details?.cached_tokens ?? null,
        cached_tokens: cachedTokens,
        restored_entries: restored,
        store: persisted ? { entries: persisted.entries, bytes: persisted.bytes } : null,
        first_start_ms: firstStartMs,
        stop_with_persist_ms: stopMs,
        restart_with_import_ms: restartMs,
        loadavg_1m: r3(os.loadavg()[0]),
        note: 'TTFT = client-side time to the first streamed content chunk (includes HTTP + tokenization); restart_with_import_ms includes model load and prefix import',
      },
      ratios: {
        cold_over_warm_ttft: r3(cold.ttftMs! / warm.ttftMs!),
        cold_over_warm_after_warmup_ttft: r3(cold.ttftMs! / warmAfterWarmup.ttftMs!),
        cached_fraction: promptTokens && cachedTokens !== null ? r3(cachedTokens / promptTokens) : null,
      },
    };
  } finally {
    await stack?.stop().catch((err) => opts.log(`stop failed: ${err instanceof Error ? err.message : String(err)}`));
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const prefixRestartSection: BenchSection = {
  name: 'prefix-restart',
  description: 'TTFT of a long system prompt cold vs warm-from-disk prefix after a restart (prefixCache.persist)',
  run,
};
