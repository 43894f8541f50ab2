// Serves the built dashboard (vite output) read-only. Paths from the URL are decoded once, must
// stay inside the dashboard folder after resolution (no `..`, NUL, backslashes or symlink escapes),
// and unknown extension-less paths fall back to index.html (client-side routes).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApiError } from '../common/errors.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Headers that keep the dashboard from being framed or sniffed, and scripts same-origin only. */
export const DASHBOARD_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

export interface StaticFile {
  body: Buffer;
  type: string;
  immutable: boolean;
}

const notBuilt = () =>
  new ApiError('not_found', 'The dashboard is not built. Run `npm run build:renderer` and reload.');

export async function readDashboardFile(root: string | null, urlPath: string): Promise<StaticFile> {
  if (!root) throw notBuilt();
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    throw new ApiError('invalid_request', 'Malformed path');
  }
  if (rel.includes('\0') || rel.includes('\\') || rel.split('/').some((seg) => seg === '..')) {
    throw new ApiError('not_found', 'Not found');
  }
  const base = path.resolve(root);
  let real: string;
  try {
    real = await fs.realpath(base);
  } catch {
    throw notBuilt();
  }
  const candidate = path.resolve(real, '.' + path.posix.normalize('/' + rel));
  const target = candidate === real || rel === '' || rel.endsWith('/') ? path.join(real, 'index.html') : candidate;
  const tryRead = async (file: string): Promise<StaticFile | null> => {
    try {
      const resolved = await fs.realpath(file);
      if (resolved !== real && !resolved.startsWith(real + path.sep)) return null;
      const st = await fs.stat(resolved);
      if (!st.isFile()) return null;
      const ext = path.extname(resolved).toLowerCase();
      return {
        body: await fs.readFile(resolved),
        type: TYPES[ext] ?? 'application/octet-stream',
        immutable: resolved.includes(`${path.sep}assets${path.sep}`),
      };
    } catch {
      return null;
    }
  };
  const file = await tryRead(target);
  if (file) return file;
  if (!path.extname(target)) {
    const index = await tryRead(path.join(real, 'index.html'));
    if (index) return index;
    throw notBuilt();
  }
  throw new ApiError('not_found', 'Not found');
}
