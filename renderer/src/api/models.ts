// The Models page's HTTP calls: the library (GET /v1/models), downloads (POST /v1/models/pull,
// GET /v1/models/pulls, DELETE /v1/models/pulls/:id) and switching (POST /v1/models/load).
// In a browser the page talks to its own server (same origin); in the app window it uses the
// running server's endpoint. Errors come back as the server's readable ApiError message.

import type { PublicPullJob } from '../../../main/server/models.ts';

export interface ModelRow {
  id: string;
  sizeBytes?: number;
  architecture?: string | null;
  /** Engine family (registry name) and, for MoE, parameters active per token. */
  family?: string | null;
  activeParameters?: number | null;
  quantization?: { bits: number; groupSize: number } | null;
  dtype?: string | null;
  parameters?: number | null;
  contextLength?: number | null;
  fitsInMemory?: { fits: boolean; reason: string; contextTokens?: number } | null;
  loaded?: boolean;
  demo?: boolean;
  /** A remote model (settings `remotes`): served by another machine; `health` from its circuit breaker. */
  remote?: boolean;
  health?: 'up' | 'down' | 'probing';
}

/** A download job exactly as the server reports it (type only: nothing of main/ is bundled). */
export type PullRow = PublicPullJob;

export class ModelsApiError extends Error {
  constructor(message: string, readonly status: number, readonly code: string | null) {
    super(message);
  }
}

/** `http://127.0.0.1:8080/v1` → `http://127.0.0.1:8080`; null/undefined → same origin (''). */
export function apiBase(endpoint: string | null | undefined): string {
  if (!endpoint || location.protocol.startsWith('http')) return '';
  return endpoint.replace(/\/v1\/?$/, '');
}

/** Adds what the server's error code means for the user (gated repos need HF_TOKEN…). */
export function explainError(code: string | null, message: string): string {
  if (code === 'unauthorized' && !/HF_TOKEN/.test(message)) return `${message} Gated or private repositories need HF_TOKEN set for the server.`;
  if (code === 'invalid_api_key') return 'The server needs its API key (enter it on the Dashboard page).';
  return message;
}

export function modelsClient(base: string, apiKey: string | null) {
  async function call<T>(method: string, route: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${base}${route}`, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ModelsApiError('The server is not reachable', 0, null);
    }
    const json = (await res.json().catch(() => null)) as (T & { error?: { message?: string; code?: string } }) | null;
    if (!res.ok) {
      const code = json?.error?.code ?? null;
      throw new ModelsApiError(explainError(code, json?.error?.message ?? `HTTP ${res.status}`), res.status, code);
    }
    return json as T;
  }
  return {
    list: () => call<{ data: ModelRow[] }>('GET', '/v1/models').then((r) => (Array.isArray(r.data) ? r.data : [])),
    pulls: () => call<{ data: PullRow[] }>('GET', '/v1/models/pulls').then((r) => (Array.isArray(r.data) ? r.data : [])),
    pull: (repo: string) => call<{ job: PullRow }>('POST', '/v1/models/pull', { repo }).then((r) => r.job),
    cancel: (id: string) => call<{ job: PullRow }>('DELETE', `/v1/models/pulls/${encodeURIComponent(id)}`).then((r) => r.job),
    load: (model: string) => call<ModelRow>('POST', '/v1/models/load', { model }),
  };
}

export type ModelsClient = ReturnType<typeof modelsClient>;

/** Same rule as the server's validator (owner/name[@rev]), for an early hint in the form. */
export function looksLikeRepoId(s: string): boolean {
  const [repo, rev, extra] = s.split('@');
  if (extra !== undefined || !/^[A-Za-z0-9][\w.-]{0,95}\/[\w.-]{1,96}$/.test(repo) || repo.includes('..')) return false;
  return rev === undefined || (/^[A-Za-z0-9][\w.-]{0,99}(\/[\w.-]{1,100}){0,3}$/.test(rev) && !rev.includes('..'));
}
