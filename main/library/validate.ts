// Strict validation of everything that comes from outside (CLI args, the hub's file listing) before
// it gets anywhere near a file path. Path traversal through names that were "probably fine" is the
// most repeated bug class in local model servers (Ollama CVE-2024-37032, CVE-2026-7020), so names
// are checked against a whitelist first and the joined path is then re-checked to stay inside its
// base directory.
import path from 'node:path';

/** `owner/name`, as the hub spells repository ids. */
const REPO_ID_RE = /^[A-Za-z0-9][\w.-]{0,95}\/[\w.-]{1,96}$/;
/** Branch, tag or commit; `refs/pr/1`-style names are allowed (segments of the same charset). */
const REVISION_RE = /^[A-Za-z0-9][\w.-]{0,99}(\/[\w.-]{1,100}){0,3}$/;

export class InvalidInputError extends Error {
  readonly code = 'invalid_input';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}

/** Shows at most 64 characters of an untrusted string, with control characters removed. */
export function quoteUntrusted(s: string): string {
  const clean = String(s).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return JSON.stringify(clean.length > 64 ? clean.slice(0, 63) + '…' : clean);
}

function hasDotDot(s: string): boolean {
  return s.split('/').some((seg) => seg === '..' || seg === '.') || s.includes('..');
}

export function isValidRepoId(s: string): boolean {
  return typeof s === 'string' && REPO_ID_RE.test(s) && !hasDotDot(s);
}

export function isValidRevision(s: string): boolean {
  return typeof s === 'string' && REVISION_RE.test(s) && !hasDotDot(s);
}

export interface RepoSpec {
  repo: string;
  /** Revision asked for; `main` when none was given. */
  revision: string;
  /** Whether the user named a revision explicitly (it then becomes part of the folder name). */
  explicitRevision: boolean;
}

/** Parses `owner/name[@revision]`. Throws InvalidInputError with a message safe to show. */
export function parseRepoSpec(spec: string): RepoSpec {
  if (typeof spec !== 'string' || spec.length === 0 || spec.length > 300) {
    throw new InvalidInputError('Expected a Hugging Face repository id like mlx-community/Qwen3-0.6B-4bit');
  }
  const at = spec.indexOf('@');
  const repo = at === -1 ? spec : spec.slice(0, at);
  const rev = at === -1 ? undefined : spec.slice(at + 1);
  if (!isValidRepoId(repo)) {
    throw new InvalidInputError(
      `Invalid repository id ${quoteUntrusted(repo)}: expected owner/name (letters, digits, '-', '_', '.')`,
    );
  }
  if (rev !== undefined && !isValidRevision(rev)) {
    throw new InvalidInputError(`Invalid revision ${quoteUntrusted(rev)}`);
  }
  return { repo, revision: rev ?? 'main', explicitRevision: rev !== undefined };
}

/** Folder name of a pulled repository: `owner--name` or `owner--name@rev` (`/` in rev → `-`). */
export function modelDirName(spec: RepoSpec): string {
  const [owner, name] = spec.repo.split('/');
  const base = `${owner}--${name}`;
  return spec.explicitRevision ? `${base}@${spec.revision.replace(/\//g, '-')}` : base;
}

/** Library id of a pulled repository: `owner/name` or `owner/name@rev`. */
export function modelIdOf(spec: RepoSpec): string {
  return spec.explicitRevision ? `${spec.repo}@${spec.revision}` : spec.repo;
}

/**
 * A file name from the hub listing: relative, forward slashes only, no `.`/`..` segments, no
 * backslash, no NUL/control characters, no leading dash or dot-only names, bounded length.
 */
export function isSafeRemoteFileName(name: string): boolean {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) return false;
  if (name.startsWith('/') || name.includes('\\') || /^[A-Za-z]:/.test(name)) return false;
  if (/[\u0000-\u001f\u007f]/.test(name)) return false;
  const segs = name.split('/');
  for (const seg of segs) {
    if (seg === '' || seg === '.' || seg === '..' || seg.includes('..')) return false;
    if (!/^[\w.@-]+$/.test(seg)) return false;
  }
  return true;
}

/**
 * A name that tries to leave the target directory (absolute, drive letter, backslash, `..`
 * segment, NUL/control characters). A listing containing one is hostile or broken as a whole.
 */
export function isHostileFileName(name: string): boolean {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) return true;
  if (name.startsWith('/') || name.startsWith('~') || name.includes('\\') || /^[A-Za-z]:/.test(name)) return true;
  if (/[\u0000-\u001f\u007f]/.test(name)) return true;
  return name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '');
}

/**
 * Joins a validated relative name onto a base directory and proves the result stays inside it.
 * Throws InvalidInputError otherwise.
 */
export function safeJoin(baseDir: string, relName: string): string {
  if (!isSafeRemoteFileName(relName)) throw new InvalidInputError(`Unsafe file name ${quoteUntrusted(relName)}`);
  const base = path.resolve(baseDir);
  const full = path.resolve(base, relName);
  const rel = path.relative(base, full);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new InvalidInputError(`Unsafe file name ${quoteUntrusted(relName)}`);
  }
  return full;
}

export { isInside } from '../common/paths.ts';
