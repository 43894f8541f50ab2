// What the tray shows, computed from the app state: status (icon + tooltip) and the menu as plain
// data. Pure, so every state is unit-tested; main/shell/index.ts only turns the model into
// Electron's Menu and wires the item ids to actions.
import type { DegradationState } from '../hardening/metrics-types.ts';
import type { ServerStatus } from '../../preload/api.ts';

export type TrayStatus = 'running' | 'degraded' | 'stopped' | 'error';

export interface TrayInput {
  server: ServerStatus;
  /** From the latest metrics snapshot; null when none (server stopped). */
  degradation: { state: DegradationState; reason: string | null } | null;
  endpoint: string | null;
  model: string | null;
  error: string | null;
  settingsIssueCount: number;
  startAtLogin: boolean;
}

export type TrayItemId =
  | 'status'
  | 'toggle-server'
  | 'endpoint'
  | 'copy-endpoint'
  | 'model'
  | 'open-dashboard'
  | 'open-settings'
  | 'start-at-login'
  | 'quit';

export type TrayMenuItem =
  | { type: 'separator' }
  | { type: 'normal'; id: TrayItemId; label: string; enabled: boolean }
  | { type: 'checkbox'; id: TrayItemId; label: string; enabled: boolean; checked: boolean };

export const DEGRADATION_LABELS: Record<DegradationState, string> = {
  normal: 'Healthy',
  cache_disabled: 'Cache disabled',
  shedding: 'Shedding load',
  engine_restarting: 'Engine restarting',
  engine_failed: 'Engine failed',
};

export function trayStatus(s: TrayInput): TrayStatus {
  if (s.server === 'error' || s.settingsIssueCount > 0) return 'error';
  if (s.server === 'running' || s.server === 'stopping') {
    if (s.degradation?.state === 'engine_failed') return 'error';
    if (s.degradation && s.degradation.state !== 'normal') return 'degraded';
    return 'running';
  }
  if (s.server === 'starting') return 'degraded';
  return 'stopped';
}

function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function statusLine(s: TrayInput): string {
  if (s.settingsIssueCount > 0) return `Settings invalid (${s.settingsIssueCount} ${s.settingsIssueCount === 1 ? 'problem' : 'problems'})`;
  switch (s.server) {
    case 'starting':
      return 'Starting…';
    case 'stopping':
      return 'Stopping…';
    case 'stopped':
      return 'Stopped';
    case 'error':
      return `Error: ${shorten(s.error ?? 'server failed', 60)}`;
    case 'running': {
      const d = s.degradation;
      if (!d || d.state === 'normal') return 'Running';
      return `Running — ${DEGRADATION_LABELS[d.state]}`;
    }
  }
}

export function trayTooltip(s: TrayInput): string {
  const parts = [`MLX Bar: ${statusLine(s)}`];
  if (s.server === 'running' && s.endpoint) parts.push(s.endpoint);
  if (s.degradation?.reason && s.degradation.state !== 'normal') parts.push(shorten(s.degradation.reason, 100));
  return parts.join('\n');
}

/** Icon file (in assets/) for a status: template images on macOS (the system tints them). */
export function trayIconFile(status: TrayStatus, platform: NodeJS.Platform): string {
  if (platform === 'darwin') return status === 'running' || status === 'stopped' ? 'trayTemplate.png' : 'trayAlertTemplate.png';
  return `tray-${status}.png`;
}

export function trayMenu(s: TrayInput): TrayMenuItem[] {
  const busy = s.server === 'starting' || s.server === 'stopping';
  const running = s.server === 'running';
  const canStart = !busy && !running && s.settingsIssueCount === 0;
  return [
    { type: 'normal', id: 'status', label: statusLine(s), enabled: false },
    { type: 'separator' },
    {
      type: 'normal',
      id: 'toggle-server',
      label: running || s.server === 'stopping' ? 'Stop Server' : 'Start Server',
      enabled: running || canStart,
    },
    { type: 'normal', id: 'endpoint', label: s.endpoint && running ? s.endpoint : 'Endpoint: not running', enabled: false },
    { type: 'normal', id: 'copy-endpoint', label: 'Copy Endpoint URL', enabled: !!s.endpoint && running },
    { type: 'normal', id: 'model', label: `Model: ${s.model ? shorten(s.model, 48) : 'none selected'}`, enabled: false },
    { type: 'separator' },
    { type: 'normal', id: 'open-dashboard', label: 'Open Dashboard', enabled: true },
    { type: 'normal', id: 'open-settings', label: 'Settings…', enabled: true },
    { type: 'checkbox', id: 'start-at-login', label: 'Start at Login', enabled: true, checked: s.startAtLogin },
    { type: 'separator' },
    { type: 'normal', id: 'quit', label: 'Quit MLX Bar', enabled: true },
  ];
}
