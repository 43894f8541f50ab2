// `mlx-bar pull <owner/name>[@revision]`: downloads a model into the library with a progress bar,
// resumable (Ctrl-C keeps the partial files; run the same command again to continue).
import { startPull } from '../library/downloader.ts';
import { HubError } from '../library/hub-client.ts';
import { defaultDataDir } from '../library/paths.ts';
import { attachTerminalProgress } from '../library/progress-bar.ts';
import { InvalidInputError } from '../library/validate.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { handleUsage } from './usage.ts';

const HELP = `Usage: mlx-bar pull <owner/name>[@revision] [options]

Downloads an MLX model repository (e.g. mlx-community/Qwen3-0.6B-4bit) from the Hugging Face hub
into <data-dir>/models/. Interrupted downloads resume where they stopped.

Options:
  --data-dir <folder>    data folder (default: $MLXBAR_DATA_DIR or the app's user-data folder)
  --endpoint <url>       hub URL (default: $HF_ENDPOINT or https://huggingface.co)
  --include-readme       also download README.md
  --json                 progress and result as JSON lines on stdout
  -h, --help             show this help

Environment: HF_TOKEN (gated/private repositories), HF_ENDPOINT, MLXBAR_DATA_DIR.
Exit codes: 0 done, 1 failed, 2 usage error, 130 cancelled.`;

interface Args {
  spec: string;
  dataDir: string;
  endpoint?: string;
  includeReadme: boolean;
  json: boolean;
}

function parse(argv: string[]): Args | 'help' | string {
  let spec: string | undefined;
  const a: Omit<Args, 'spec'> = { dataDir: defaultDataDir(), includeReadme: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq > 0 ? arg.slice(eq + 1) : argv[++i]);
    if (flag === '-h' || flag === '--help') return 'help';
    else if (flag === '--json') a.json = true;
    else if (flag === '--include-readme') a.includeReadme = true;
    else if (flag === '--data-dir' || flag === '--endpoint') {
      const v = value();
      if (!v) return `${flag} needs a value`;
      if (flag === '--data-dir') a.dataDir = v;
      else a.endpoint = v;
    } else if (flag.startsWith('-')) return `Unknown option ${JSON.stringify(flag.slice(0, 40))}`;
    else if (spec === undefined) spec = arg;
    else return 'Only one repository per pull';
  }
  if (!spec) return 'Which model? e.g. mlx-bar pull mlx-community/Qwen3-0.6B-4bit';
  return { ...a, spec };
}

export async function run(argv: string[]): Promise<number> {
  const args = handleUsage('pull', parse(argv), HELP);
  if (typeof args === 'number') return args;
  const ac = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // second Ctrl-C: leave now (parts are already on disk)
    process.stderr.write('\nCancelling… (partial files are kept; run the same command to resume)\n');
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    let job;
    try {
      job = startPull(args.spec, {
        dataDir: args.dataDir,
        endpoint: args.endpoint,
        includeReadme: args.includeReadme,
        signal: ac.signal,
      });
    } catch (err) {
      if (err instanceof InvalidInputError) {
        console.error(`mlx-bar pull: ${err.message}`);
        return 2;
      }
      throw err;
    }
    if (args.json) {
      for (const ev of ['start', 'progress', 'file', 'retry', 'done'] as const) {
        job.on(ev, (data: unknown) => process.stdout.write(JSON.stringify({ event: ev, ...(data as object) }) + '\n'));
      }
      job.on('failed', (e: HubError) => process.stdout.write(JSON.stringify({ event: 'failed', code: e.code, message: e.message }) + '\n'));
    } else {
      attachTerminalProgress(job, process.stdout);
    }
    try {
      const res = await job.result;
      if (!args.json) {
        console.log(`Folder: ${res.dir}`);
        console.log(`Serve it with: mlx-bar serve --model ${res.id}`);
      }
      return 0;
    } catch (err) {
      const e = err instanceof HubError ? err : null;
      if (e?.code === 'cancelled') {
        console.error('mlx-bar pull: cancelled; run the same command again to resume.');
        return 130;
      }
      console.error(`mlx-bar pull: ${sanitizeMessage(err)}`);
      return e?.code === 'invalid_input' ? 2 : 1;
    }
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}
