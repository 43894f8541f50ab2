// URL decisions of the shell, pure so they are unit-tested in plain Node:
//  - which navigations the window may perform (only within the app origin),
//  - which URLs shell.openExternal may open (https on an allowlist of exact hosts; file:, smb:,
//    javascript:, custom schemes and look-alike hosts are refused: openExternal is an RCE vector),
//  - which file an mlxbar://app/... request maps to (inside the renderer folder, no traversal),
//    and the response it gets (type, CSP admitting the running server).
import path from 'node:path';
import { APP_HOST, APP_SCHEME, isAppUrl, parseUrl } from './app-origin.ts';

/** Hosts the app may open in the system browser (docs of the editors it configures, the model hub). */
export const EXTERNAL_HOST_ALLOWLIST: readonly string[] = [
  'github.com',
  'huggingface.co',
  'docs.continue.dev',
  'zed.dev',
  'docs.cline.bot',
  'platform.openai.com',
];

export function isAllowedNavigation(raw: unknown): boolean {
  return isAppUrl(raw);
}

export function isAllowedExternal(raw: unknown, allowlist: readonly string[] = EXTERNAL_HOST_ALLOWLIST): boolean {
  // Printable ASCII only: no whitespace the parser would trim, no control or look-alike characters.
  if (typeof raw !== 'string' || !/^[\x21-\x7e]+$/.test(raw)) return false;
  const u = parseUrl(raw);
  if (!u) return false;
  if (u.protocol !== 'https:') return false;
  if (u.username || u.password) return false;
  if (u.port !== '') return false;
  // URL lower-cases and punycodes the host, so "GitHub.com" matches and "gíthub.com" does not.
  return allowlist.includes(u.hostname);
}

/**
 * Maps an mlxbar://app/<path> request to a file under `root`, or null when it must be refused
 * (other origin, encoded traversal, NUL, backslash). "/" maps to index.html.
 */
export function resolveAppAsset(root: string, raw: string): string | null {
  const u = parseUrl(raw);
  if (!u || u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return null;
  let rel: string;
  try {
    rel = decodeURIComponent(u.pathname);
  } catch {
    return null;
  }
  if (rel.includes('\0') || rel.includes('\\')) return null;
  if (rel.split('/').some((seg) => seg === '..')) return null;
  const base = path.resolve(root);
  const file = path.resolve(base, `.${path.posix.normalize(`/${rel}`)}`);
  if (file !== base && !file.startsWith(base + path.sep)) return null;
  return file === base || rel.endsWith('/') ? path.join(file, 'index.html') : file;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
};

export function mimeFor(file: string): string {
  return MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * The app scheme's answer to `url`: the renderer file, with its type and the CSP that admits the
 * running server (`endpoint` when the file is read); 404 for anything refused or unreadable.
 * `onPage` hears the endpoint an HTML page was served with (its CSP is fixed until it reloads).
 */
export async function appAssetResponse(rendererDir: string, url: string, opts: { endpoint(): string | null; onPage(endpoint: string | null): void; read(file: string): Promise<Buffer<ArrayBuffer>> }): Promise<Response> {
  const file = resolveAppAsset(rendererDir, url);
  if (!file) return new Response('Not found', { status: 404 });
  try {
    const body = await opts.read(file);
    const endpoint = opts.endpoint();
    if (file.endsWith('.html')) opts.onPage(endpoint);
    return new Response(body, { headers: { 'content-type': mimeFor(file), 'content-security-policy': appCsp(endpoint), 'x-content-type-options': 'nosniff' } });
  } catch {
    return new Response('Not found', { status: 404 });
  }
}

/** The CSP the app protocol sends as a header (the page also carries it as a meta tag). */
export const APP_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The origin (scheme://host:port) of a running server endpoint, or null unless it is plain http on
 * a loopback address: the window may talk to our own local server, never to anything the settings
 * could point elsewhere (a LAN address, https, credentials in the URL).
 */
export function loopbackServerOrigin(endpoint: string | null | undefined): string | null {
  if (typeof endpoint !== 'string' || !/^[\x21-\x7e]+$/.test(endpoint)) return null;
  const u = parseUrl(endpoint);
  if (!u || u.protocol !== 'http:' || u.username || u.password) return null;
  // URL normalizes the host (lower case, 127.1 → 127.0.0.1). IPv6 literals are left out on
  // purpose: CSP host-source grammar has no IPv6 form, so [::1] cannot be allowed narrowly.
  const host = u.hostname;
  const loopback = host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  return loopback ? u.origin : null;
}

/**
 * APP_CSP plus exactly the running server's origin in connect-src, so the window (origin
 * mlxbar://app) can call the local API (Models page, chat) and nothing else. Any endpoint that is
 * not http on loopback, or none at all, leaves the strict policy unchanged.
 */
export function appCsp(endpoint: string | null): string {
  const origin = loopbackServerOrigin(endpoint);
  if (!origin) return APP_CSP;
  return APP_CSP.replace("connect-src 'self'", `connect-src 'self' ${origin}`);
}
