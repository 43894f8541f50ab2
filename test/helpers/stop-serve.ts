// Stops a startServe() stack in a test's cleanup without ever hanging the run: a bounded graceful
// stop, then SIGKILL for an engine process that did not exit (a failed test must not leave one).
import type { RunningServe } from '../../main/core/serve.ts';

export async function stopServeHard(running: RunningServe | null | undefined, graceMs = 15_000): Promise<void> {
  if (!running) return;
  try {
    await Promise.race([running.stop(), new Promise((r) => setTimeout(r, graceMs))]);
  } finally {
    killEngine(running);
  }
}

function killEngine(running: RunningServe): void {
  const pid = (running.engine as { pid?: number } | undefined)?.pid;
  if (!pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
