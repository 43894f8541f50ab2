// `mlx-bar check [same flags as serve] [--json]`: runs the preflight and prints a readable report
// (or JSON with --json). Exit code 0 when the server could start, 2 when a check failed or the
// arguments are wrong, 3 when the only finding is an MLX Bar server already running on the port.
// Never prints a stack trace. The CLI dispatcher imports this module and calls run(argv) with the
// arguments after `check`.
import { runPreflight, formatReport } from '../core/preflight.ts';
import { parseSettingFlags, flagsHelp } from '../settings/flags.ts';
import { sanitizeMessage } from '../common/sanitize.ts';

export const USAGE = `Usage: mlx-bar check [options]

Validates settings, port, model folder, data folder, native libraries and memory fit without
starting the server. Same options as \`mlx-bar serve\`; --json prints the report as JSON.
Exit code: 0 = ready to serve, 2 = problems found (or bad arguments), 3 = no problems, but an
MLX Bar server is already running on that port (the report says which version and model).
A different program on the port is a problem (exit 2: "port … is already in use").

Options:
${flagsHelp()}
  --allow-origin <origin>        (repeatable; same as --allowed-origins a,b)
  --demo                         (check for the built-in demo model instead of --model)
  --json                         (print the report as JSON)
`;

/** `check` found an MLX Bar server already listening on the port (and no other problem). */
export const EXIT_ALREADY_RUNNING = 3;

export interface RunIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
  env?: NodeJS.ProcessEnv;
}

export async function run(argv: string[], io: RunIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => void process.stdout.write(s));
  const err = io.err ?? ((s: string) => void process.stderr.write(s));
  try {
    const parsed = parseSettingFlags(argv);
    if (parsed.switches.help) {
      out(USAGE);
      return 0;
    }
    if (parsed.errors.length || parsed.positionals.length) {
      for (const e of parsed.errors) err(`mlx-bar check: ${sanitizeMessage(e)}\n`);
      if (parsed.positionals.length) err(`mlx-bar check: unexpected argument "${sanitizeMessage(parsed.positionals[0]).slice(0, 64)}"\n`);
      err('Run `mlx-bar check --help` for the options.\n');
      return 2;
    }
    const report = await runPreflight({ flags: parsed.flags, env: io.env ?? process.env, repairSettings: false, demo: !!parsed.switches.demo });
    if (parsed.switches.json) {
      const { settings, ...rest } = report;
      // never print the API key
      out(JSON.stringify({ ...rest, settings: settings ? { ...settings, apiKey: settings.apiKey ? '(set)' : '' } : null }, null, 2) + '\n');
    } else {
      out(formatReport(report, { color: !io.out && process.stdout.isTTY === true && !parsed.switches['no-color'] }));
    }
    if (report.ok) return 0;
    return report.running && !report.checks.some((c) => c.status === 'error') ? EXIT_ALREADY_RUNNING : 2;
  } catch (e) {
    err(`mlx-bar check failed: ${sanitizeMessage(e)}\n`);
    return 2;
  }
}

// Allow `tsx main/cli/check.ts ...` directly.
if (import.meta.url === `file://${process.argv[1]}`) {
  run(process.argv.slice(2)).then((code) => process.exit(code));
}
