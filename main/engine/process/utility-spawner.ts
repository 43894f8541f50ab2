// An EngineSpawner on Electron's `utilityProcess` (the shell passes `utilityProcess` in; this file
// never imports electron, so it stays loadable under plain Node). The engine entry detects
// `process.parentPort` by itself (ipc.ts), so the same engine-main runs under both spawners.
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { EngineProcessHandle, EngineSpawner } from './spawn.ts';

/** The part of Electron's UtilityProcess instance the spawner uses. */
export interface UtilityChildLike {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  postMessage(message: unknown): void;
  kill(): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'exit', listener: (code: number) => void): unknown;
  on(event: 'error', listener: (...args: unknown[]) => void): unknown;
}

/** The part of Electron's `utilityProcess` module the spawner uses. */
export interface UtilityProcessModuleLike {
  fork(
    modulePath: string,
    args?: string[],
    options?: { env?: NodeJS.ProcessEnv; execArgv?: string[]; stdio?: 'pipe' | 'ignore' | 'inherit'; serviceName?: string },
  ): UtilityChildLike;
}

export function utilityProcessSpawner(utilityProcess: UtilityProcessModuleLike): EngineSpawner {
  return (opts, cb) => {
    const child = utilityProcess.fork(opts.entry, [], {
      env: opts.env,
      execArgv: opts.execArgv,
      stdio: 'pipe',
      serviceName: 'MLX Bar engine',
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => cb.onLog(line));
    }
    let exited = false;
    child.on('message', (m) => cb.onMessage(m));
    child.on('exit', (code) => {
      if (exited) return;
      exited = true;
      // utilityProcess reports no signal; a kill shows up as a non-zero code.
      cb.onExit(code, null);
    });
    child.on('error', (...args) => cb.onLog(`engine utility process error: ${String(args[0] ?? 'unknown')}`));
    const handle: EngineProcessHandle = {
      get pid() {
        return child.pid;
      },
      send(msg) {
        if (exited) return false;
        try {
          child.postMessage(msg);
          return true;
        } catch {
          return false;
        }
      },
      kill(signal) {
        try {
          // UtilityProcess.kill() only sends SIGTERM, which a process stuck in a long native call
          // handles late; the supervisor's last resort (SIGKILL) goes straight to the pid.
          if (signal === 'SIGKILL' && child.pid) process.kill(child.pid, 'SIGKILL');
          else child.kill();
        } catch {
          /* already gone */
        }
      },
    };
    return handle;
  };
}
