// Command-line flags shared by `mlx-bar serve` and `mlx-bar check` (same flags, same meaning):
// --model --host --port --data-dir --api-key and one flag per setting (see SETTING_SPECS). Values
// stay strings here; loadSettings() converts and validates them, naming the flag on error.
import { parseArgs } from 'node:util';
import { SETTING_SPECS, DATA_DIR_SPEC, API_KEY_FILE_SPEC } from './load.ts';

export interface ParsedFlags {
  /** Setting path → raw value (for loadSettings({ flags })): strings, or a list for --allow-origin. */
  flags: Record<string, string | string[]>;
  /** Non-setting switches (e.g. --json, --help). */
  switches: Record<string, boolean>;
  positionals: string[];
  errors: string[];
}

const SWITCHES = ['json', 'help', 'no-color', 'quiet', 'demo'] as const;

export function parseSettingFlags(argv: string[]): ParsedFlags {
  const specs = [...SETTING_SPECS, DATA_DIR_SPEC, API_KEY_FILE_SPEC];
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const s of specs) for (const f of [s.flag, ...(s.aliases ?? [])]) options[f.slice(2)] = { type: 'string' };
  // serve's repeatable form: --allow-origin a --allow-origin b (same setting as --allowed-origins a,b)
  options['allow-origin'] = { type: 'string', multiple: true };
  for (const s of SWITCHES) options[s] = { type: 'boolean' };
  options.h = { type: 'boolean' };
  const out: ParsedFlags = { flags: {}, switches: {}, positionals: [], errors: [] };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    // node's messages name the flag ("Unknown option '--prot'") and contain no paths
    out.errors.push(String((e as Error).message).split('\n')[0].slice(0, 200));
    return out;
  }
  for (const s of specs) {
    // the rule's spelling wins over an older alias given in the same command line
    for (const f of [...(s.aliases ?? []), s.flag]) {
      const v = (parsed.values as Record<string, unknown>)[f.slice(2)];
      if (typeof v === 'string') out.flags[s.key] = v;
    }
  }
  const repeated = (parsed.values as Record<string, unknown>)['allow-origin'];
  if (Array.isArray(repeated) && repeated.length) out.flags.allowedOrigins = repeated.map(String);
  for (const s of SWITCHES) if ((parsed.values as Record<string, unknown>)[s]) out.switches[s] = true;
  if ((parsed.values as Record<string, unknown>).h) out.switches.help = true;
  out.positionals = parsed.positionals;
  return out;
}

/** One line per flag, for --help. */
export function flagsHelp(): string {
  return [DATA_DIR_SPEC, API_KEY_FILE_SPEC, ...SETTING_SPECS]
    .map((s) => `  ${s.flag.padEnd(30)} ${s.env ? `(env ${s.env})` : ''}${s.aliases?.length ? ` (also ${s.aliases.join(', ')})` : ''}`)
    .join('\n');
}
