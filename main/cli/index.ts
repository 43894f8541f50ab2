// `mlx-bar <command> [flags]`: a small command table. `serve` lives here; `check`, `pull` and
// `models` are other modules that are loaded only if present (they export `run(argv)` or
// `main(argv)` or a default function, resolving to an exit code).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sanitizeMessage } from '../common/sanitize.ts';
import { packageVersion } from '../common/version.ts';

type CommandFn = (argv: string[]) => Promise<number | void> | number | void;

const here = path.dirname(fileURLToPath(import.meta.url));
// Sources run through tsx (.ts); a built dist has .js files.
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

const COMMANDS: Record<string, { module: string; summary: string }> = {
  serve: { module: 'serve', summary: 'Run the OpenAI-compatible server headless (no Electron)' },
  check: { module: 'check', summary: 'Validate settings, model folder and environment before launch' },
  pull: { module: 'pull', summary: 'Download a model into the library' },
  models: { module: 'models', summary: 'List the models in the library' },
};

function available(name: string): boolean {
  return existsSync(path.join(here, COMMANDS[name].module + ext));
}

function usage(): string {
  const lines = ['Usage: mlx-bar <command> [options]', '', 'Commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) if (available(name)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push('', 'Run `mlx-bar <command> --help` for the options of a command; `mlx-bar --version` prints the version.');
  return lines.join('\n');
}

async function loadCommand(name: string): Promise<CommandFn> {
  const mod = (await import(pathToFileURL(path.join(here, COMMANDS[name].module + ext)).href)) as Record<string, unknown>;
  const fn = mod.run ?? mod.main ?? mod.default;
  if (typeof fn !== 'function') throw new Error(`command module "${name}" exports no run()`);
  return fn as CommandFn;
}

export { packageVersion };

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    console.log(`mlx-bar ${packageVersion()}`);
    return 0;
  }
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  if (!(cmd in COMMANDS) || !available(cmd)) {
    console.error(`Unknown command "${cmd.slice(0, 40)}".\n\n${usage()}`);
    return 2;
  }
  const fn = await loadCommand(cmd);
  const code = await fn(rest);
  return typeof code === 'number' ? code : 0;
}

const isMain = (() => {
  try {
    return process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (isMain) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      // Commands resolve when they are done (serve: after a clean shutdown); leftover handles
      // (timers of libraries) must not keep the process alive.
      process.exitCode = code;
      setImmediate(() => process.exit(code));
    },
    (err) => {
      console.error(`mlx-bar: ${sanitizeMessage(err)}`);
      process.exit(2);
    },
  );
}
