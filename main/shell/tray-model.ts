// What the tray shows, computed from the app state: status (icon + tooltip) and the menu as plain
// data, its items' actions and its Electron menu template. Pure, so every state is unit-tested;
// main/shell/tray.ts only hands the template to Electron's Menu and Tray.
import type { DegradationState, MetricsSnapshot } from '../common/metrics-types.ts';
import { formatBytes } from '../library/format.ts';
import type { AppModel, AppState, ServerStatus } from '../../preload/api.ts';
import { DASHBOARD_URL, MODELS_URL, SETTINGS_URL } from './app-origin.ts';

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
  /** The library (AppState.models); the submenu's radio items are built from this exact list. */
  models: readonly AppModel[];
  /** Library id being loaded by a switch; null when none. */
  switchingTo: string | null;
  /** Why the last switch failed (sanitized); null when it did not. */
  modelError: string | null;
}

export type TrayItemId =
  | 'status'
  | 'toggle-server'
  | 'endpoint'
  | 'copy-endpoint'
  | 'model'
  | 'model-status'
  | 'models-empty'
  | 'remote-models'
  | 'remote-model'
  | 'manage-models'
  | 'open-dashboard'
  | 'open-settings'
  | 'start-at-login'
  | 'quit';

/**
 * A model entry's id: its index in the `models` list the menu was built from. Never the library
 * id itself (an id is a user/hub-controlled string; the click handler maps the index back through
 * the same list with modelIdForItem, so nothing from the menu is used as a name or a path).
 */
export type ModelItemId = `model:${number}`;

export type TrayMenuItem =
  | { type: 'separator' }
  | { type: 'normal'; id: TrayItemId; label: string; enabled: boolean }
  | { type: 'checkbox'; id: TrayItemId; label: string; enabled: boolean; checked: boolean }
  | { type: 'radio'; id: ModelItemId; label: string; enabled: boolean; checked: boolean }
  | { type: 'submenu'; id: TrayItemId; label: string; enabled: boolean; items: TrayMenuItem[] };

/** The tray's input from the controller's state and latest metrics snapshot (what index.ts renders). */
export function trayInputFrom(st: AppState, snap: MetricsSnapshot | null): TrayInput {
  return {
    server: st.server,
    degradation: snap ? { state: snap.degradation.state, reason: snap.degradation.reason } : null,
    endpoint: st.endpoint,
    model: snap?.model.id ?? st.model,
    error: st.error,
    settingsIssueCount: st.settingsIssues.length,
    startAtLogin: st.startAtLogin,
    models: st.models,
    switchingTo: st.switchingTo,
    modelError: st.modelError,
  };
}

export const DEGRADATION_LABELS: Record<DegradationState, string> = {
  normal: 'Healthy',
  upstream_down: 'Remote model down',
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
      return s.modelError ? `Switch failed: ${shorten(s.modelError, 60)}` : 'Stopped';
    case 'error':
      return `Error: ${shorten(s.error ?? 'server failed', 60)}`;
    case 'running': {
      if (s.switchingTo) return `Running — switching to ${shorten(shortModelName(s.switchingTo), 40)}…`;
      const d = s.degradation;
      if (d && d.state !== 'normal') return `Running — ${DEGRADATION_LABELS[d.state]}`;
      // The previous model still serves, so this is a note on a running server, not an error state.
      if (s.modelError) return `Switch failed: ${shorten(s.modelError, 60)}`;
      return 'Running';
    }
  }
}

export function trayTooltip(s: TrayInput): string {
  const parts = [`MLX Bar: ${statusLine(s)}`];
  if (s.server === 'running' && s.endpoint) parts.push(s.endpoint);
  if (s.degradation?.reason && s.degradation.state !== 'normal') parts.push(shorten(s.degradation.reason, 100));
  if (s.modelError && !s.switchingTo) parts.push(shorten(s.modelError, 200));
  return parts.join('\n');
}

/** `owner/name[@rev]` → `name[@rev]`; a folder id stays as it is. */
export function shortModelName(id: string): string {
  const slash = id.lastIndexOf('/');
  return slash >= 0 && slash < id.length - 1 ? id.slice(slash + 1) : id;
}

/** Why a model does not fit, short enough for a menu: "too large: needs 26 GB". */
function fitNote(m: AppModel): string {
  return m.needBytes !== null && Number.isFinite(m.needBytes) ? `too large: needs ${formatBytes(m.needBytes)}` : 'memory need unknown';
}

/** 32768 → "32K", 40960 → "40K", 1500 → "1.5K", 512 → "512". */
export function formatContext(tokens: number): string {
  if (tokens < 1000) return String(tokens);
  const k = tokens / 1024;
  return k >= 10 ? `${Math.round(k)}K` : `${Math.round(k * 10) / 10}K`;
}

/** The radio items' labels: short names, unless two models share one (then the full ids). */
export function modelLabels(models: readonly AppModel[]): string[] {
  const shortNames = models.map((m) => shortModelName(m.id));
  const counts = new Map<string, number>();
  for (const n of shortNames) counts.set(n, (counts.get(n) ?? 0) + 1);
  return models.map((m, i) => {
    const name = shorten((counts.get(shortNames[i]) ?? 0) > 1 ? m.id : shortNames[i], 48);
    const size = formatBytes(m.sizeBytes);
    // The context it would serve (contextLength "auto": its own limit capped by memory), e.g. "32K ctx".
    const ctx = typeof m.contextTokens === 'number' && m.contextTokens > 0 ? `, ${formatContext(m.contextTokens)} ctx` : '';
    return m.fits ? `${name} (${size}${ctx})` : `${name} (${size}) — ${fitNote(m)}`;
  });
}

/** Maps a clicked item id back to the library id, through the list the menu was built from. */
export function modelIdForItem(itemId: string, models: readonly AppModel[]): string | null {
  const m = /^model:(\d{1,6})$/.exec(itemId);
  if (!m) return null;
  const i = Number(m[1]);
  // A remote model is never loaded here (clients name it per request): nothing to switch to.
  return i < models.length && !models[i].remote ? models[i].id : null;
}

const REMOTE_HEALTH: Record<NonNullable<AppModel['remote']>['health'], string> = {
  up: 'up',
  down: 'down',
  probing: 'probing',
  unchecked: 'not checked',
};

/** A remote model's (disabled, informational) item: "gpu-box — remote · down". */
export function remoteLabel(m: AppModel): string {
  return `${shorten(m.id, 48)} — remote · ${REMOTE_HEALTH[m.remote?.health ?? 'unchecked']}`;
}

/**
 * A click on a model item: the index is mapped back through `builtFrom` (the exact list the menu was
 * built from, not today's list, which may have changed since) and the switch started. Returns what
 * switchModel returned (the switch's promise), or null for an id that names no model.
 */
export function clickModelItem<T>(itemId: string, builtFrom: readonly AppModel[], switchModel: (id: string) => T): T | null {
  const id = modelIdForItem(itemId, builtFrom);
  return id === null ? null : switchModel(id);
}

/** The "Model" submenu: the library as radio items, the switch in flight, Manage Models…. */
export function modelSubmenu(s: TrayInput): TrayMenuItem {
  const current = s.models.find((m) => m.current && !m.remote);
  const busy = s.server === 'starting' || s.server === 'stopping' || !!s.switchingTo;
  // Stopped with invalid settings: choosing a model would have to save them, which cannot work.
  const locked = busy || (s.settingsIssueCount > 0 && s.server !== 'running');
  const shown = current ? current.id : s.model;
  const label = s.switchingTo
    ? `Model: switching to ${shorten(shortModelName(s.switchingTo), 40)}…`
    : `Model: ${shown ? shorten(shortModelName(shown), 48) : 'none selected'}`;
  const items: TrayMenuItem[] = [];
  if (s.switchingTo) {
    items.push({ type: 'normal', id: 'model-status', label: `Switching to ${shorten(shortModelName(s.switchingTo), 40)}…`, enabled: false });
    items.push({ type: 'separator' });
  } else if (s.modelError) {
    items.push({ type: 'normal', id: 'model-status', label: shorten(s.modelError, 80), enabled: false });
    items.push({ type: 'separator' });
  }
  // Radio items keep their index in the full list (what clickModelItem maps back through).
  const locals = s.models.map((m, i) => ({ m, i })).filter((x) => !x.m.remote);
  const remotes = s.models.filter((m) => m.remote);
  if (locals.length === 0) {
    items.push({ type: 'normal', id: 'models-empty', label: 'No models — download one in Manage Models…', enabled: false });
  } else {
    const labels = modelLabels(locals.map((x) => x.m));
    locals.forEach(({ m, i }, k) => {
      items.push({ type: 'radio', id: `model:${i}`, label: labels[k], enabled: !locked && m.fits, checked: m.current });
    });
  }
  if (remotes.length) {
    // Served by other machines behind this endpoint: listed with their health, nothing to load.
    items.push({ type: 'separator' });
    items.push({ type: 'normal', id: 'remote-models', label: 'Remote models (pick by id in the client)', enabled: false });
    for (const m of remotes) items.push({ type: 'normal', id: 'remote-model', label: remoteLabel(m), enabled: false });
  }
  items.push({ type: 'separator' });
  items.push({ type: 'normal', id: 'manage-models', label: 'Manage Models…', enabled: true });
  return { type: 'submenu', id: 'model', label, enabled: true, items };
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
    modelSubmenu(s),
    { type: 'separator' },
    { type: 'normal', id: 'open-dashboard', label: 'Open Dashboard', enabled: true },
    { type: 'normal', id: 'open-settings', label: 'Settings…', enabled: true },
    { type: 'checkbox', id: 'start-at-login', label: 'Start at Login', enabled: true, checked: s.startAtLogin },
    { type: 'separator' },
    { type: 'normal', id: 'quit', label: 'Quit MLX Bar', enabled: true },
  ];
}

/** What the tray's items do (wired by tray.ts to the window, the controller and the app). */
export interface TrayActionTargets {
  showWindow(url: string): void;
  toggleServer(): void;
  copyEndpoint(): void;
  setStartAtLogin(on: boolean): void;
  quit(): void;
}

/** Item id → action. Labels (status, endpoint, model, remote models) do nothing. */
export function trayActions(t: TrayActionTargets): Record<TrayItemId, (checked?: boolean) => void> {
  const none = () => {};
  return {
    status: none,
    endpoint: none,
    model: none,
    'model-status': none,
    'models-empty': none,
    // Remote models are listed for their health; a client picks one per request by its id.
    'remote-models': none,
    'remote-model': none,
    'manage-models': () => t.showWindow(MODELS_URL),
    'toggle-server': () => t.toggleServer(),
    'copy-endpoint': () => t.copyEndpoint(),
    'open-dashboard': () => t.showWindow(DASHBOARD_URL),
    'open-settings': () => t.showWindow(SETTINGS_URL),
    'start-at-login': (checked) => t.setStartAtLogin(!!checked),
    quit: () => t.quit(),
  };
}

/** Electron's menu template item (MenuItemConstructorOptions), the part the tray uses. */
export interface MenuTemplateItem {
  id?: string;
  label?: string;
  type?: 'normal' | 'separator' | 'checkbox' | 'radio';
  enabled?: boolean;
  checked?: boolean;
  submenu?: MenuTemplateItem[];
  click?: (item: { checked: boolean }) => void;
}

/**
 * The menu model as Electron's template. A model item's click hands back its item id (its index
 * in the list the menu was built from: see clickModelItem), never a string taken from the menu.
 */
export function menuTemplate(items: readonly TrayMenuItem[], onItem: (id: TrayItemId, checked: boolean) => void, onModel: (id: ModelItemId) => void): MenuTemplateItem[] {
  return items.map((it): MenuTemplateItem => {
    switch (it.type) {
      case 'separator':
        return { type: 'separator' };
      case 'submenu':
        return { id: it.id, label: it.label, enabled: it.enabled, submenu: menuTemplate(it.items, onItem, onModel) };
      case 'radio':
        return { id: it.id, label: it.label, type: 'radio', enabled: it.enabled, checked: it.checked, click: () => onModel(it.id) };
      case 'checkbox':
        return { id: it.id, label: it.label, type: 'checkbox', enabled: it.enabled, checked: it.checked, click: (mi) => onItem(it.id, mi.checked) };
      default:
        return { id: it.id, label: it.label, type: 'normal', enabled: it.enabled, click: (mi) => onItem(it.id, mi.checked) };
    }
  });
}
