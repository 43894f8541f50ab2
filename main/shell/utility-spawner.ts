// An EngineSpawner on Electron's utilityProcess (the engine's native MLX work must not run in the
// main process: an abort would take the tray down, and a long call would freeze it). The
// utilityProcess API is passed in, so this module imports only types from electron.
import { createInterface } from 'node:readline';
import type { UtilityProcess } from 'electron';
import type { EngineSpawner } from '../engine/process/spawn.ts';

export interface UtilityProcessApi {
  fork(modulePath: string, args?: string[], options?: Electron.ForkOptions): UtilityProcess;
}

export function utilityProcessSpawner(api: UtilityProcessApi): EngineSpawner {
  return (opts, cb) => {
    const child = api.fork(opts.entry, [], {
      env: opts.env,
      // tsx's --import loader only matters when running sources; the packaged entry is plain JS.
      execArgv: opts.execArgv.filter((a, i, all) => a !== '--import' && all[i - 1] !== '--import'),
      stdio: 'pipe',
      serviceName: 'MLX Bar Engine',
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => cb.onLog(line));
    }
    child.on('message', (m: unknown) => cb.onMessage(m));
    let exited = false;
    child.on('exit', (code: number) => {
      if (exited) return;
      exited = true;
      cb.onExit(code, null);
    });
    return {
      get pid() {
        return child.pid;
      },
      send(msg) {
        try {
          child.postMessage(msg);
          return true;
        } catch {
          return false;
        }
      },
      kill() {
        child.kill();
      },
    };
  };
}
