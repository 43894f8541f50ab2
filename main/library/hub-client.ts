// Minimal Hugging Face hub client over Node's own fetch. Chosen over `@huggingface/hub` because it
// is not installed, and we need exact control over three things the library hides: following
// redirects by hand (so the Authorization header is dropped when the hub sends us to its CDN host),
// Range requests with 206-vs-200 handling for resume, and error mapping to messages a user can act
// on. The surface we use is small and documented: the model-info API with `?blobs=true` (file
// sizes + LFS sha256) and the `resolve` endpoint.
import { isHostileFileName, isSafeRemoteFileName, isValidRepoId, isValidRevision, quoteUntrusted, InvalidInputError } from './validate.ts';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
const MAX_REDIRECTS = 5;
const MAX_INFO_BYTES = 8 * 1024 * 1024;

export type HubErrorCode =
  | 'unauthorized' // 401/403: gated, private, or (for anonymous users) missing
  | 'not_found' // 404: repo, revision or file missing
  | 'rate_limited' // 429
  | 'server_error' // 5xx
  | 'network' // connection refused/reset/dropped, timeouts
  | 'bad_response' // something the hub should never send (bad JSON, bad Content-Range…)
  | 'integrity' // size or sha256 mismatch
  | 'cancelled'
  | 'invalid_input'
  | 'busy' // another pull of the same model is running
  | 'no_space'
  | 'io_error'; // the local disk refused a write/rename (permissions, disk full…)

export class HubError extends Error {
  readonly code: HubErrorCode;
  readonly retryable: boolean;
  /** From Retry-After, in milliseconds. */
  readonly retryAfterMs?: number;
  readonly status?: number;
  constructor(code: HubErrorCode, message: string, opts: { retryable?: boolean; retryAfterMs?: number; status?: number } = {}) {
    super(message);
    this.name = 'HubError';
    this.code = code;
    this.retryable = opts.retryable ?? (code === 'network' || code === 'server_error' || code === 'rate_limited');
    this.retryAfterMs = opts.retryAfterMs;
    this.status = opts.status;
  }
}

export interface HubOptions {
  /** Defaults to $HF_ENDPOINT, then https://huggingface.co. */
  endpoint?: string;
  /** Defaults to $HF_TOKEN. Sent only to the hub's own origin. */
  token?: string;
  /** Per-request connect/headers timeout in ms (default 30 s). */
  timeoutMs?: number;
}

export interface RepoFile {
  /** Path inside the repository (validated: relative, no `..`). */
  path: string;
  size: number;
  /** sha256 of the content, for LFS files. */
  sha256?: string;
}

export interface RepoInfo {
  repo: string;
  revision: string;
  /** The commit the revision pointed to; every file is fetched at this commit so they match. */
  commit: string;
  files: RepoFile[];
}

export function hubEndpoint(opts: HubOptions = {}): URL {
  const raw = opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new HubError('invalid_input', 'HF_ENDPOINT is not a valid URL', { retryable: false });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new HubError('invalid_input', 'HF_ENDPOINT must be an http(s) URL', { retryable: false });
  }
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

function hubToken(opts: HubOptions): string | undefined {
  const t = opts.token ?? process.env.HF_TOKEN;
  return t && t.trim() ? t.trim() : undefined;
}

function parseRetryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs) && secs >= 0) return Math.min(secs * 1000, 120_000);
  const when = Date.parse(v);
  if (Number.isFinite(when)) return Math.max(0, Math.min(when - Date.now(), 120_000));
  return undefined;
}

/** Maps a non-2xx response to a HubError with a message the user can act on. */
export function errorForStatus(res: Response, what: string): HubError {
  const status = res.status;
  const hubCode = res.headers.get('x-error-code') ?? '';
  if (status === 401 || status === 403) {
    const gated = hubCode === 'GatedRepo' || status === 403;
    return new HubError(
      'unauthorized',
      gated
        ? `Access to ${what} was refused (HTTP ${status}): the repository is gated. Accept its license on the Hugging Face website and set HF_TOKEN to a token of that account.`
        : `Access to ${what} was refused (HTTP ${status}): the repository is private, gated or does not exist. If it is gated, accept the license and set HF_TOKEN; otherwise check the id.`,
      { retryable: false, status },
    );
  }
  if (status === 404) {
    const which =
      hubCode === 'RevisionNotFound' ? 'revision not found' : hubCode === 'EntryNotFound' ? 'file not found' : 'not found';
    return new HubError('not_found', `${what}: ${which} on the hub (HTTP 404). Check the repository id and revision.`, {
      retryable: false,
      status,
    });
  }
  if (status === 429) {
    return new HubError('rate_limited', `The hub is rate-limiting requests for ${what} (HTTP 429)`, {
      retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
      status,
    });
  }
  if (status >= 500) {
    return new HubError('server_error', `The hub answered HTTP ${status} for ${what}`, {
      retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
      status,
    });
  }
  if (status === 416) {
    return new HubError('bad_response', `The hub refused the byte range for ${what} (HTTP 416)`, { retryable: true, status });
  }
  return new HubError('bad_response', `The hub answered HTTP ${status} for ${what}`, { retryable: false, status });
}

const LOCAL_SYSCALLS = new Set(['open', 'write', 'read', 'close', 'rename', 'mkdir', 'fsync', 'unlink', 'rmdir', 'rm', 'stat', 'lstat', 'statfs', 'ftruncate', 'copyfile', 'scandir', 'realpath']);

/** Wraps fetch/stream failures; keeps our own errors and aborts as they are. */
export function toHubError(err: unknown, what: string, signal?: AbortSignal): HubError {
  if (err instanceof HubError) return err;
  if (err instanceof InvalidInputError) return new HubError('invalid_input', err.message, { retryable: false });
  if (signal?.aborted) return new HubError('cancelled', 'Download cancelled', { retryable: false });
  const sys = err as { syscall?: unknown; code?: unknown };
  if (typeof sys?.syscall === 'string' && LOCAL_SYSCALLS.has(sys.syscall)) {
    // A local file-system failure is not a network problem and retrying will not fix it.
    const code = typeof sys.code === 'string' ? sys.code : 'error';
    return new HubError(code === 'ENOSPC' ? 'no_space' : 'io_error', `Could not write the downloaded files (${code})`, { retryable: false });
  }
  const name = (err as Error)?.name;
  if (name === 'TimeoutError') return new HubError('network', `Timed out talking to the hub (${what})`);
  if (name === 'AbortError') return new HubError('network', `The transfer of ${what} stalled and was restarted`);
  const cause = (err as { cause?: { code?: string } })?.cause;
  const code = cause?.code ?? (err as { code?: string })?.code;
  return new HubError('network', `Network error while fetching ${what}${code ? ` (${code})` : ''}`);
}

function authHeaders(hubOrigin: string, target: URL, token: string | undefined): Record<string, string> {
  // Only the hub's own origin ever sees the token: a redirect to the CDN (another host) must not
  // carry it, as that host neither needs nor should see user credentials.
  return token && target.origin === hubOrigin ? { authorization: `Bearer ${token}` } : {};
}

/**
 * GET with redirects followed by hand (max 5). Returns the final non-redirect response.
 * Combines the caller's abort signal with a timeout that covers connect + headers only.
 */
export async function hubGet(
  url: URL,
  what: string,
  opts: HubOptions & { headers?: Record<string, string>; signal?: AbortSignal },
): Promise<Response> {
  const hub = hubEndpoint(opts);
  const token = hubToken(opts);
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new DOMException('timeout', 'TimeoutError')), opts.timeoutMs ?? 30_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout.signal]) : timeout.signal;
    let res: Response;
    try {
      res = await fetch(current, {
        redirect: 'manual',
        signal,
        headers: {
          'user-agent': 'mlx-bar/0.1 (+hub-client)',
          ...(opts.headers ?? {}),
          ...authHeaders(hub.origin, current, token),
        },
      });
    } catch (err) {
      if (timeout.signal.aborted && !opts.signal?.aborted) throw new HubError('network', `Timed out talking to the hub (${what})`);
      throw toHubError(err, what, opts.signal);
    } finally {
      clearTimeout(timer);
    }
    if (res.status >= 300 && res.status < 400 && res.status !== 304) {
      const loc = res.headers.get('location');
      await res.body?.cancel().catch(() => {});
      if (!loc) throw new HubError('bad_response', `The hub redirected ${what} without a location`, { retryable: false });
      const next = new URL(loc, current);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new HubError('bad_response', `The hub redirected ${what} to an unsupported scheme`, { retryable: false });
      }
      // An https → http downgrade would expose the download to tampering (sha256 still protects
      // LFS files, but not small JSON files).
      if (current.protocol === 'https:' && next.protocol === 'http:') {
        throw new HubError('bad_response', `The hub redirected ${what} from https to http; refusing`, { retryable: false });
      }
      current = next;
      continue;
    }
    return res;
  }
  throw new HubError('bad_response', `Too many redirects for ${what}`, { retryable: false });
}

async function readJsonBounded(res: Response, what: string): Promise<unknown> {
  const reader = res.body?.getReader();
  if (!reader) throw new HubError('bad_response', `Empty answer from the hub for ${what}`, { retryable: false });
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_INFO_BYTES) {
      await reader.cancel().catch(() => {});
      throw new HubError('bad_response', `The hub's answer for ${what} is too large`, { retryable: false });
    }
    chunks.push(value);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HubError('bad_response', `The hub's answer for ${what} is not valid JSON`, { retryable: true });
  }
}

/** Lists a repository's files at a revision, with sizes and LFS sha256 (`?blobs=true`). */
export async function getRepoInfo(
  repo: string,
  revision: string,
  opts: HubOptions & { signal?: AbortSignal } = {},
): Promise<RepoInfo> {
  if (!isValidRepoId(repo)) throw new HubError('invalid_input', `Invalid repository id ${quoteUntrusted(repo)}`, { retryable: false });
  if (!isValidRevision(revision)) throw new HubError('invalid_input', `Invalid revision ${quoteUntrusted(revision)}`, { retryable: false });
  const what = `${repo}@${revision}`;
  const url = new URL(`api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`, hubEndpoint(opts));
  const res = await hubGet(url, what, opts);
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw errorForStatus(res, what);
  }
  let body: unknown;
  try {
    body = await readJsonBounded(res, what);
  } catch (err) {
    throw toHubError(err, what, opts.signal);
  }
  const b = body as { sha?: unknown; siblings?: unknown };
  if (!b || typeof b !== 'object' || !Array.isArray(b.siblings)) {
    throw new HubError('bad_response', `The hub's answer for ${what} has no file list`, { retryable: false });
  }
  const commit = typeof b.sha === 'string' && /^[0-9a-f]{40}$/.test(b.sha) ? b.sha : revision;
  const files: RepoFile[] = [];
  const rejected: string[] = [];
  for (const s of b.siblings as Array<Record<string, unknown>>) {
    const name = s?.rfilename;
    if (typeof name !== 'string' || isHostileFileName(name)) {
      rejected.push(typeof name === 'string' ? name : '?');
      continue;
    }
    // Unusual but harmless names (spaces in a docs folder…) are skipped: we never fetch them.
    if (!isSafeRemoteFileName(name)) continue;
    const lfs = s.lfs as { sha256?: unknown; size?: unknown } | undefined;
    const size = typeof lfs?.size === 'number' ? lfs.size : s.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new HubError('bad_response', `The hub listed ${quoteUntrusted(name)} without a valid size`, { retryable: false });
    }
    const sha = typeof lfs?.sha256 === 'string' ? lfs.sha256.toLowerCase() : undefined;
    if (sha !== undefined && !/^[0-9a-f]{64}$/.test(sha)) {
      throw new HubError('bad_response', `The hub listed ${quoteUntrusted(name)} with a malformed sha256`, { retryable: false });
    }
    files.push({ path: name, size, sha256: sha });
  }
  if (rejected.length > 0) {
    // A hostile or broken listing: refuse the whole repository rather than silently skipping.
    throw new HubError(
      'bad_response',
      `The hub listing for ${what} contains unsafe file names (${rejected.slice(0, 3).map(quoteUntrusted).join(', ')}); refusing to download`,
      { retryable: false },
    );
  }
  return { repo, revision, commit, files };
}

/** URL of one file at a commit: `{endpoint}/{repo}/resolve/{rev}/{path}`. */
export function resolveUrl(repo: string, commit: string, file: string, opts: HubOptions = {}): URL {
  if (!isSafeRemoteFileName(file)) throw new HubError('invalid_input', `Unsafe file name ${quoteUntrusted(file)}`, { retryable: false });
  const encPath = file.split('/').map(encodeURIComponent).join('/');
  return new URL(`${repo}/resolve/${encodeURIComponent(commit)}/${encPath}`, hubEndpoint(opts));
}
