// Which web permissions the app's pages get: none (checklist item 5), with one exception. Chromium's
// Local Network Access (Chromium 138+, gated per origin) can ask before a page fetches a loopback
// address; the Models page in the window calls the local server at http://127.0.0.1:<port>, so the
// app origin — and only it — may reach loopback. LAN access ('local-network') stays denied.
import { APP_ORIGIN, parseUrl } from './app-origin.ts';

/** Loopback-only permission names (the older combined name and the newer split one). */
const LOOPBACK_PERMISSIONS: ReadonlySet<string> = new Set(['loopback-network', 'local-network-access']);

function originOf(raw: unknown): string | null {
  const u = parseUrl(raw);
  if (!u || u.username || u.password) return null;
  // "mlxbar://app" parses with origin "null" (non-special scheme): compare scheme + host ourselves.
  return `${u.protocol}//${u.host}`;
}

/**
 * True only for a loopback-network permission asked by a page on the app origin. `origin` is the
 * requesting origin or URL Electron reports (details.requestingUrl / requestingOrigin).
 */
export function isPermissionAllowed(permission: string, origin: unknown): boolean {
  if (!LOOPBACK_PERMISSIONS.has(permission)) return false;
  return originOf(origin) === APP_ORIGIN;
}
