// THE settings schema: one JSON Schema (draft 2020-12, validated with ajv) for every setting of
// MLX Bar. Used three ways, so they can never disagree:
//   - headless mode: loadSettings() validates <dataDir>/config.json against it (and `conf` 15 opens
//     the same file with `schema: SETTINGS_SCHEMA`);
//   - the Electron shell: `new ElectronStore({ schema: SETTINGS_SCHEMA, cwd: userData, name: 'config' })`;
//   - the dashboard: titles, descriptions, defaults and ranges are rendered from it (GET the
//     `settingsSchemaDocument()` JSON or import SETTINGS_SCHEMA).
// SETTINGS_SCHEMA is a *properties map* (the shape conf/electron-store take as `schema`); they wrap
// it in `{type:'object', properties}`. settingsRootSchema() is that full object schema.
// `dataDir` is deliberately NOT a stored setting: the settings file lives inside it.

export interface ResponseCacheSettings {
  enabled: boolean;
  maxEntries: number;
  maxBytes: number;
}
export interface PrefixCacheSettings {
  maxEntries: number;
  maxBytes: number;
  persist: boolean;
}
export interface MemorySettings {
  /** App footprint (server + engine) soft watermark in MB; 0 = use softPercent. */
  softLimitMb: number;
  hardLimitMb: number;
  /** Soft/hard watermark as % of total RAM (used when the MB form is 0). */
  softPercent: number;
  hardPercent: number;
}
/** A model served by another OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, another MLX Bar). */
export interface RemoteModelSetting {
  /** Our id for it: what clients put in `model`. */
  id: string;
  /** The upstream's OpenAI base URL, e.g. http://gpu-box:8000/v1 (http or https). */
  baseURL: string;
  /** Sent to the upstream as a Bearer token; never sent to clients, logged or put in a child environment. */
  apiKey?: string;
  /** The upstream's own model name (default: id). */
  model?: string;
  /** Extra request headers for the upstream (values treated as secrets). */
  headers?: Record<string, string>;
  /** Requests forwarded at the same time (more wait in a queue of maxQueue). */
  maxConcurrent?: number;
  maxQueue?: number;
  /** A local model (library id) that answers while this upstream is down. */
  fallback?: string;
}
/** auto = from the MLX capability probe; native = packed 4/8-bit weights (+ half compute where the probe verified it); float32 = expand everything. */
export type DtypePolicySetting = 'auto' | 'native' | 'float32';
export type LogLevel = 'silent' | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
export type Theme = 'system' | 'light' | 'dark';

/** Every stored setting (what config.json holds once defaults are applied). */
export interface StoredSettings {
  host: string;
  port: number;
  apiKey: string;
  model: string;
  allowedOrigins: string[];
  /** 'auto' = the model's own limit capped by what fits in memory; a number caps it; 0 = the model's limit. */
  contextLength: number | 'auto';
  defaultMaxTokens: number;
  maxConcurrent: number;
  maxQueue: number;
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  responseCache: ResponseCacheSettings;
  prefixCache: PrefixCacheSettings;
  memory: MemorySettings;
  idleUnloadMinutes: number;
  remotes: RemoteModelSetting[];
  dtypePolicy: DtypePolicySetting;
  logLevel: LogLevel;
  startAtLogin: boolean;
  theme: Theme;
}

/** Stored settings plus the launch-only data directory. */
export interface Settings extends StoredSettings {
  dataDir: string;
}

const MB = 1024 * 1024;
const GB = 1024 * MB;

export const DEFAULT_SETTINGS: StoredSettings = {
  host: '127.0.0.1',
  port: 8080,
  apiKey: '',
  model: '',
  allowedOrigins: [],
  contextLength: 'auto',
  defaultMaxTokens: 2048,
  // Continuous batching: 4 concurrent streams gave 2.2–2.9x one stream's aggregate tok/s and 6–13x
  // lower TTFT p95 of the queued requests on the Qwen3-0.6B shape (bench 'batching'; README).
  maxConcurrent: 4,
  maxQueue: 16,
  bodyLimitBytes: 8 * MB,
  requestTimeoutMs: 30_000,
  responseCache: { enabled: false, maxEntries: 256, maxBytes: 256 * MB },
  prefixCache: { maxEntries: 8, maxBytes: 2 * GB, persist: true },
  memory: { softLimitMb: 0, hardLimitMb: 0, softPercent: 75, hardPercent: 90 },
  idleUnloadMinutes: 5,
  remotes: [],
  dtypePolicy: 'auto',
  logLevel: 'info',
  startAtLogin: false,
  theme: 'system',
};

type JsonSchema = Record<string, unknown>;

/** The properties map (conf / electron-store `schema` option). */
export const SETTINGS_SCHEMA: Record<keyof StoredSettings, JsonSchema> = {
  host: {
    type: 'string',
    title: 'Host',
    description: 'Interface the API listens on. Loopback (127.0.0.1, ::1, localhost) unless an API key is set.',
    minLength: 1,
    maxLength: 253,
    pattern: '^[^\\s/?#@]+$',
    default: DEFAULT_SETTINGS.host,
  },
  port: {
    type: 'integer',
    title: 'Port',
    description: 'TCP port of the API (1–65535; ports below 1024 need privileges; 0 picks a free port).',
    minimum: 0,
    maximum: 65535,
    default: DEFAULT_SETTINGS.port,
  },
  apiKey: {
    type: 'string',
    title: 'API key',
    description: 'When set, clients must send "Authorization: Bearer <key>". Required for a non-loopback host. Empty = no key.',
    pattern: '^$|^[\\x21-\\x7e]{8,256}$',
    default: DEFAULT_SETTINGS.apiKey,
  },
  model: {
    type: 'string',
    title: 'Model',
    description: 'Model folder (mlx-community layout) or the id of a model in the library. Empty = none selected.',
    maxLength: 4096,
    default: DEFAULT_SETTINGS.model,
  },
  allowedOrigins: {
    type: 'array',
    title: 'Allowed browser origins',
    description:
      'Browser origins allowed to call the API: exact (http://localhost:5173), any port of one web host (http://localhost:*), or a prefix ending in * for app schemes (vscode-webview://*). A wildcard web origin (http://*, https://*, http://localhost*) would admit every site and is refused like *. Editors and CLIs send no Origin and are always allowed.',
    // http(s): a host, optionally `:*` for any port — never a wildcard host (any web site could match it);
    // other schemes (vscode-webview, app, chrome-extension…) cannot be minted by a web page: prefix `*` ok.
    items: { type: 'string', minLength: 1, maxLength: 256, pattern: '^(?:https?://[^\\s*/]+(?::\\*)?|(?!https?:)[a-z][a-z0-9+.-]*://[^\\s*]*\\*?)$' },
    maxItems: 64,
    uniqueItems: true,
    default: DEFAULT_SETTINGS.allowedOrigins,
  },
  contextLength: {
    // 'auto' or a number (older config files hold numbers: still valid, same meaning as before).
    type: ['integer', 'string'],
    pattern: '^auto$',
    title: 'Context length',
    description:
      'Maximum tokens (prompt + completion) per request. "auto": the model’s own limit, capped by what fits in memory next to the weights (KV cache bytes per token from the model’s shape). A number caps it (the model’s limit applies if smaller); 0 = the model’s limit.',
    minimum: 0,
    maximum: 1_048_576,
    default: DEFAULT_SETTINGS.contextLength,
  },
  defaultMaxTokens: {
    type: 'integer',
    title: 'Default max tokens',
    description: 'Completion length when a request sets no max_tokens (always clamped to the remaining context).',
    minimum: 1,
    maximum: 1_048_576,
    default: DEFAULT_SETTINGS.defaultMaxTokens,
  },
  maxConcurrent: {
    type: 'integer',
    title: 'Concurrent generations',
    description: 'Generations computed at the same time: their decode steps share one forward pass (continuous batching). 1 = one at a time.',
    minimum: 1,
    maximum: 16,
    default: DEFAULT_SETTINGS.maxConcurrent,
  },
  maxQueue: {
    type: 'integer',
    title: 'Queue length',
    description: 'Requests that may wait for a slot; beyond it clients get 503 with Retry-After.',
    minimum: 0,
    maximum: 1024,
    default: DEFAULT_SETTINGS.maxQueue,
  },
  bodyLimitBytes: {
    type: 'integer',
    title: 'Request body limit (bytes)',
    description: 'Larger request bodies get 413.',
    minimum: 1024,
    maximum: 256 * MB,
    default: DEFAULT_SETTINGS.bodyLimitBytes,
  },
  requestTimeoutMs: {
    type: 'integer',
    title: 'Request receive timeout (ms)',
    description: 'Time allowed to receive a complete request (headers + body); protects against slow clients. Generation time is not limited by it.',
    minimum: 1000,
    maximum: 3_600_000,
    default: DEFAULT_SETTINGS.requestTimeoutMs,
  },
  responseCache: {
    type: 'object',
    title: 'Response cache',
    description: 'Caches complete answers of deterministic requests (temperature 0 or a fixed seed), in memory and on disk.',
    properties: {
      enabled: { type: 'boolean', title: 'Enabled', description: 'Off by default: only deterministic requests are ever cached.', default: false },
      maxEntries: { type: 'integer', title: 'Max entries', minimum: 1, maximum: 100_000, default: 256 },
      maxBytes: { type: 'integer', title: 'Max bytes on disk', minimum: MB, maximum: 64 * GB, default: 256 * MB },
    },
    additionalProperties: false,
    default: DEFAULT_SETTINGS.responseCache,
  },
  prefixCache: {
    type: 'object',
    title: 'Prompt prefix cache',
    description: 'Keeps the KV state of long repeated prompt prefixes (system prompts, tool schemas) so follow-up requests skip their prefill.',
    properties: {
      maxEntries: { type: 'integer', title: 'Max entries', minimum: 1, maximum: 1000, default: 8 },
      maxBytes: { type: 'integer', title: 'Max bytes', description: 'Memory and disk budget for saved prefixes.', minimum: MB, maximum: 256 * GB, default: 2 * GB },
      persist: { type: 'boolean', title: 'Persist to disk', description: 'Save prefixes so a restart starts warm.', default: true },
    },
    additionalProperties: false,
    default: DEFAULT_SETTINGS.prefixCache,
  },
  memory: {
    type: 'object',
    title: 'Memory limits',
    description: 'Above the soft watermark caches are cleared; above the hard watermark new requests get 503 until memory falls.',
    properties: {
      softLimitMb: { type: 'integer', title: 'Soft limit (MB)', description: '0 = use the percentage.', minimum: 0, maximum: 16 * 1024 * 1024, default: 0 },
      hardLimitMb: { type: 'integer', title: 'Hard limit (MB)', description: '0 = use the percentage.', minimum: 0, maximum: 16 * 1024 * 1024, default: 0 },
      softPercent: { type: 'number', title: 'Soft limit (% of RAM)', minimum: 1, maximum: 100, default: 75 },
      hardPercent: { type: 'number', title: 'Hard limit (% of RAM)', minimum: 1, maximum: 100, default: 90 },
    },
    additionalProperties: false,
    default: DEFAULT_SETTINGS.memory,
  },
  idleUnloadMinutes: {
    type: 'integer',
    title: 'Unload model when idle (minutes)',
    description: 'Frees the model’s memory after this many idle minutes; the next request reloads it. 0 = never.',
    minimum: 0,
    maximum: 10_080,
    default: DEFAULT_SETTINGS.idleUnloadMinutes,
  },
  remotes: {
    type: 'array',
    title: 'Remote models',
    description: 'Models served by other OpenAI-compatible servers (vLLM, SGLang, llama-server, Ollama, another MLX Bar), offered behind this endpoint under their id.',
    maxItems: 32,
    items: {
      type: 'object',
      properties: {
        id: { type: 'string', title: 'Id', description: 'What clients put in `model`.', pattern: '^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$' },
        baseURL: { type: 'string', title: 'Base URL', description: 'The upstream OpenAI base URL, e.g. http://gpu-box:8000/v1.', maxLength: 2048, pattern: '^https?://[^\\s/?#@]+(/[^\\s?#]*)?$' },
        apiKey: { type: 'string', title: 'Upstream API key', description: 'Sent to the upstream only.', pattern: '^[\\x21-\\x7e]{0,4096}$' },
        model: { type: 'string', title: 'Upstream model name', description: 'Default: the id.', minLength: 1, maxLength: 256, pattern: '^[^\\s]+$' },
        headers: {
          type: 'object',
          title: 'Extra headers',
          description: 'Lower-case header names (HTTP names are case-insensitive); values are treated as secrets.',
          maxProperties: 16,
          propertyNames: { pattern: '^(?!(?:host|content-length|content-type|connection|transfer-encoding|authorization)$)[a-z0-9-]{1,64}$' },
          additionalProperties: { type: 'string', maxLength: 4096, pattern: '^[\\x20-\\x7e]*$' },
        },
        maxConcurrent: { type: 'integer', title: 'Concurrent requests', minimum: 1, maximum: 256, default: 4 },
        maxQueue: { type: 'integer', title: 'Queue length', minimum: 0, maximum: 4096, default: 16 },
        fallback: { type: 'string', title: 'Local fallback model', description: 'A library model that answers while the upstream is down.', minLength: 1, maxLength: 256 },
      },
      required: ['id', 'baseURL'],
      additionalProperties: false,
    },
    default: DEFAULT_SETTINGS.remotes,
  },
  dtypePolicy: {
    type: 'string',
    title: 'Weights and compute precision',
    enum: ['auto', 'native', 'float32'],
    description:
      'auto: decided by a one-time probe of the installed MLX build (on a Mac with Metal: 4/8-bit weights stay packed and compute runs in the model’s bf16/f16, as mlx-lm does; on the Linux CPU build: everything in float32). native: keep 4/8-bit weights packed and use half precision only where the probe verified it. float32: expand every model to float32 (4 bytes per parameter).',
    default: DEFAULT_SETTINGS.dtypePolicy,
  },
  logLevel: {
    type: 'string',
    title: 'Log level',
    enum: ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'],
    description: 'Prompts are never logged below debug.',
    default: DEFAULT_SETTINGS.logLevel,
  },
  startAtLogin: {
    type: 'boolean',
    title: 'Start at login',
    description: 'Launch MLX Bar in the menu bar when you log in (desktop app only).',
    default: DEFAULT_SETTINGS.startAtLogin,
  },
  theme: {
    type: 'string',
    title: 'Theme',
    enum: ['system', 'light', 'dark'],
    description: 'Dashboard theme; "system" follows the OS.',
    default: DEFAULT_SETTINGS.theme,
  },
};

/** The whole-document schema (what conf builds from the map). Unknown keys are allowed (a newer
 *  version may have written them) and reported as warnings by loadSettings. */
export function settingsRootSchema(): JsonSchema {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://mlx-bar.local/settings.schema.json',
    title: 'MLX Bar settings',
    type: 'object',
    properties: SETTINGS_SCHEMA,
  };
}

export const SETTINGS_KEYS = Object.keys(SETTINGS_SCHEMA) as (keyof StoredSettings)[];
