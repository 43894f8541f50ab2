// The composition root (formerly main/cli/serve.ts): engine process + text pipeline + model library
// + hardening (caches, metrics, degradation) + HTTP server, started from ServeOptions. Used by
// `mlx-bar serve` (main/cli/serve.ts: flags, preflight report, signals) and the desktop shell
// (main/shell/core.ts). Start-up problems the user can fix throw StartError with a readable message.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from '../common/errors.ts';
import { createServer, type MlxBarServer, type ServerConfig } from '../server/index.ts';
import type { ServerHooks } from '../server/hooks.ts';
import type { EngineClient } from '../engine/types.ts';
import type { EngineSpawner } from '../engine/process/spawn.ts';
import { DEFAULT_SETTINGS, type Settings } from '../settings/schema.ts';
import type { Hardening } from './hardening.ts';
import type { ServerTextPipeline } from '../server/hooks.ts';
import type { ServerModels } from '../server/models.ts';
import type { ModelManager } from '../library/model-manager.ts';
import type { ListOptions } from '../library/library.ts';
import type { ModelInfo } from '../engine/types.ts';
import type { PolicyChoice } from '../engine/probe/index.ts';
import { managerServerModels } from './server-models.ts';
import { createModelAdmin } from './server-admin.ts';
import { DEMO_MODEL_ID, StartError, ensureDemoModel, isDemoModelId } from './demo-model.ts';
import { modelSettingCheck } from './model-setting.ts';

export { StartError, DEMO_MODEL_ID };

export interface ServeOptions {
  model: string | null;
  host: string;
  port: number;
  dataDir: string;
  apiKey: string | null;
  allowedOrigins: string[];
  /** Serve the embedded random-weight DEMO model (built under the data dir on first use). */
  demo: boolean;
  /** Every server setting resolved from flags > env > settings file > defaults. */
  server: Partial<ServerConfig>;
  /** Non-fatal notes from loading settings (a repaired settings file, unknown keys). */
  warnings: string[];
  /** The full resolved settings (caches, memory watermarks…); defaults where absent. */
  settings?: Settings;
  /** How to start the engine process (the desktop shell passes a utilityProcess spawner). */
  engineSpawn?: EngineSpawner;
  /** Raw argv given to `serve` (for the preflight, which resolves settings the same way). */
  argv?: string[];
  /** Idle unload in ms (overrides settings.idleUnloadMinutes; 0 = never). For tests and the shell. */
  idleUnloadMs?: number;
  /** How long a request waits for a model load before 503 model_loading (default 120 s). */
  modelLoadWaitMs?: number;
  /**
   * Headless only: serve GET/PUT /v1/settings over <dataDir>/config.json for the browser dashboard
   * (main/server/routes/settings.ts). `sources`: where each setting of this launch came from.
   */
  settingsApi?: { sources: Record<string, 'flag' | 'env' | 'file' | 'default'> };
}

/**
 * ServeOptions for a model folder on a free loopback port with default settings (tests, benches,
 * embedding): the one place that spells out the defaults.
 */
export function serveOptionsFor(model: string | null, dataDir: string, extra: Partial<ServeOptions> = {}): ServeOptions {
  return {
    model,
    host: '127.0.0.1',
    port: 0,
    dataDir,
    apiKey: null,
    allowedOrigins: [],
    demo: false,
    server: {},
    warnings: [],
    settings: { ...DEFAULT_SETTINGS, dataDir },
    ...extra,
  };
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningServe {
  server: MlxBarServer;
  engine: EngineClient;
  /** The model manager (library mode); null when the model folder is not a loadable library entry. */
  models: ModelManager<ServerTextPipeline> | null;
  hardening: Hardening | null;
  url: string;
  stop(): Promise<void>;
}

/** The model folder to start with (the DEMO model, a folder, or a library/hub id); readable errors. */
async function startFolder(opts: ServeOptions): Promise<{ modelDir: string; demo: boolean }> {
  try {
    mkdirSync(opts.dataDir, { recursive: true });
  } catch {
    throw new StartError('Cannot create the data folder; pass a writable one with --data-dir');
  }
  let modelDir: string;
  // The demo model's id (what /v1/models and `mlx-bar models` show for it) means the demo model.
  const demo = opts.demo || isDemoModelId(opts.model);
  if (demo) modelDir = await ensureDemoModel(opts.dataDir);
  else if (!opts.model) throw new StartError('No model: pass --model <folder> (or --demo for the random-weight demo model)');
  else modelDir = await resolveModel(opts.model, opts.dataDir);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new StartError('The model folder does not exist');
  if (!existsSync(path.join(modelDir, 'config.json'))) throw new StartError('The model folder has no config.json');
  return { modelDir, demo };
}

/**
 * The engine process with its dtype policy: the capability probe of this MLX build (run once per
 * binary, cached in the data folder; the float32 setting needs none) + the dtypePolicy setting. The
 * engine process re-checks that the probe was made for the binary it loaded.
 */
async function startEngineClient(opts: ServeOptions, settings: Settings) {
  const { createEngineClient } = await import('../engine/index.ts');
  const probe = await import('../engine/probe/index.ts');
  const capabilities = settings.dtypePolicy === 'float32' ? null : await probe.getCapabilities(probe.capabilitiesDir(opts.dataDir), opts.engineSpawn ? { spawn: opts.engineSpawn } : {}).catch(() => null);
  const dtypeChoice = probe.choosePolicy(settings.dtypePolicy, capabilities);
  const { watermarksFromSettings, watermarkBytes, readSystemMemory } = await import('../hardening/memory.ts');
  const wm = watermarksFromSettings(settings.memory);
  const totalRam = readSystemMemory().totalBytes;
  const hardBytes = watermarkBytes(wm.hard, totalRam);
  const softBytes = watermarkBytes(wm.soft, totalRam);
  const engine = createEngineClient({
    ...(opts.engineSpawn ? { spawn: opts.engineSpawn } : {}),
    engine: {
      prefixCacheBytes: (opts.settings ?? DEFAULT_SETTINGS).prefixCache.maxBytes,
      dtypePolicy: settings.dtypePolicy,
      // The server admits maxConcurrent generations at once; the engine batches their steps.
      maxBatch: concurrencyOf(opts, settings),
      ...(capabilities ? { capabilities } : {}),
      // Metal builds: MLX's own pool stays under the hard watermark, and its buffer cache under the
      // slack between the watermarks (the CPU build has no working limits; the engine skips them).
      mlxMemoryLimitBytes: Math.max(0, Math.floor(hardBytes)),
      mlxCacheLimitBytes: Math.max(0, Math.floor(hardBytes - softBytes)),
      // The CPU build's stand-in for that cache (the engine's KV buffer pool) lives in the same slack.
      kvPoolBytes: Math.max(0, Math.floor(hardBytes - softBytes)),
    },
  });
  return { engine, dtypeChoice };
}

type TextPipeline = Awaited<ReturnType<(typeof import('../engine/text/index.ts'))['loadTextPipeline']>>;

interface StartedModels {
  /** What the library lists (the models folder + the started folder), sized with this launch's settings. */
  libraryOptions: () => ListOptions;
  modelInfo: ModelInfo;
  text: TextPipeline;
  /** Library mode only. */
  manager: ModelManager<ServerTextPipeline> | null;
  models?: ServerModels;
  modelAdmin?: ReturnType<typeof createModelAdmin>;
}

/**
 * Library mode (issue 6): the model manager owns the engine's model: /v1/models lists
 * <dataDir>/models (+ the started folder), a request's `model` switches (one at a time,
 * single-flight), idle unload after settings.idleUnloadMinutes. Each model brings its own text
 * pipeline. The response-cache keys carry the fingerprint of the model that answered, so a
 * cached answer is never served for another model. A folder the library does not consider
 * complete is served alone, as before. `manager` is set as soon as it exists (for the caller's cleanup).
 */
async function startModels(
  opts: ServeOptions,
  modelDir: string,
  env: { engine: EngineClient; settings: Settings; dtypeChoice: PolicyChoice; hardening: () => Hardening | null; log: (line: string) => void },
  onManager: (m: ModelManager<ServerTextPipeline>) => void,
): Promise<StartedModels> {
  const { loadTextPipeline } = await import('../engine/text/index.ts');
  const lib = await import('../library/index.ts');
  const { engine, settings, log } = env;
  const libraryOptions = (): ListOptions => ({ extraDirs: [modelDir], contextTokens: settings.contextLength, policy: env.dtypeChoice });
  const startEntry = await lib.inspectFolder(modelDir, libraryOptions());
  if (!startEntry?.ready) return { libraryOptions, text: await loadTextPipeline(modelDir), modelInfo: await engine.start(modelDir), manager: null };
  const m = lib.createModelManager<ServerTextPipeline>({
    engine,
    dataDir: opts.dataDir,
    library: libraryOptions,
    idleUnloadMs: opts.idleUnloadMs ?? Math.round(settings.idleUnloadMinutes * 60_000),
    // The started folder is found by its own id first (a same-named library folder must not shadow it).
    find: async (id) =>
      id === startEntry.id || id === startEntry.folder ? lib.inspectFolder(modelDir, libraryOptions()) : lib.findModel(id, opts.dataDir, libraryOptions()),
    loadExtras: (dir) => loadTextPipeline(dir),
    // Prompt-prefix KV follows the model: save the outgoing model's new prefixes before a
    // switch/unload, restore the incoming one's before its first request (both time-bounded).
    beforeRelease: (_id, reason) => env.hardening()?.prefixPersistence?.flush(reason),
    afterLoad: () => env.hardening()?.prefixPersistence?.settled(),
  });
  onManager(m);
  const modelInfo = await m.ensureLoaded(startEntry.id);
  const text = m.loaded!.extras as TextPipeline;
  const models = managerServerModels({
    manager: m,
    dataDir: opts.dataDir,
    library: libraryOptions,
    defaultId: startEntry.id,
    loadWaitMs: opts.modelLoadWaitMs,
    retryAfterSeconds: opts.server.retryAfterSeconds,
  });
  // Downloads + switching from the dashboard (POST /v1/models/pull, /load; GET /v1/models/pulls).
  const modelAdmin = createModelAdmin({ manager: m, dataDir: opts.dataDir, library: libraryOptions });
  m.on('loaded', (e: { id: string; loadMs: number }) => log(`model: loaded ${e.id} in ${e.loadMs} ms`));
  m.on('unloaded', (e: { id: string; reason: string }) => log(`model: unloaded ${e.id} (${e.reason})`));
  for (const ev of ['release_hook', 'load_hook']) {
    m.on(ev, (e: { hook: string; outcome: string; ms: number; error?: string }) => {
      if (e.outcome !== 'ok') log(`model: ${e.hook} ${e.outcome} after ${e.ms} ms${e.error ? ` (${e.error})` : ''}`);
    });
  }
  return { libraryOptions, modelInfo, text, manager: m, models, modelAdmin };
}

/** Remote models from the settings: forwarded through the same life cycle (main/server/remote). */
async function startRemotes(settings: Settings, log: (line: string) => void, hardening: () => Hardening | null) {
  if (!settings.remotes.length) return undefined;
  const { Remotes } = await import('../server/remote/remotes.ts');
  return new Remotes(settings.remotes, {
    onBreakerChange: (id, state) => {
      log(`remote model "${id}": upstream ${state === 'open' ? 'down (circuit open)' : state === 'half_open' ? 'probing' : 'up'}`);
      // The degradation status reads the breakers lazily; this logs (and emits) the change now.
      hardening()?.degradation.status();
    },
  });
}

/** Starts everything; throws readable errors. Used by `run` and by tests. */
/** Generations at once: the server's slots and the engine's batch are the same number (a flag, else the settings). */
function concurrencyOf(opts: ServeOptions, settings: Settings): number {
  return opts.server.maxConcurrent ?? settings.maxConcurrent;
}

export async function startServe(opts: ServeOptions, log: (line: string) => void = console.log): Promise<RunningServe> {
  const partial: Partial<ServerConfig> = {
    ...opts.server,
    maxConcurrent: concurrencyOf(opts, opts.settings ?? { ...DEFAULT_SETTINGS, dataDir: opts.dataDir }),
    host: opts.host,
    port: opts.port,
    apiKey: opts.apiKey,
    allowedOrigins: opts.allowedOrigins,
    dashboardDir: path.join(repoRoot, 'dist', 'renderer'),
  };
  // Validate the bind policy before spending seconds on the model.
  const { resolveServerConfig } = await import('../server/config.ts');
  resolveServerConfig(partial);
  const { modelDir, demo } = await startFolder(opts);
  // Fail fast on a busy port, before spending seconds loading the model.
  if (opts.port !== 0) await assertPortFree(opts.host, opts.port);

  const settings = opts.settings ?? { ...DEFAULT_SETTINGS, dataDir: opts.dataDir };
  const { engine, dtypeChoice } = await startEngineClient(opts, settings);
  let server: MlxBarServer | null = null;
  let hardening: Hardening | null = null;
  let remotes: Awaited<ReturnType<typeof startRemotes>> = undefined;
  let manager: ModelManager<ServerTextPipeline> | null = null;
  try {
    const started = await startModels(opts, modelDir, { engine, settings, dtypeChoice, hardening: () => hardening, log }, (m) => (manager = m));
    const { libraryOptions, modelInfo, text, models, modelAdmin } = started;
    remotes = await startRemotes(settings, log, () => hardening);
    const rs = remotes;
    // Degradation, response cache, memory sampler/admission and metrics, wired together.
    const { attachHardening } = await import('./hardening.ts');
    hardening = await attachHardening({ engine, modelInfo, text, dataDir: opts.dataDir, settings, log, demo, ...(rs ? { upstreams: () => rs.all().map((u) => u.stats()), upstreamsDown: () => rs.downIds() } : {}) });
    const settingsApi = opts.settingsApi ? await import('../server/routes/settings.ts') : null;
    const hooks: ServerHooks = settingsApi
      ? settingsApi.withSettingsApi(hardening.hooks, {
          dataDir: opts.dataDir,
          sources: opts.settingsApi!.sources,
          running: settings,
          host: opts.host,
          log,
          // `model` is checked as a model folder or a library id before it is saved (#11 item 4).
          checkModel: modelSettingCheck(opts.dataDir, libraryOptions),
          // maxConcurrent applies while serving: the server's generation slots and the engine's batch.
          live: {
            keys: ['maxConcurrent'],
            apply: (changed) => {
              const n = changed.maxConcurrent;
              if (n === undefined) return;
              server?.setMaxConcurrent(n);
              engine.setMaxBatch?.(n);
            },
          },
        })
      : hardening.hooks;
    const deps = { engine, text, modelInfo, modelMeta: { aliases: [path.basename(modelDir)], demo }, hooks, models, modelAdmin, remotes };
    server = createServer(deps, partial);
    const addr = await server.listen();
    const s = server;
    const h = hardening;
    return {
      server: s,
      engine,
      models: manager,
      url: addr.url,
      hardening,
      async stop() {
        modelAdmin?.close();
        await s.close();
        rs?.close();
        // Persist new prompt prefixes while the engine can still export them.
        await h.prefixPersistence?.close(10_000).catch(() => {});
        await started.manager?.close().catch(() => {});
        await engine.stop();
        await h.close();
      },
    };
  } catch (err) {
    remotes?.close();
    await server?.close(0).catch(() => {});
    await (manager as ModelManager<ServerTextPipeline> | null)?.close().catch(() => {});
    await engine.stop().catch(() => {});
    await (hardening as Hardening | null)?.close().catch(() => {});
    throw err;
  }
}

/** A folder, a library id, or a Hugging Face repo id (pulled into <dataDir>/models if missing). */
async function resolveModel(arg: string, dataDir: string): Promise<string> {
  if (existsSync(arg) && statSync(arg).isDirectory()) return path.resolve(arg);
  try {
    const { resolveModelArg } = await import('../library/index.ts');
    const r = await resolveModelArg(arg, dataDir, { pull: true, terminalProgress: process.stderr.isTTY === true });
    return r.dir;
  } catch (err) {
    if (err instanceof ApiError) throw new StartError(err.message);
    throw err;
  }
}

function assertPortFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
