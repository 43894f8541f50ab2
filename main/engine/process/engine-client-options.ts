// The engine client's options and their defaults (engine-client.ts).
import type { LoadOptions } from './protocol.ts';
import { defaultEngineEntry, forkSpawner, type EngineSpawner } from './spawn.ts';

export interface EngineClientOptions {
  /** Engine entry file; default: engine-main.ts/.js next to this module. */
  entry?: string;
  /** How to start the process; default child_process.fork. The Electron shell passes a utilityProcess spawner. */
  spawn?: EngineSpawner;
  /** Base environment for the engine process (OpenBLAS settings are added). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Give up after this many consecutive crashes (default 4). */
  maxConsecutiveCrashes?: number;
  /** Restart backoff (defaults: 250 ms, ×2, capped at 15 s). */
  backoff?: { initialMs?: number; factor?: number; maxMs?: number };
  /** Uptime after `ready` that counts as healthy and resets the crash count (default 60 s). */
  stableAfterMs?: number;
  /** Max time for the process to load a model (default 10 min: big checkpoints dequantize at load). */
  loadTimeoutMs?: number;
  /** After a cancel, how long to wait for the engine's own `done` before ending the stream anyway (default 15 s). */
  cancelGraceMs?: number;
  /** How long stats() waits for an answer (default 30 s: a prefill chunk can keep the engine busy). */
  statsTimeoutMs?: number;
  /** Engine tuning sent with every load (prefix cache budget, prefill chunk size). */
  engine?: LoadOptions;
  /** Sanitized lines from the engine process (its stdout/stderr and supervisor notes). Default: stderr with an `[engine]` prefix. */
  log?: (line: string) => void;
}

export type ResolvedEngineClientOptions = Required<Omit<EngineClientOptions, 'backoff' | 'env'>> & {
  backoff: { initialMs: number; factor: number; maxMs: number };
  env: NodeJS.ProcessEnv;
};

export function resolveEngineClientOptions(options: EngineClientOptions): ResolvedEngineClientOptions {
  const entry = options.entry ?? defaultEngineEntry();
  return {
    entry,
    spawn: options.spawn ?? forkSpawner,
    env: options.env ?? process.env,
    maxConsecutiveCrashes: Math.max(1, options.maxConsecutiveCrashes ?? 4),
    backoff: {
      initialMs: options.backoff?.initialMs ?? 250,
      factor: options.backoff?.factor ?? 2,
      maxMs: options.backoff?.maxMs ?? 15_000,
    },
    stableAfterMs: options.stableAfterMs ?? 60_000,
    loadTimeoutMs: options.loadTimeoutMs ?? 600_000,
    cancelGraceMs: options.cancelGraceMs ?? 15_000,
    statsTimeoutMs: options.statsTimeoutMs ?? 30_000,
    log: options.log ?? ((line) => process.stderr.write(`[engine] ${line}\n`)),
    engine: options.engine ?? {},
  };
}
