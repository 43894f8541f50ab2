// Server benchmark section: what the HTTP layer costs on top of the engine.
//   - streamed decode tokens/s through HTTP (SSE, raw node:http client) vs the bare engine
//     (EngineClient.generate) on the same prompt ids, same engine process, alternating runs;
//     `http_vs_engine` = HTTP rate ÷ engine rate (goal ≥ 0.97);
//   - request overhead of a 1-token non-stream completion: median HTTP latency − median engine
//     latency for the same (prefix-cached) prompt.
// The model is a random-weight checkpoint in the real mlx-community layout with the real Qwen3
// tokenizer (~100M parameters by default; `--quick`: a 2-layer toy). Built once under
// <tmp>/mlxbar-bench.
import http from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { createEngineClient, loadTextPipeline } from '../main/engine/index.ts';
import { DEFAULT_SAMPLING, type EngineClient } from '../main/engine/types.ts';
import { createServer } from '../main/server/index.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';
import { STACK_MODELS, ensureStackModel, onSseJson } from './stack.ts';

// The checkpoints are shared with the cache/prefix benches (bench/stack.ts).

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

/**
 * Decode rate from delta arrival times: `rate` = tokens after the first ÷ their time; `medianRate`
 * = 1000 ÷ median gap, robust to the scheduler preempting either process on a shared box.
 */
function rates(stamps: number[]): { rate: number; medianRate: number } {
  if (stamps.length < 2) return { rate: NaN, medianRate: NaN };
  const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
  return { rate: gaps.length / ((stamps.at(-1)! - stamps[0]) / 1000), medianRate: 1000 / median(gaps) };
}

/** Decode rate of one bare engine generation: tokens after the first ÷ time after the first. */
async function engineRun(engine: EngineClient, promptIds: number[], maxTokens: number, id: string) {
  const t0 = performance.now();
  const stamps: number[] = [];
  let tokens = 0;
  for await (const ev of engine.generate({ requestId: id, promptIds, sampling: { ...DEFAULT_SAMPLING, maxTokens } })) {
    if (ev.type === 'delta') stamps.push(performance.now());
    else if (ev.type === 'done') tokens = ev.completionTokens;
    else if (ev.type === 'error') throw new Error(ev.message);
  }
  const end = performance.now();
  return { tokens, ...rates(stamps), totalMs: end - t0 };
}

/** The same through HTTP SSE: timestamps of content chunks as the client receives them. */
function httpRun(port: number, body: Record<string, unknown>): Promise<{ tokens: number; rate: number; medianRate: number; totalMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const stamps: number[] = [];
    let usage: { completion_tokens: number } | null = null;
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        onSseJson(res, (o) => {
          if (o.usage) usage = o.usage;
          if (o.choices?.[0]?.delta?.content) stamps.push(performance.now());
        });
        res.on('end', () => {
          const tokens = usage?.completion_tokens ?? 0;
          resolve({ tokens, ...rates(stamps), totalMs: performance.now() - t0 });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

function httpOneToken(port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`status ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export const serverSection: BenchSection = {
  name: 'server',
  description: 'HTTP streaming tokens/s vs the bare engine (goal ≥ 0.97) and 1-token request overhead',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const which = opts.quick ? 'quick' : 'default';
    const modelDir = await ensureStackModel(which, opts.log);
    const text = await loadTextPipeline(modelDir);
    const engine = createEngineClient({ log: () => {} });
    const modelInfo = await engine.start(modelDir);
    const server = createServer({ engine, text, modelInfo }, { port: 0 });
    const { port } = await server.listen();
    try {
      const messages = [{ role: 'user' as const, content: 'Explain what a prefix cache does in an LLM server.' }];
      const promptIds = text.encodeChat(messages).ids;
      const maxTokens = opts.quick ? 64 : 160;
      const rounds = opts.quick ? 2 : 4;
      const body = { model: modelInfo.id, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } };
      // warm-up (prefix cache, JIT)
      await engineRun(engine, promptIds, 8, 'bench-warm');
      await httpRun(port, { ...body, max_tokens: 8 });
      const engineRates: number[] = [];
      const httpRates: number[] = [];
      const engineMedRates: number[] = [];
      const httpMedRates: number[] = [];
      let tokens = 0;
      // CPU time of this process (server + HTTP client + engine IPC) per run: unlike wall-clock
      // rates it hardly depends on how busy the rest of the machine is.
      const cpuMs = () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      };
      const extraCpuPerToken: number[] = [];
      for (let r = 0; r < rounds; r++) {
        // Alternate which goes first so neither always runs right after the other's cleanup.
        const timed = async <T,>(f: () => Promise<T>) => {
          const c = cpuMs();
          const out = await f();
          return { out, cpu: cpuMs() - c };
        };
        const runE = () => timed(() => engineRun(engine, promptIds, maxTokens, `bench-e${r}`));
        const runH = () => timed(() => httpRun(port, body));
        let te: Awaited<ReturnType<typeof runE>>;
        let th: Awaited<ReturnType<typeof runH>>;
        if (r % 2 === 0) {
          te = await runE();
          th = await runH();
        } else {
          th = await runH();
          te = await runE();
        }
        const e = te.out;
        const h = th.out;
        if (e.tokens > 0 && h.tokens > 0) extraCpuPerToken.push(th.cpu / h.tokens - te.cpu / e.tokens);
        engineRates.push(e.rate);
        httpRates.push(h.rate);
        engineMedRates.push(e.medianRate);
        httpMedRates.push(h.medianRate);
        tokens = h.tokens;
        opts.log(
          `round ${r}: engine ${e.rate.toFixed(1)} tok/s (median gap ${e.medianRate.toFixed(1)}), http ${h.rate.toFixed(1)} tok/s (median gap ${h.medianRate.toFixed(1)}), ${h.tokens} tokens`,
        );
      }
      const n = opts.quick ? 10 : 30;
      const oneBody = JSON.stringify({ model: modelInfo.id, messages, max_tokens: 1, temperature: 0 });
      const engineOne: number[] = [];
      const httpOne: number[] = [];
      const diffs: number[] = [];
      for (let i = 0; i < n; i++) {
        engineOne.push((await engineRun(engine, promptIds, 1, `bench-o${i}`)).totalMs);
        httpOne.push(await httpOneToken(port, oneBody));
        diffs.push(httpOne[i] - engineOne[i]);
      }
      const eRate = median(engineRates);
      const hRate = median(httpRates);
      const eMed = median(engineMedRates);
      const hMed = median(httpMedRates);
      return {
        result: {
          model: STACK_MODELS[which].label,
          prompt_tokens: promptIds.length,
          completion_tokens: tokens,
          engine_decode_tokens_per_s: +eRate.toFixed(2),
          http_stream_decode_tokens_per_s: +hRate.toFixed(2),
          engine_runs: engineRates.map((x) => +x.toFixed(2)),
          http_runs: httpRates.map((x) => +x.toFixed(2)),
          one_token_engine_ms_p50: +median(engineOne).toFixed(2),
          one_token_http_ms_p50: +median(httpOne).toFixed(2),
          engine_decode_tokens_per_s_median_gap: +eMed.toFixed(2),
          http_stream_decode_tokens_per_s_median_gap: +hMed.toFixed(2),
          one_token_overhead_ms: +median(diffs).toFixed(2),
          http_extra_cpu_ms_per_token: +median(extraCpuPerToken).toFixed(3),
          decode_ms_per_token_engine: +(1000 / eRate).toFixed(2),
          loadavg_1m: +os.loadavg()[0].toFixed(2),
          note: 'decode-phase rates (after the first token), medians over alternating runs on one engine process; overhead = median of paired (HTTP − engine) 1-token latencies. On a shared, overloaded box the spread between runs exceeds the HTTP cost.',
        },
        ratios: { http_vs_engine: +(hRate / eRate).toFixed(3), http_vs_engine_median_gap: +(hMed / eMed).toFixed(3) },
      };
    } finally {
      await server.close(200);
      await engine.stop();
    }
  },
};
