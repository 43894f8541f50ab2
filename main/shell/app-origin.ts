// The one origin the app's own pages have. The dashboard is served to the window from a
// privileged custom scheme (not file://, checklist item 18), so "is this our page?" is a plain
// origin comparison done with the URL parser.
export const APP_SCHEME = 'mlxbar';
export const APP_HOST = 'app';
export const APP_ORIGIN = `${APP_SCHEME}://${APP_HOST}`;
export const DASHBOARD_URL = `${APP_ORIGIN}/index.html`;
export const SETTINGS_URL = `${APP_ORIGIN}/index.html#/settings`;
/** The dashboard's Models page (renderer/src/App.tsx routes on the hash). */
export const MODELS_URL = `${APP_ORIGIN}/index.html#/models`;

/** Parses a URL, or null (never throws). */
export function parseUrl(raw: unknown): URL | null {
  if (typeof raw !== 'string' || raw.length > 8192) return null;
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}

/** True only for URLs on the app origin (mlxbar://app/...), compared after parsing. */
export function isAppUrl(raw: unknown): boolean {
  const u = parseUrl(raw);
  return !!u && u.protocol === `${APP_SCHEME}:` && u.host === APP_HOST && !u.username && !u.password;
}
