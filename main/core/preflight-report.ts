// The preflight report: its types and the human-readable form `mlx-bar check` prints.
import type { Settings } from '../settings/schema.ts';
import type { MlxCapabilities, PolicyChoice } from '../engine/probe/index.ts';

export const MB = 1024 * 1024;
export const fmtBytes = (b: number) => (b >= 1024 * MB ? `${(b / (1024 * MB)).toFixed(1)} GB` : `${Math.round(b / MB)} MB`);

/** An MLX Bar server found on a busy port (GET /health answered as MLX Bar). */
export interface RunningMlxBar {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  version: string | null;
  /** The model it serves (its /health `model`), printable and short. */
  model: string | null;
  demo: boolean;
  /** Its /health status (ok, loading, …). */
  status: string;
}

export type CheckStatus = 'ok' | 'warn' | 'error';
export interface PreflightCheck {
  id: string;
  status: CheckStatus;
  message: string;
  hint: string | null;
}
export interface PreflightReport {
  ok: boolean;
  checks: PreflightCheck[];
  /** The settings the launch would use (null only if loading them failed outright). */
  settings: Settings | null;
  /** A free port on the configured host when the configured one is busy. */
  suggestedPort: number | null;
  /** An MLX Bar server already listening on the configured port (then `ok` is false, exit code 3). */
  running?: RunningMlxBar | null;
  /** Facts gathered on the way (for `serve` and the dashboard). */
  model: { dir: string | null; architecture: string | null; parameters: number | null; weightFiles: number } | null;
  /** The MLX capability probe of this build (null: skipped, failed, or dtypePolicy float32). */
  capabilities?: MlxCapabilities | null;
  /** The dtype policy serve would use, with its reasons. */
  dtypePolicy?: PolicyChoice | null;
}

const ICON: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', error: '✖' };
const COLOR: Record<CheckStatus, string> = { ok: '\x1b[32m', warn: '\x1b[33m', error: '\x1b[31m' };

/** Human-readable report (one line per check, hints indented below problems, summary last). */
export function formatReport(r: PreflightReport, opts: { color?: boolean } = {}): string {
  const w = Math.max(...r.checks.map((c) => c.id.length), 4);
  const lines = ['MLX Bar preflight check', ''];
  for (const c of r.checks) {
    const icon = opts.color ? `${COLOR[c.status]}${ICON[c.status]}\x1b[0m` : ICON[c.status];
    lines.push(`  ${icon} ${c.id.padEnd(w)}  ${c.message}`);
    if (c.hint && c.status !== 'ok') lines.push(`    ${' '.repeat(w)}  → ${c.hint}`);
  }
  const errors = r.checks.filter((c) => c.status === 'error').length;
  const warns = r.checks.filter((c) => c.status === 'warn').length;
  lines.push('');
  lines.push(
    errors
      ? `${errors} error${errors > 1 ? 's' : ''}, ${warns} warning${warns === 1 ? '' : 's'}: the server would not start.`
      : r.running
        ? `No errors, but MLX Bar is already running on this port: use that server, or stop it before starting another here.`
        : `No errors${warns ? `, ${warns} warning${warns > 1 ? 's' : ''}` : ''}: ready to serve.`,
  );
  return lines.join('\n') + '\n';
}

