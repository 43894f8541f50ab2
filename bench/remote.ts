// What the router adds: the same requests to a fast OpenAI-compatible upstream (the tests' fake,
// answering at once), directly and through a front `mlx-bar serve` that names it in settings.remotes.
// Per request (non-stream, tiny answer): latency p50/p99 direct vs routed. Per streamed token:
// chunks per second of a long stream, direct vs routed — unpaced (the upstream writes every chunk
// at once: the router's own ceiling, and from it the CPU cost per relayed chunk) and paced at 10 ms
// per chunk (100 tok/s, a big model on a GPU box: what a user sees). Goal: ≤ 2 ms p50 added, ≤ 2%
// tok/s lost.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BenchSection } from './registry.ts';
import { startServe } from '../main/core/serve.ts';
import { parseServeArgs } from '../main/cli/serve.ts';
import type { ServeOptions } from '../main/core/serve.ts';
import { buildTinyModel } from '../test/helpers/tiny-model.ts';
import { startFakeUpstream } from '../test/server/remote/fake-upstream.ts';
import { summarize } from '../main/common/percentiles.ts';

async function post(url: string, body: unknown, key: string): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
}

export const remoteSection: BenchSection = {
  name: 'remote',
  description: 'remote engines: latency per request and streamed chunks/s through the router vs direct to the upstream',
  async run({ quick, log }) {
    const root = mkdtempSync(path.join(tmpdir(), 'mlxbar-bench-remote-'));
    const fake = await startFakeUpstream();
    let front: Awaited<ReturnType<typeof startServe>> | null = null;
    try {
      const model = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
      writeFileSync(path.join(root, 'config.json'), JSON.stringify({ remotes: [{ id: 'up', baseURL: fake.baseURL, maxConcurrent: 8 }] }));
      mkdirSync(root, { recursive: true });
      const opts = (await parseServeArgs(['--model', model, '--data-dir', root, '--port', '0', '--api-key', 'bench-key-123456'], {})) as ServeOptions;
      front = await startServe({ ...opts, idleUnloadMs: 0 }, () => {});
      const direct = `${fake.baseURL}/chat/completions`;
      const routed = `${front.url}/v1/chat/completions`;
      const n = quick ? 100 : 400;
      const small = { model: 'up', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 };
      fake.setModes({ kind: 'ok', text: 'ok ', chunks: 2, intervalMs: 0 });
      const lat = { direct: [] as number[], routed: [] as number[] };
      // CPU time of this process per request (client, fake upstream and front all live here): far
      // less sensitive to other load on the box than wall time, so routed − direct is the router's
      // own cost even on a busy machine.
      const cpu = { direct: 0, routed: 0 };
      for (let i = 0; i < 20; i++) {
        await (await post(direct, small, 'x')).text();
        await (await post(routed, small, 'bench-key-123456')).text();
      }
      for (let i = 0; i < n; i++) {
        // Interleaved so both see the same machine.
        for (const [k, url] of [['direct', direct], ['routed', routed]] as const) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          const r = await post(url, small, 'bench-key-123456');
          await r.text();
          lat[k].push(performance.now() - t0);
          const c = process.cpuUsage(c0);
          cpu[k] += c.user + c.system;
        }
      }
      const d = summarize(lat.direct);
      const r = summarize(lat.routed);
      const cpuDirect = cpu.direct / n / 1000;
      const cpuRouted = cpu.routed / n / 1000;
      log(`per request p50 direct ${d.p50.toFixed(2)} ms, routed ${r.p50.toFixed(2)} ms; CPU per request direct ${cpuDirect.toFixed(2)} ms, routed ${cpuRouted.toFixed(2)} ms`);
      const chunks = quick ? 2000 : 10000;
      fake.setModes({ kind: 'ok', text: 'tok ', chunks, intervalMs: 0 });
      const streamCpu = { direct: 0, routed: 0, chunks: { direct: 0, routed: 0 } };
      const streamRate = async (url: string) => {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const res = await post(url, { ...small, stream: true }, 'bench-key-123456');
        let got = 0;
        const dec = new TextDecoder();
        for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) got += (dec.decode(part).match(/"content":"tok /g) ?? []).length;
        const perSecond = (got * 1000) / (performance.now() - t0);
        const c = process.cpuUsage(c0);
        const k = url === direct ? 'direct' : 'routed';
        streamCpu[k] += c.user + c.system;
        streamCpu.chunks[k] += got;
        return { perSecond, got };
      };
      const rates = { direct: [] as number[], routed: [] as number[] };
      for (let i = 0; i < (quick ? 3 : 5); i++) {
        rates.direct.push((await streamRate(direct)).perSecond);
        rates.routed.push((await streamRate(routed)).perSecond);
      }
      const med = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
      const rd = med(rates.direct);
      const rr = med(rates.routed);
      const cpuPerChunk = { direct: streamCpu.direct / streamCpu.chunks.direct, routed: streamCpu.routed / streamCpu.chunks.routed };
      log(`stream chunks/s direct ${rd.toFixed(0)}, routed ${rr.toFixed(0)}`);
      // Paced like a real upstream: 10 ms between chunks.
      const pacedChunks = quick ? 100 : 200;
      fake.setModes({ kind: 'ok', text: 'tok ', chunks: pacedChunks, intervalMs: 10 });
      const paced = { direct: [] as number[], routed: [] as number[] };
      for (let i = 0; i < (quick ? 3 : 5); i++) {
        paced.direct.push((await streamRate(direct)).perSecond);
        paced.routed.push((await streamRate(routed)).perSecond);
      }
      const pd = med(paced.direct);
      const pr = med(paced.routed);
      log(`paced stream (10 ms/chunk) chunks/s direct ${pd.toFixed(1)}, routed ${pr.toFixed(1)}`);
      return {
        result: {
          requests: n,
          latency_ms: { direct: d, routed: r, added_p50: r.p50 - d.p50, added_p99: r.p99 - d.p99 },
          cpu_ms_per_request: { direct: cpuDirect, routed: cpuRouted, added: cpuRouted - cpuDirect },
          // Unpaced streams only (computed before the paced runs).
          cpu_us_per_chunk: { direct: cpuPerChunk.direct, routed: cpuPerChunk.routed, added: cpuPerChunk.routed - cpuPerChunk.direct },
          stream_chunks_per_second: { direct: rd, routed: rr, chunks },
          // What one relayed chunk costs the router (parse upstream SSE, our writer, our SSE frame).
          per_chunk_added_us: (1 / rr - 1 / rd) * 1e6,
          paced_stream_chunks_per_second: { direct: pd, routed: pr, chunks: pacedChunks, interval_ms: 10 },
          note: 'upstream = an in-process fake answering at once, so the numbers are the router overhead alone',
        },
        ratios: {
          added_p50_ms: Math.round((r.p50 - d.p50) * 100) / 100,
          added_cpu_ms_per_request: Math.round((cpuRouted - cpuDirect) * 1000) / 1000,
          stream_rate_routed_vs_direct: Math.round((rr / rd) * 1000) / 1000,
          paced_stream_rate_routed_vs_direct: Math.round((pr / pd) * 1000) / 1000,
        },
      };
    } finally {
      await front?.stop().catch(() => {});
      await fake.close();
      rmSync(root, { recursive: true, force: true });
    }
  },
};
