// How the supervisor starts an engine process. The default forks a Node child; the Electron shell
// can pass a spawner built on `utilityProcess.fork` with the same shape (this file must not import
// electron). A handle only needs: send, message/exit/log callbacks, kill.
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface EngineProcessHandle {
  readonly pid: number | undefined;
  send(msg: unknown): boolean;
  kill(signal?: NodeJS.Signals): void;
}

export interface EngineSpawnCallbacks {
  onMessage(msg: unknown): void;
  /** Exactly once, when the process has exited (code or signal). */
  onExit(code: number | null, signal: string | null): void;
  /** One line of the process' stdout/stderr (unsanitized; the supervisor sanitizes). */
  onLog(line: string): void;
}

export interface EngineSpawnOptions {
  entry: string;
  execArgv: string[];
  env: NodeJS.ProcessEnv;
}

export type EngineSpawner = (opts: EngineSpawnOptions, cb: EngineSpawnCallbacks) => EngineProcessHandle;

/**
 * The engine entry next to this file: `engine-main.ts` when running from sources (tsx), the `.js`
 * sibling once built.
 */
export function defaultEngineEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = path.dirname(here);
  const js = path.join(dir, 'engine-main.js');
  const ts = path.join(dir, 'engine-main.ts');
  if (here.endsWith('.ts') && existsSync(ts)) return ts;
  return existsSync(js) ? js : ts;
}

/**
 * Node flags for the engine process. `.ts` entries need the tsx loader; it is given as an absolute
 * URL so the child does not depend on its working directory to find it. `--expose-gc` lets the
 * engine run the per-step GC policy that keeps MLX memory bounded (engine-findings §3.4).
 */
export function engineExecArgv(entry: string): string[] {
  const args = ['--expose-gc'];
  if (entry.endsWith('.ts')) {
    const require = createRequire(import.meta.url);
    args.unshift('--import', pathToFileURL(require.resolve('tsx')).href);
  }
  return args;
}

export const forkSpawner: EngineSpawner = (opts, cb) => {
  const child = fork(opts.entry, [], {
    execArgv: opts.execArgv,
    env: opts.env,
    // stdout/stderr are piped to the supervisor's sanitized log; never inherited.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // Structured clone: prefix KV snapshots travel as Float32Arrays, not JSON number lists.
    serialization: 'advanced',
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (line) => cb.onLog(line));
  }
  child.on('message', (m) => cb.onMessage(m));
  let exited = false;
  const done = (code: number | null, signal: string | null): void => {
    if (exited) return;
    exited = true;
    cb.onExit(code, signal);
  };
  child.on('exit', (code, signal) => done(code, signal));
  child.on('error', (err) => {
    // Spawn failure (or a failed send): if the process never started, 'exit' will not come.
    cb.onLog(`engine process error: ${err.message}`);
    if (child.pid === undefined || child.exitCode !== null) done(child.exitCode ?? 1, null);
  });
  return {
    get pid() {
      return child.pid;
    },
    send(msg) {
      if (!child.connected) return false;
      try {
        // send() returning false only signals backpressure (the message is still queued and
        // delivered); only a closed channel means the message is lost.
        child.send(msg as object, (err) => {
          if (err) cb.onLog(`engine IPC send failed: ${err.message}`);
        });
        return true;
      } catch {
        return false;
      }
    },
    kill(signal) {
      try {
        child.kill(signal);
      } catch {
        /* already gone */
      }
    },
  };
};
