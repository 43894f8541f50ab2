// Runs the real command line (`bin/mlx-bar.mjs` → tsx → main/cli) as a user does, in a child
// process with a clean model environment; every child is killed by killAll() in the test's cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const mlxBarBin = path.join(repoRoot, 'bin', 'mlx-bar.mjs');

export interface CliRun {
  child: ChildProcess;
  exited: Promise<number | null>;
  readonly stdout: string;
  readonly stderr: string;
  /** Waits until stdout matches (rejects if the process exits first or after timeoutMs). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

const children = new Set<ChildProcess>();

/** `mlx-bar <args>`; MLXBAR_* settings of the developer's shell are cleared so only `env` applies. */
export function runMlxBar(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MLXBAR_')) base[k] = v;
  const child = spawn(process.execPath, [mlxBarBin, ...args], { cwd: repoRoot, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => (children.delete(child), resolve(code))));
  return {
    child,
    exited,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    async waitFor(re, timeoutMs = 180_000) {
      const t0 = Date.now();
      for (;;) {
        const m = re.exec(stdout);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr.slice(-800)}`);
        if (Date.now() - t0 > timeoutMs) throw new Error(`timeout waiting for ${re}; stdout: ${stdout.slice(-500)}; stderr: ${stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

/** Stops a server child with SIGTERM (SIGKILL after graceMs) and resolves with its exit code. */
export async function stopChild(run: CliRun, graceMs = 20_000): Promise<number | null> {
  if (run.child.exitCode !== null) return run.child.exitCode;
  run.child.kill('SIGTERM');
  const t = setTimeout(() => run.child.kill('SIGKILL'), graceMs);
  try {
    return await run.exited;
  } finally {
    clearTimeout(t);
  }
}

export function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
}
