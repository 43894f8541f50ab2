// Bench section `anthropic`: the HTTP overhead of POST /v1/messages against OpenAI chat for the same
// generation (goal: ≤ 1.03× OpenAI's time). Both requests run on the real `mlx-bar serve` stack with
// the response cache on and are deterministic (temperature 0), so after one warm-up each they are
// answered from the cache: what is timed is everything but the model — body parsing, validation and
// translation, template render + tokenization, cache lookup, the life cycle, the API's writer (the
// reasoning/tool splitter runs for both) and the wire format. That is the overhead an API adds; a real
// generation adds the same model time to both. Requests alternate (A B B A …) so drift hits both
// alike; non-stream and stream are measured separately. Ratios = Anthropic p50 ÷ OpenAI p50.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { ensureStackModel, postJson, r3, startStack, summarize } from './stack.ts';

/** One request with the whole body read (stream or not); resolves with status and client-side ms. */
function timed(port: number, route: string, body: unknown): Promise<{ status: number; ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: route, headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, agent: false },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, bytes }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const which = opts.quick ? 'quick' : 'default';
  const rounds = opts.quick ? 60 : 300;
  const modelDir = await ensureStackModel(which, opts.log);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'mlxbar-bench-anthropic-'));
  let stack: Awaited<ReturnType<typeof startStack>> | null = null;
  try {
    stack = await startStack(modelDir, dataDir, (s) => ({ ...s, responseCache: { ...s.responseCache, enabled: true } }), opts.log);
    const { port } = stack;
    const system = 'You are a careful coding assistant. Answer briefly.';
    const user = 'Explain what a prefix cache does in one paragraph.';
    const openai = { model: 'default', max_tokens: 48, temperature: 0, messages: [{ role: 'system', content: system }, { role: 'user', content: user }] };
    const models = await postJson(port, '/v1/chat/completions', openai);
    const model = models.json?.model as string;
    const anthropic = { model, max_tokens: 48, temperature: 0, system, messages: [{ role: 'user', content: user }] };
    const openaiReq = { ...openai, model };

    const cases = {
      nonstream: { openai: { route: '/v1/chat/completions', body: openaiReq }, anthropic: { route: '/v1/messages', body: anthropic } },
      stream: {
        openai: { route: '/v1/chat/completions', body: { ...openaiReq, stream: true, stream_options: { include_usage: true } } },
        anthropic: { route: '/v1/messages', body: { ...anthropic, stream: true } },
      },
    };
    const result: Record<string, unknown> = { rounds, model: which, load_avg_start: os.loadavg().map(r3) };
    const ratios: Record<string, number | null> = {};
    for (const [mode, pair] of Object.entries(cases)) {
      // Warm-up: the first of each fills the response cache (one real generation), the rest are hits.
      for (let i = 0; i < 5; i++) {
        for (const api of ['openai', 'anthropic'] as const) {
          const r = await timed(port, pair[api].route, pair[api].body);
          if (r.status !== 200) throw new Error(`${mode} ${api} warm-up: HTTP ${r.status}`);
        }
      }
      const samples: Record<'openai' | 'anthropic', number[]> = { openai: [], anthropic: [] };
      const bytes: Record<'openai' | 'anthropic', number> = { openai: 0, anthropic: 0 };
      for (let i = 0; i < rounds; i++) {
        const order = i % 2 === 0 ? (['openai', 'anthropic'] as const) : (['anthropic', 'openai'] as const);
        for (const api of order) {
          const r = await timed(port, pair[api].route, pair[api].body);
          if (r.status !== 200) throw new Error(`${mode} ${api}: HTTP ${r.status}`);
          samples[api].push(r.ms);
          bytes[api] = r.bytes;
        }
      }
      const o = summarize(samples.openai);
      const a = summarize(samples.anthropic);
      result[mode] = { openai: { ...o, response_bytes: bytes.openai }, anthropic: { ...a, response_bytes: bytes.anthropic } };
      ratios[`${mode}_p50_anthropic_vs_openai`] = r3(a.p50_ms / o.p50_ms);
      opts.log(`${mode}: openai p50 ${o.p50_ms} ms, anthropic p50 ${a.p50_ms} ms (×${r3(a.p50_ms / o.p50_ms)})`);
    }
    result.load_avg_end = os.loadavg().map(r3);
    result.goal = 'anthropic p50 ≤ 1.03 × openai p50 (same generation, served from the response cache: overhead only)';
    return { result, ratios };
  } finally {
    await stack?.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const anthropicSection: BenchSection = {
  name: 'anthropic',
  description: 'HTTP overhead of POST /v1/messages vs OpenAI chat on the same (response-cached) generation, stream and not',
  run,
};
