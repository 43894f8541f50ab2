// Removes what must never leave the process in an error message: absolute paths (POSIX, Windows,
// file:// URLs), home directories and user names, stack frames, and the values of environment
// variables that look secret or personal. Applied to every message sent over HTTP, shown in the
// dashboard, or written to user-visible logs.
import os from 'node:os';

const MAX_LEN = 500;

function secretEnvValues(): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(process.env)) {
    if (!v || v.length < 6) continue;
    if (/KEY|TOKEN|SECRET|PASS|AUTH|COOKIE|CREDENTIAL|SESSION|HOME|USER|LOGNAME|PATH|DIR/i.test(k)) out.push(v);
  }
  // longest first so a value containing another is removed whole
  return out.sort((a, b) => b.length - a.length);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function sanitizeMessage(input: unknown): string {
  let msg = typeof input === 'string' ? input : input instanceof Error ? input.message : String(input ?? '');
  if (!msg) return 'Unknown error';
  // Drop stack frames and anything after a newline that looks like one.
  msg = msg
    .split(/\r?\n/)
    .filter((line) => !/^\s*at\s/.test(line))
    .join(' ');
  msg = msg.replace(/\s+at\s+\S+\s*\([^)]*\)/g, '');
  // Environment values that are secret or identify the user (checked before paths, since
  // PATH-like values contain paths).
  for (const v of secretEnvValues()) {
    if (v.includes(':') && v.split(':').length > 3) continue; // PATH lists are handled by the path rules
    msg = msg.split(v).join('[redacted]');
  }
  // file:// URLs
  msg = msg.replace(/file:\/\/\/?[^\s'"`)<>]*/gi, '[path]');
  // Windows paths: C:\..., \\server\share\...
  msg = msg.replace(/\b[A-Za-z]:\\[^\s'"`)<>]*/g, '[path]');
  msg = msg.replace(/\\\\[^\s\\'"`]+\\[^\s'"`)<>]*/g, '[path]');
  // ~/... home-relative paths
  msg = msg.replace(/(^|[\s'"`(=:])~\/[^\s'"`)<>]*/g, '$1[path]');
  // POSIX absolute paths with at least two segments (keeps "1/2", "tokens/s", "/v1" routes alone
  // only when they are clearly API routes).
  msg = msg.replace(/(^|[\s'"`(=:,[])\/(?!v1\/|v1\b|health\b|metrics\b)[^\s'"`)<>,:;]+\/[^\s'"`)<>,;]*/g, '$1[path]');
  // Any remaining mention of the user name or home directory.
  const user = safeUserName();
  if (user && user.length >= 3) msg = msg.replace(new RegExp(`\\b${escapeRe(user)}\\b`, 'g'), '[user]');
  msg = msg.replace(/\s{2,}/g, ' ').trim();
  if (msg.length > MAX_LEN) msg = msg.slice(0, MAX_LEN - 1) + '…';
  return msg || 'Unknown error';
}

function safeUserName(): string | null {
  try {
    const u = os.userInfo().username;
    // "root" and similar generic accounts still identify nothing personal but are redacted anyway.
    return u || null;
  } catch {
    return null;
  }
}
