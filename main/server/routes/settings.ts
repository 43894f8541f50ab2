// Settings over HTTP for the dashboard in a plain browser (headless `mlx-bar serve` only):
//   GET /v1/settings  → { values, issues, sources, overrides, apiKeySet, restartRequired, file }
//   PUT /v1/settings  ← { values, clearApiKey? } → { ok, issues, restartRequired, movedAside }
// The file is <dataDir>/config.json, read and written by the desktop shell's own SettingsService
// (read without repairing, validate against THE schema, move a bad file aside, write through conf:
// the store electron-store is built on), so both front ends see and write the same document.
//
// API key: never sent back. GET answers `apiKey: ""` + `apiKeySet`; a PUT whose apiKey is "" or
// absent keeps the stored key, so saving the form can never erase it by accident; only
// `clearApiKey: true` removes it. A PUT is a whole document: absent settings get their defaults.
//
// Live settings: the composition root names the settings it can apply while serving (`live`, e.g.
// maxConcurrent: generation slots + the engine's batch size); a saved change to one of them is
// applied at once and reported in `applied`. Every other saved value that differs from what this
// launch runs with (and is not overridden by a flag or environment variable) is listed in
// `restartRequired`.
//
// Stricter than the chat routes, because these settings can open the server to the network (host,
// allowedOrigins, apiKey): on top of the server's Host/Origin/API-key gates,
//   - only the server's own origin (the dashboard it serves) may call them: any other browser Origin,
//     including one admitted for chat through allowedOrigins (an editor webview), and any request a
//     browser marks as cross-site (Sec-Fetch-Site), get 403 forbidden_origin;
//   - PUT needs Content-Type: application/json (else 415, also without a body) and a small body;
//   - answers carry no paths or stacks (fixed messages; the file is called "config.json").
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../common/errors.ts';
import { sanitizeMessage } from '../../common/sanitize.ts';
import { SettingsService, validateSettingsDocument, withDefaults, type ModelValueCheck } from '../../settings/service.ts';
import { SETTINGS_KEYS, type Settings, type StoredSettings } from '../../settings/schema.ts';
import { LEAF_KEYS, SETTING_SPECS, getSetting, type SettingSource } from '../../settings/load.ts';
import { maskRemoteSecrets, restoreRemoteSecrets, type RemoteSecretsSet } from '../../settings/remote-secrets.ts';
import type { SettingsIssue } from '../../../preload/api.ts';
import { isLoopbackHost } from '../config.ts';
import type { ServerHooks } from '../hooks.ts';

export const SETTINGS_ROUTE = '/v1/settings';
/** A settings document is a few KB; the file itself is refused above 1 MB when read. */
export const SETTINGS_BODY_LIMIT = 256 * 1024;

export interface SettingsApiOptions {
  /** Folder holding config.json. */
  dataDir: string;
  /** Where each setting of this launch came from (loadSettings().sources). */
  sources: Record<string, SettingSource>;
  /** What this launch runs with (flags > env > file > defaults). */
  running: Settings;
  /** The host the server binds (its own origin is http://<host>:<port> or a loopback name). */
  host: string;
  log?: (line: string) => void;
  /** The `model` value check (a model folder or a library id), passed in by the composition root. */
  checkModel?: ModelValueCheck;
  /**
   * Top-level settings this launch applies without a restart: after a save, `apply` gets those whose
   * saved value differs from what runs now and that no flag or environment variable overrides.
   */
  live?: { keys: readonly (keyof Settings)[]; apply(changed: Partial<Settings>): void };
}

export interface SettingsGetBody {
  values: Record<string, unknown>;
  issues: SettingsIssue[];
  sources: Record<string, SettingSource>;
  /** Setting path → the flag or environment variable that overrides the file in this launch. */
  overrides: Record<string, string>;
  apiKeySet: boolean;
  /** Remote model id → which of its secrets (apiKey, header names) are stored; their values are never sent. */
  remoteSecretsSet: RemoteSecretsSet;
  restartRequired: string[];
  file: 'missing' | 'ok' | 'invalid' | 'corrupt';
}

export interface SettingsPutBody {
  ok: boolean;
  issues: SettingsIssue[];
  restartRequired: string[];
  /** Saved settings that took effect at once (see SettingsApiOptions.live). */
  applied: string[];
  /** The stored file was invalid or not JSON: it was kept aside as config.json.invalid-<time>. */
  movedAside: boolean;
}

const isPlainObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
const KNOWN = new Set<string>(SETTINGS_KEYS);
/** "/responseCache/maxEntries" → "responseCache.maxEntries" ('' stays ''). */
export const pointerToSettingPath = (p: string) => p.replace(/^\//, '').split('/').join('.');

function sendError(reply: FastifyReply, err: ApiError, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(err.status).type('application/json; charset=utf-8').send({ ...err.toJSON(), ...extra });
}

function formatHost(h: string): string {
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

/** The origins of this server itself (as the main gate lists them) on the bound port. */
function ownOrigins(app: FastifyInstance, host: string): string[] {
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') return [];
  const p = addr.port;
  return [`http://127.0.0.1:${p}`, `http://localhost:${p}`, `http://[::1]:${p}`, `http://${formatHost(host)}:${p}`].map((o) => o.toLowerCase());
}

const sameValue = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Refuses everything but the dashboard this server serves (see the header comment). */
function ownOriginGate(app: FastifyInstance, bindHost: string) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin;
    const site = request.headers['sec-fetch-site'];
    const refuse = () =>
      sendError(reply, new ApiError('forbidden_origin', 'Settings can only be read and changed from this server’s own dashboard', { param: 'origin' }));
    if (origin !== undefined) {
      const o = origin.toLowerCase();
      const host = String(request.headers.host ?? '').toLowerCase();
      // Same origin as the request's Host (what a page's own fetch sends) AND one of the server's origins.
      if (o !== `http://${host}` || !ownOrigins(app, bindHost).includes(o)) return refuse();
    }
    if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return refuse();
  };
}

/** The PUT body's shape: `{ values, clearApiKey?, clearRemoteKeys? }`, else a 400 naming the field. */
function putBody(body: unknown): { values: Record<string, unknown>; clearApiKey?: boolean; clearRemoteKeys?: string[] } {
  if (!isPlainObject(body)) throw new ApiError('invalid_json', 'Request body must be a JSON object');
  for (const k of Object.keys(body)) {
    if (k !== 'values' && k !== 'clearApiKey' && k !== 'clearRemoteKeys') throw new ApiError('unsupported_parameter', `Unknown field "${k.slice(0, 40)}"; send { values, clearApiKey?, clearRemoteKeys? }`, { param: k.slice(0, 40) });
  }
  if (body.values === undefined) throw new ApiError('missing_required_parameter', 'Missing "values" (the settings document)', { param: 'values' });
  if (!isPlainObject(body.values)) throw new ApiError('invalid_value', '"values" must be an object', { param: 'values' });
  if (body.clearApiKey !== undefined && typeof body.clearApiKey !== 'boolean') throw new ApiError('invalid_value', '"clearApiKey" must be true or false', { param: 'clearApiKey' });
  const clearRemote = body.clearRemoteKeys;
  if (clearRemote !== undefined && !(Array.isArray(clearRemote) && clearRemote.length <= 64 && clearRemote.every((x) => typeof x === 'string'))) {
    throw new ApiError('invalid_value', '"clearRemoteKeys" must be a list of remote model ids', { param: 'clearRemoteKeys' });
  }
  return body as { values: Record<string, unknown>; clearApiKey?: boolean; clearRemoteKeys?: string[] };
}

/** One launch's settings API: what it runs with, where each value came from, and the file's service. */
class SettingsApi {
  private readonly running: Settings;
  private readonly log: (line: string) => void;
  /** Setting path → the flag or environment variable that overrides the file in this launch. */
  private readonly overrides: Record<string, string> = {};
  private readonly sources: Record<string, SettingSource> = {};
  // Writes go through conf (imported on first save: atomically's exit hooks are not needed before).
  private write: ((v: StoredSettings) => void) | null = null;

  constructor(private readonly opts: SettingsApiOptions) {
    this.running = structuredClone(opts.running);
    this.log = opts.log ?? (() => {});
    for (const spec of SETTING_SPECS) {
      const src = opts.sources[spec.key];
      if (src === 'flag') this.overrides[spec.key] = spec.flag;
      else if (src === 'env' && spec.env) this.overrides[spec.key] = spec.env;
    }
    for (const k of LEAF_KEYS) this.sources[k] = opts.sources[k] ?? 'default';
  }

  private service(): SettingsService {
    return new SettingsService({
      dataDir: this.opts.dataDir,
      ...(this.opts.checkModel ? { checkModel: this.opts.checkModel } : {}),
      write: (v) => {
        if (!this.write) throw new Error('settings store not loaded');
        this.write(v);
      },
    });
  }

  /** Stored values a restart would put into effect: they differ from this launch and no flag/env overrides them. */
  private pendingRestart(stored: Record<string, unknown>): string[] {
    return LEAF_KEYS.filter((k) => !this.overrides[k] && !sameValue(getSetting(stored as unknown as StoredSettings, k), getSetting(this.running, k)));
  }

  /** Applies the live settings a save changed; what runs now then holds their new values. */
  private applyLive(saved: Settings): string[] {
    // (running is this launch's copy: a live key's new value is what runs from now on.)
    const live = this.opts.live;
    if (!live) return [];
    const changed: Partial<Settings> = {};
    for (const k of live.keys) {
      if (this.overrides[k] || sameValue(saved[k], this.running[k])) continue;
      (changed as Record<string, unknown>)[k] = saved[k];
    }
    const keys = Object.keys(changed);
    if (keys.length === 0) return [];
    try {
      live.apply(changed);
    } catch (err) {
      this.log(`settings: applying ${keys.join(', ')} failed (${sanitizeMessage(err)}); restart to apply`);
      return [];
    }
    Object.assign(this.running, changed);
    return keys;
  }

  /** GET: the stored document over defaults, secrets masked. */
  read(): SettingsGetBody {
    const snap = this.service().read();
    const known: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(snap.values)) if (KNOWN.has(k)) known[k] = v;
    const { values, set: remoteSecretsSet } = maskRemoteSecrets(known);
    const apiKeySet = typeof values.apiKey === 'string' && values.apiKey !== '';
    values.apiKey = '';
    return {
      values,
      // Never an issue about the key that could quote it (ajv messages do not quote values).
      issues: snap.issues,
      sources: this.sources,
      overrides: this.overrides,
      apiKeySet,
      remoteSecretsSet,
      // An invalid file is not what a restart would run (it would be repaired first): nothing pending.
      restartRequired: snap.file === 'ok' || snap.file === 'missing' ? this.pendingRestart(snap.values) : [],
      file: snap.file,
    };
  }

  /** PUT: validates the whole document and saves it, or answers 400 with every issue. */
  async save(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const body = putBody(request.body);
    const clearRemote = body.clearRemoteKeys;
    let values = body.values;

    const issues: SettingsIssue[] = [];
    for (const k of Object.keys(values)) if (!KNOWN.has(k)) issues.push({ path: `/${k.slice(0, 64)}`, message: 'is not a known setting' });

    if (!this.write) {
      const { openSettingsStore } = await import('../../settings/store.ts');
      this.write = (v) => {
        openSettingsStore(this.opts.dataDir).store = v;
      };
    }
    // `model` is checked as what it is (a model folder or a library id), not only as a string: a
    // value such as "/etc" or "file:///etc" must never be saved (the next launch could not start).
    // Absent from a PUT (a whole document) it is the default "", which needs no check.
    const modelIssue = await this.service().checkModel(values);
    // From here on everything is synchronous: concurrent PUTs cannot interleave between read and write.
    const svc = this.service();
    const before = svc.read();
    // Remote secrets, like the key: a blank one in the form means "unchanged".
    values = restoreRemoteSecrets(values, before.values, clearRemote ?? []);
    const doc = documentToSave(values, before, body.clearApiKey === true, issues);
    issues.push(...documentIssues(doc, modelIssue, issues));
    if (issues.length) {
      const first = issues[0];
      const param = pointerToSettingPath(first.path) || null;
      const err = new ApiError('invalid_value', `${param ?? 'settings'} ${first.message}`.slice(0, 300), { param });
      return sendError(reply, err, { ok: false, issues, restartRequired: [] });
    }

    const movedAside = before.file === 'invalid' || before.file === 'corrupt';
    let result;
    try {
      result = svc.save(doc);
    } catch (err) {
      this.log(`settings: saving config.json failed: ${sanitizeMessage(err)}`);
      throw new ApiError('internal_error', 'The settings file could not be written');
    }
    if (!result.ok) {
      this.log('settings: saving config.json failed');
      return sendError(reply, new ApiError('internal_error', 'The settings file could not be written'), { ok: false, issues: result.issues, restartRequired: [] });
    }
    // The document passed the schema above (over defaults): it is a whole Settings document.
    const applied = this.applyLive(withDefaults(doc) as unknown as Settings);
    const restartRequired = this.pendingRestart(svc.read().values);
    this.log(
      `settings: saved from the dashboard${movedAside ? ' (the invalid config.json was kept aside)' : ''}${applied.length ? `; applied now: ${applied.join(', ')}` : ''}${restartRequired.length ? `; restart to apply: ${restartRequired.join(', ')}` : ''}`,
    );
    const out: SettingsPutBody = { ok: true, issues: [], restartRequired, applied, movedAside };
    return reply.header('cache-control', 'no-store').send(out);
  }
}

/**
 * The issues of the document to save, after the PUT's own (`already`): the schema over defaults,
 * the `model` check, and the launch's bind policy (resolveServerConfig: beyond loopback only with a key).
 */
function documentIssues(doc: Record<string, unknown>, modelIssue: SettingsIssue | null, already: readonly SettingsIssue[]): SettingsIssue[] {
  const full = withDefaults(doc);
  const issues = [...validateSettingsDocument(full)];
  const has = (path: string) => already.some((i) => i.path === path) || issues.some((i) => i.path === path);
  if (modelIssue && !has('/model')) issues.push(modelIssue);
  if (typeof full.host === 'string' && !isLoopbackHost(full.host) && full.apiKey === '' && !has('/host')) {
    issues.push({ path: '/host', message: 'a host other than loopback (127.0.0.1, ::1, localhost) needs an API key' });
  }
  return issues;
}

export function registerSettingsRoutes(app: FastifyInstance, opts: SettingsApiOptions): void {
  const api = new SettingsApi(opts);
  const ownOriginOnly = ownOriginGate(app, opts.host);
  app.route({
    method: ['GET', 'HEAD'],
    url: SETTINGS_ROUTE,
    onRequest: ownOriginOnly,
    handler: async (_request, reply) => reply.header('cache-control', 'no-store').send(api.read()),
  });
  app.put(SETTINGS_ROUTE, { bodyLimit: SETTINGS_BODY_LIMIT, onRequest: [ownOriginOnly, requireJson] }, (request, reply) => api.save(request, reply));
  // Known route, other methods: 405 + Allow (the server's table does not know this route).
  app.route({
    method: ['POST', 'PATCH', 'DELETE'],
    url: SETTINGS_ROUTE,
    handler: async (request, reply) => {
      reply.header('allow', 'GET, HEAD, PUT, OPTIONS');
      return sendError(reply, new ApiError('method_not_allowed', `Method ${request.method.slice(0, 10)} is not allowed on this route`));
    },
  });
}

/**
 * The document a PUT stores: the form's known values over the unknown keys already in the file (a
 * newer version wrote them; kept as they are). The stored API key is kept unless cleared or replaced.
 */
function documentToSave(values: Record<string, unknown>, before: { file: string; values: Record<string, unknown> }, clearApiKey: boolean, issues: SettingsIssue[]): Record<string, unknown> {
  const storedKey = typeof before.values.apiKey === 'string' ? before.values.apiKey : '';
  let apiKey: unknown = values.apiKey;
  if (clearApiKey) {
    if (typeof apiKey === 'string' && apiKey !== '') issues.push({ path: '/apiKey', message: 'cannot set a new key and clear the key at once' });
    apiKey = '';
  } else if (apiKey === undefined || apiKey === '') {
    apiKey = storedKey; // keep: the form never sees the stored key, so "" means "unchanged"
  }
  const doc: Record<string, unknown> = {};
  if (before.file === 'ok' || before.file === 'invalid') Object.assign(doc, readRawUnknownKeys(before.values));
  for (const [k, v] of Object.entries(values)) if (KNOWN.has(k)) doc[k] = v;
  doc.apiKey = apiKey;
  return doc;
}

/** Top-level keys of the stored document that are not settings (kept on save, never shown). */
function readRawUnknownKeys(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (KNOWN.has(k) || k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    out[k] = v;
  }
  return out;
}

/** PUT must say it is JSON even without a body (the server's parser only sees requests with one). */
async function requireJson(request: FastifyRequest, reply: FastifyReply) {
  const ct = String(request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (ct !== 'application/json') {
    return sendError(reply, new ApiError('unsupported_media_type', 'Content-Type must be application/json'));
  }
}

/**
 * The server hooks of `mlx-bar serve` with the settings API plugged in through the route seam
 * (`metricsRoutes` registers routes inside the server before listen, so every gate applies), its
 * requests left out of the traffic metrics (they are not API traffic), and the capability
 * advertised in /health (`settings_api: true`) so the page needs no probe that 404s elsewhere.
 */
export function withSettingsApi(hooks: ServerHooks, opts: SettingsApiOptions): ServerHooks {
  return {
    ...hooks,
    async metricsRoutes(app) {
      await hooks.metricsRoutes?.(app);
      registerSettingsRoutes(app, opts);
    },
    ...(hooks.onRequestRecord
      ? { onRequestRecord: (r) => (r.route === SETTINGS_ROUTE ? undefined : hooks.onRequestRecord!(r)) }
      : {}),
    getHealth: () => ({ ...(hooks.getHealth?.() ?? {}), settings_api: true }),
  };
}
