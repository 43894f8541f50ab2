// `mlx-bar serve`: flags > env > <data-dir>/config.json > defaults → ServeOptions, the preflight
// report, then the core (main/core/serve.ts startServe); prints `MLX Bar listening on …`.
// SIGINT/SIGTERM: stop accepting, let in-flight work finish briefly then cancel it, stop the
// engine, exit 0. Startup errors: one readable line, exit code 2, no stack trace.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { defaultDataDir } from '../common/data-dir.ts';
import { ApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { StartError, startServe, type RunningServe, type ServeOptions } from '../core/serve.ts';
import { isDemoModelId } from '../core/demo-model.ts';

export type { ServeOptions, RunningServe };

const HELP = `Usage: mlx-bar serve --model <folder | owner/repo> [options]

Options:
  --model <folder | owner/repo>
                          an mlx-community style model folder (config.json, *.safetensors, tokenizer),
                          or the id of a model in the library (as \`mlx-bar models\` lists it)
  --demo                  serve the built-in random-weight DEMO model instead (gibberish output);
                          its id, mlx-bar-demo-random-weights, works as --model too
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
    // The demo model's id (as /v1/models and `mlx-bar models` show it) is the demo model.
    demo: parsed.switches.demo === true || isDemoModelId(st.model),
    server,
    warnings: loaded.warnings.map((w) => `${w.where}: ${w.message}`),
    settings: st,
    argv,
    settingsApi: { sources: loaded.sources },
  };
}

function readable(err: unknown, opts: ServeOptions | null): string {
  const code = (err as { code?: string })?.code;
  if (code === 'EADDRINUSE') return `Port ${opts?.port} is already in use; choose another with --port (0 picks a free one)`;
  if (code === 'EACCES' || code === 'EPERM') return `Not allowed to listen on ${opts?.host}:${opts?.port}; use a port above 1024`;
  if (code === 'EADDRNOTAVAIL') return `The address ${opts?.host} is not available on this machine`;
  if (err instanceof ApiError || err instanceof UsageError || err instanceof StartError) return err.message;
  return sanitizeMessage(err);
}

/**
 * The same checks as `mlx-bar check`, at the start of serve: errors stop the launch (exit 2) with
 * the readable report; warnings are printed and the launch goes on. MLXBAR_SKIP_PREFLIGHT=1 skips
 * them (the desktop shell validates settings itself).
 */
async function preflight(opts: ServeOptions): Promise<boolean> {
  if (process.env.MLXBAR_SKIP_PREFLIGHT === '1') return true;
  const { runPreflight, formatReport } = await import('../core/preflight.ts');
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

/**
 * A `model` read from config.json (not typed on this command line) gets the same check as a save
 * from the dashboard: a model folder (absolute path) that holds a model this app runs, or the id of
 * a downloaded model. A bad one (e.g. "/etc", "file:///etc", written by hand or by an older version)
 * stops the launch with one line saying which setting and how to fix it, before anything starts.
 */
async function configModelProblem(opts: ServeOptions): Promise<string | null> {
  if (opts.demo || !opts.model || opts.settingsApi?.sources.model !== 'file') return null;
  const { modelSettingCheck } = await import('../core/model-setting.ts');
  const reason = await modelSettingCheck(opts.dataDir)(opts.model);
  if (!reason) return null;
  return `the "model" setting in config.json ${reason}. Fix it on the dashboard's Settings page or in config.json, or pass --model <folder | owner/repo> (or --demo)`;
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
    const badModel = await configModelProblem(opts);
    if (badModel) {
      console.error(`mlx-bar serve: ${sanitizeMessage(badModel)}`);
      return 2;
    }
    if (!(await preflight(opts))) return 2;
    running = await startServe(opts);
  } catch (err) {
    let message = readable(err, opts);
    if ((err as { code?: string })?.code === 'EADDRINUSE' && opts) {
      // Say so when the program on the port is MLX Bar itself (a second start, a forgotten one).
      const { probeMlxBar, describeRunning } = await import('../core/preflight.ts');
      const found = await probeMlxBar(opts.host, opts.port);
      if (found) message = `${describeRunning(found)}; use it, or choose another port with --port (0 picks a free one)`;
    }
    console.error(`mlx-bar serve: ${sanitizeMessage(message)}`);
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
