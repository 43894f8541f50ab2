// Remote models carry secrets (an upstream API key, header values such as tokens). They are stored
// like our own API key: never sent back to a page, never erased by a plain save of the form.
//   mask(values)            → the document with every remote's apiKey and header values blanked, and
//                             which of them are set (so the page can say "stored").
//   restore(next, stored)   → a saved document where a blank secret means "unchanged" for a remote of
//                             the same id; `clear` lists the ids whose stored secrets are to be dropped.
import type { RemoteModelSetting } from './schema.ts';

export interface RemoteSecretsSet {
  [id: string]: { apiKey: boolean; headers: string[] };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function remotesOf(values: Obj): Obj[] {
  return Array.isArray(values.remotes) ? (values.remotes as unknown[]).filter(isObj) : [];
}

export function maskRemoteSecrets(values: Obj): { values: Obj; set: RemoteSecretsSet } {
  const set: RemoteSecretsSet = {};
  if (!Array.isArray(values.remotes)) return { values, set };
  const masked = (values.remotes as unknown[]).map((r) => {
    if (!isObj(r)) return r;
    const id = typeof r.id === 'string' ? r.id : '';
    const out: Obj = { ...r };
    const headersSet: string[] = [];
    if (isObj(r.headers)) {
      const h: Obj = {};
      for (const [k, v] of Object.entries(r.headers)) {
        h[k] = '';
        if (typeof v === 'string' && v !== '') headersSet.push(k);
      }
      out.headers = h;
    }
    const keySet = typeof r.apiKey === 'string' && r.apiKey !== '';
    if ('apiKey' in out) out.apiKey = '';
    if (id) set[id] = { apiKey: keySet, headers: headersSet };
    return out;
  });
  return { values: { ...values, remotes: masked }, set };
}

export function restoreRemoteSecrets(next: Obj, stored: Obj, clear: readonly string[] = []): Obj {
  if (!Array.isArray(next.remotes)) return next;
  const old = new Map<string, Obj>();
  for (const r of remotesOf(stored)) if (typeof r.id === 'string') old.set(r.id, r);
  const remotes = (next.remotes as unknown[]).map((r) => {
    if (!isObj(r) || typeof r.id !== 'string') return r;
    const prev = clear.includes(r.id) ? undefined : old.get(r.id);
    const out: Obj = { ...r };
    if ((out.apiKey === undefined || out.apiKey === '') && typeof prev?.apiKey === 'string' && prev.apiKey !== '') out.apiKey = prev.apiKey;
    if (out.apiKey === '') delete out.apiKey;
    if (isObj(out.headers)) {
      const h: Obj = {};
      const prevH = isObj(prev?.headers) ? prev.headers : {};
      for (const [k, v] of Object.entries(out.headers)) {
        const keep = v === '' && typeof prevH[k] === 'string' ? prevH[k] : v;
        if (keep !== '') h[k] = keep;
      }
      out.headers = h;
    }
    return out;
  });
  return { ...next, remotes };
}

/** Every secret string of the remotes (for log scrubbing and leak tests). */
export function remoteSecretValues(remotes: readonly RemoteModelSetting[]): string[] {
  const out: string[] = [];
  for (const r of remotes) {
    if (r.apiKey) out.push(r.apiKey);
    for (const v of Object.values(r.headers ?? {})) if (v) out.push(v);
  }
  return out;
}
