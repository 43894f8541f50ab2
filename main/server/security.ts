// Request gates that run before any body is read or any work starts: Host (DNS rebinding),
// Origin (browser CSRF), API key (constant time), content encoding. Each returns an ApiError or
// null so the caller can answer uniformly.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ApiError } from '../common/errors.ts';
import { isLoopbackHost } from './config.ts';

const HOST_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:(\d{1,5}))?$/;

/**
 * Host header check (Ollama's CVE-2024-28224 fix, plus vLLM's lesson: a Host with `/`, `?`, `@`
 * or spaces is malformed → 400). Loopback names are accepted with or without a port. When the
 * server is deliberately bound beyond loopback (only possible with an API key), any well-formed
 * Host is accepted since the key is what protects it.
 */
export function checkHost(req: IncomingMessage, opts: { loopbackOnly: boolean; allowedHosts: string[] }): ApiError | null {
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'host') count++;
  if (count !== 1) return new ApiError('invalid_request', 'Exactly one Host header is required', { param: 'host' });
  const host = req.headers.host ?? '';
  const m = HOST_RE.exec(host);
  if (!m) return new ApiError('invalid_request', 'Malformed Host header', { param: 'host' });
  const name = m[1].toLowerCase();
  if (m[3] !== undefined && Number(m[3]) > 65535) return new ApiError('invalid_request', 'Malformed Host header', { param: 'host' });
  if (!opts.loopbackOnly) return null;
  if (isLoopbackHost(name)) return null;
  if (opts.allowedHosts.some((h) => h.toLowerCase() === name)) return null;
  return new ApiError('forbidden_host', 'Host not allowed: this server only answers requests addressed to localhost', {
    param: 'host',
  });
}

/** Matches an origin against an allowlist entry: exact, or a prefix ending in `*`. */
function originMatches(origin: string, pattern: string): boolean {
  if (pattern.endsWith('*')) return origin.startsWith(pattern.slice(0, -1));
  return origin === pattern;
}

export interface OriginPolicy {
  /** Configured origins: get CORS headers. */
  allowed: string[];
  /** The server's own origins (the dashboard): allowed, no CORS headers needed. */
  self: () => string[];
}

export type OriginVerdict = { ok: true; cors: string | null } | { ok: false; error: ApiError };

/**
 * No Origin → editor/CLI → allowed. Any other Origin must be the server's own or allowlisted;
 * everything else (including `null` from sandboxed/file pages) → 403 before any work.
 */
export function checkOrigin(req: IncomingMessage, policy: OriginPolicy): OriginVerdict {
  const origin = req.headers.origin;
  if (origin === undefined) return { ok: true, cors: null };
  if (policy.allowed.some((p) => originMatches(origin, p))) return { ok: true, cors: origin };
  if (policy.self().includes(origin.toLowerCase())) return { ok: true, cors: null };
  return { ok: false, error: new ApiError('forbidden_origin', 'Origin not allowed', { param: 'origin' }) };
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** API key check (`Authorization: Bearer` or `x-api-key`). Hashing first makes both buffers equal-length so timingSafeEqual applies always. */
export function makeApiKeyCheck(apiKey: string | null): (req: IncomingMessage) => ApiError | null {
  if (!apiKey) return () => null;
  const expected = sha256(apiKey);
  return (req) => {
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(auth) : null;
    // Anthropic clients (Claude Code with ANTHROPIC_API_KEY, the SDKs' `apiKey`) send `x-api-key`.
    const xKey = req.headers['x-api-key'];
    const key = m ? m[1] : typeof xKey === 'string' && xKey.length > 0 ? xKey.trim() : null;
    const given = sha256(key ?? '');
    // Compare even when the header is missing, so timing does not reveal which case we are in.
    const equal = timingSafeEqual(given, expected);
    if (equal && key !== null) return null;
    return new ApiError('invalid_api_key', 'Invalid or missing API key. Send it as "Authorization: Bearer <key>" (or "x-api-key: <key>").');
  };
}

/** Bodies are never decompressed (gzip bombs, Ollama GO-2025-3548): any encoding but identity → 415. */
export function checkContentEncoding(req: IncomingMessage): ApiError | null {
  const enc = req.headers['content-encoding'];
  if (enc === undefined || enc.trim().toLowerCase() === 'identity') return null;
  return new ApiError('unsupported_media_type', 'Content-Encoding is not supported; send an uncompressed JSON body');
}
