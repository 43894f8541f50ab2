// Bench section `dialects`: the HTTP overhead of POST /v1/messages, /v1/responses and /api/chat against OpenAI chat for the same
// generation (goal: ≤ 1.03× OpenAI's time). Both requests run on the real `mlx-bar serve` stack with
// the response cache on and are deterministic (temperature 0), so after one warm-up each they are
// answered from the cache: what is timed is everything but the model — body parsing, validation and
// translation, template render + tokenization, cache lookup, the life cycle, the API's writer (the
// reasoning/tool splitter runs for both) and the wire format. That is the overhead an API adds; a real
// generation adds the same model time to both. Requests alternate (A B B A …) so drift hits both
// alike; non-stream and stream are measured separately. Ratios = API ÷ OpenAI at p50 and p10
// (record `uptime` next to them: on a shared machine the median is mostly scheduling noise).
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { ensureStackModel, pct, r3, startStack, summarize } from './stack.ts';

/** One request with the whole body read (stream or not); resolves with status and client-side ms. */
function timed(port: number, route: string, body: unknown): Promise<{ status: number; ms: number; bytes: number; head: string; cache: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: route, headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, agent: false },
      (res) => {
        let bytes = 0;
        let head = '';
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (head.length < 300) head += c.toString('utf8', 0, 300);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, bytes, head, cache: String(res.headers['x-mlxbar-cache'] ?? '') }));
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
    const model = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/v1/models', agent: false }, (res) => {
          let buf = '';
          res.on('data', (c: Buffer) => (buf += c));
          res.on('end', () => {
            const id = (JSON.parse(buf) as { data?: { id: string }[] }).data?.[0]?.id;
            if (id) resolve(id);
            else reject(new Error(`no model in /v1/models: ${buf.slice(0, 200)}`));
          });
        })
        .on('error', reject);
    });
    const openai = { model, max_tokens: 48, temperature: 0, messages: [{ role: 'system', content: system }, { role: 'user', content: user }] };
    const anthropic = { model, max_tokens: 48, temperature: 0, system, messages: [{ role: 'user', content: user }] };
    const responses = { model, max_output_tokens: 48, temperature: 0, instructions: system, input: user };
    const ollama = { model, options: { temperature: 0, num_predict: 48 }, messages: [{ role: 'system', content: system }, { role: 'user', content: user }] };
    type Api = 'openai' | 'anthropic' | 'responses' | 'ollama';
    const APIS: Api[] = ['openai', 'anthropic', 'responses', 'ollama'];
    // Every API renders the same prompt with the same sampling, so all four hit the same cache entry.
    const cases: Record<string, Record<Api, { route: string; body: unknown }>> = {
      nonstream: {
        openai: { route: '/v1/chat/completions', body: openai },
        anthropic: { route: '/v1/messages', body: anthropic },
        responses: { route: '/v1/responses', body: responses },
        ollama: { route: '/api/chat', body: { ...ollama, stream: false } },
      },
      stream: {
        openai: { route: '/v1/chat/completions', body: { ...openai, stream: true, stream_options: { include_usage: true } } },
        anthropic: { route: '/v1/messages', body: { ...anthropic, stream: true } },
        responses: { route: '/v1/responses', body: { ...responses, stream: true } },
        ollama: { route: '/api/chat', body: { ...ollama, stream: true } },
      },
    };
    const result: Record<string, unknown> = { rounds, model: which, load_avg_start: os.loadavg().map(r3) };
    const ratios: Record<string, number | null> = {};
    for (const [mode, pair] of Object.entries(cases)) {
      // Warm-up: the first request fills the response cache (one real generation), the rest are hits.
      for (let i = 0; i < 5; i++) {
        for (const api of APIS) {
          const r = await timed(port, pair[api].route, pair[api].body);
          if (r.status !== 200) throw new Error(`${mode} ${api} warm-up: HTTP ${r.status} ${r.head.slice(0, 200)}`);
        }
      }
      const samples = Object.fromEntries(APIS.map((a) => [a, [] as number[]])) as Record<Api, number[]>;
      const bytes = Object.fromEntries(APIS.map((a) => [a, 0])) as Record<Api, number>;
      for (let i = 0; i < rounds; i++) {
        // Rotate the order each round so drift hits every API alike.
        const order = APIS.map((_, k) => APIS[(k + i) % APIS.length]);
        for (const api of order) {
          const r = await timed(port, pair[api].route, pair[api].body);
          if (r.status !== 200) throw new Error(`${mode} ${api}: HTTP ${r.status}`);
          samples[api].push(r.ms);
          bytes[api] = r.bytes;
        }
      }
      // p10 next to p50: on a loaded machine (2 cores shared) the median carries scheduling noise,
      // the 10th percentile is closer to the path's own cost.
      const p10 = (v: number[]) => r3(pct([...v].sort((x, y) => x - y), 10));
      const stats = Object.fromEntries(APIS.map((a) => [a, { ...summarize(samples[a]), p10_ms: p10(samples[a]), response_bytes: bytes[a] }]));
      result[mode] = stats;
      const o = stats.openai;
      for (const api of APIS.slice(1)) {
        ratios[`${mode}_p50_${api}_vs_openai`] = r3(stats[api].p50_ms / o.p50_ms);
        ratios[`${mode}_p10_${api}_vs_openai`] = r3(stats[api].p10_ms / o.p10_ms);
      }
      opts.log(`${mode}: ${APIS.map((a) => `${a} p50 ${stats[a].p50_ms} / p10 ${stats[a].p10_ms} ms`).join(', ')}`);
    }
    // Live: the same prompt generated for real (temperature > 0 without a seed is never answered from
    // the response cache; the prefix cache serves the prompt to all four alike), a fixed number of
    // tokens (random weights do not stop early: every request asks for and gets `liveTokens`). This is
    // the ratio a user sees: the API's own cost next to a real generation.
    const liveRounds = opts.quick ? 8 : 30;
    const liveTokens = 12;
    const live = { temperature: 0.9 };
    const liveCases: Record<string, Record<Api, { route: string; body: unknown }>> = {
      live_nonstream: {
        openai: { route: '/v1/chat/completions', body: { ...openai, ...live, max_tokens: liveTokens } },
        anthropic: { route: '/v1/messages', body: { ...anthropic, ...live, max_tokens: liveTokens } },
        responses: { route: '/v1/responses', body: { ...responses, ...live, max_output_tokens: liveTokens } },
        ollama: { route: '/api/chat', body: { ...ollama, options: { temperature: 0.9, num_predict: liveTokens }, stream: false } },
      },
      live_stream: {
        openai: { route: '/v1/chat/completions', body: { ...openai, ...live, max_tokens: liveTokens, stream: true, stream_options: { include_usage: true } } },
        anthropic: { route: '/v1/messages', body: { ...anthropic, ...live, max_tokens: liveTokens, stream: true } },
        responses: { route: '/v1/responses', body: { ...responses, ...live, max_output_tokens: liveTokens, stream: true } },
        ollama: { route: '/api/chat', body: { ...ollama, options: { temperature: 0.9, num_predict: liveTokens }, stream: true } },
      },
    };
    for (const [mode, pair] of Object.entries(liveCases)) {
      for (const api of APIS) {
        const r = await timed(port, pair[api].route, pair[api].body);
        if (r.status !== 200) throw new Error(`${mode} ${api} warm-up: HTTP ${r.status} ${r.head.slice(0, 200)}`);
        if (r.cache === 'hit') throw new Error(`${mode} ${api}: answered from the response cache`);
      }
      const samples = Object.fromEntries(APIS.map((a) => [a, [] as number[]])) as Record<Api, number[]>;
      for (let i = 0; i < liveRounds; i++) {
        const order = APIS.map((_, k) => APIS[(k + i) % APIS.length]);
        for (const api of order) {
          const r = await timed(port, pair[api].route, pair[api].body);
          if (r.status !== 200) throw new Error(`${mode} ${api}: HTTP ${r.status}`);
          samples[api].push(r.ms);
        }
      }
      const stats = Object.fromEntries(APIS.map((a) => [a, summarize(samples[a])]));
      result[mode] = { rounds: liveRounds, tokens: liveTokens, ...stats };
      for (const api of APIS.slice(1)) ratios[`${mode}_p50_${api}_vs_openai`] = r3(stats[api].p50_ms / stats.openai.p50_ms);
      opts.log(`${mode}: ${APIS.map((a) => `${a} p50 ${stats[a].p50_ms} ms`).join(', ')}`);
    }
    result.load_avg_end = os.loadavg().map(r3);
    result.goal =
      'each API p50 ≤ 1.03 × openai chat p50 on the same generation (live_*: a real generation of the same length; ' +
      'nonstream/stream: served from the response cache, i.e. the API path alone, reported in ms)';
    return { result, ratios };
  } finally {
    await stack?.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const dialectsSection: BenchSection = {
  name: 'dialects',
  description: 'HTTP overhead of the Anthropic, Responses and Ollama APIs vs OpenAI chat on the same (response-cached) generation, stream and not',
  run,
};
