// Number and time formatting for the dashboard. Fixed decimals so digits do not dance (together
// with font-variant-numeric: tabular-nums in the CSS).

export function pct(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return '—';
  return `${(x * 100).toFixed(1)}%`;
}

/** Seconds → "412 ms" / "1.24 s". */
export function secs(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return '—';
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  return `${x.toFixed(2)} s`;
}

export function ms(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return '—';
  return x < 1000 ? `${Math.round(x)} ms` : `${(x / 1000).toFixed(2)} s`;
}

export function num(x: number | null | undefined, digits = 0): string {
  if (x == null || !Number.isFinite(x)) return '—';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function mb(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return '—';
  if (x >= 1024) return `${(x / 1024).toFixed(2)} GB`;
  return `${x.toFixed(0)} MB`;
}

/** 93784 → "1d 2h 3m", 125 → "2m 5s". */
export function duration(totalSeconds: number | null | undefined): string {
  if (totalSeconds == null || !Number.isFinite(totalSeconds) || totalSeconds < 0) return '—';
  const s = Math.floor(totalSeconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** "since" for an ISO timestamp relative to `now`: "12:03:04 (5m 2s ago)". */
export function since(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const clock = new Date(t).toLocaleTimeString('en-GB', { hour12: false });
  return `${clock} (${duration(Math.max(0, (now - t) / 1000))} ago)`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
}

export const STATE_LABELS: Record<string, string> = {
  normal: 'Healthy',
  upstream_down: 'Remote model down',
  cache_disabled: 'Cache disabled',
  shedding: 'Shedding load',
  engine_restarting: 'Engine restarting',
  engine_failed: 'Engine failed',
};

export type Tone = 'ok' | 'warn' | 'bad' | 'idle';

export function stateTone(state: string): Tone {
  if (state === 'normal') return 'ok';
  if (state === 'upstream_down' || state === 'cache_disabled' || state === 'shedding' || state === 'engine_restarting') return 'warn';
  if (state === 'engine_failed') return 'bad';
  return 'idle';
}
