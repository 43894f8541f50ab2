// `mlx-bar models`: lists the model library as a table (or JSON with --json), then the remote
// models of the settings with a "remote" badge and their health (each upstream probed once, in
// parallel, with a short clock; never its URL or key).
import { listModels, type LibraryEntry } from '../library/library.ts';
import { defaultDataDir } from '../library/paths.ts';
import { formatBytes } from '../library/format.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import { loadSettings } from '../settings/index.ts';
import type { RemoteModelSetting } from '../settings/schema.ts';
import { probeRemote, type RemoteProbe } from '../server/remote/probe.ts';
import { handleUsage } from './usage.ts';

const HELP = `Usage: mlx-bar models [options]

Lists downloaded models with size, architecture, quantization and whether they fit in memory,
then the remote models of the settings (\`remotes\`) with their health (each upstream is asked
for its model list; up to 3 seconds).

Options:
  --json                 machine-readable output (array of entries; remote models have "remote": true)
  --offline              do not contact the remote models' upstreams (health "unchecked")
  --all                  also list folders that are not loadable, with the reason
  --context <tokens>     context length for the memory estimate (default: the contextLength setting)
  --data-dir <folder>    data folder (default: $MLXBAR_DATA_DIR or the app's user-data folder)
  -h, --help             show this help`;

interface Args {
  json: boolean;
  offline: boolean;
  all: boolean;
  context?: number;
  dataDir: string;
  dataDirGiven: boolean;
}

function parse(argv: string[]): Args | 'help' | string {
  const a: Args = { json: false, offline: false, all: false, dataDir: defaultDataDir(), dataDirGiven: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') && argv[i].includes('=') ? [argv[i].slice(0, argv[i].indexOf('=')), argv[i].slice(argv[i].indexOf('=') + 1)] : [argv[i], undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '-h' || flag === '--help') return 'help';
    else if (flag === '--json') a.json = true;
    else if (flag === '--all') a.all = true;
    else if (flag === '--offline') a.offline = true;
    else if (flag === '--data-dir') {
      const v = value();
      if (!v) return '--data-dir needs a folder';
      a.dataDir = v;
      a.dataDirGiven = true;
    } else if (flag === '--context') {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1 || n > 10_000_000) return '--context needs a positive integer';
      a.context = n;
    } else return `Unknown option ${JSON.stringify(flag.slice(0, 40))}`;
  }
  return a;
}

function fmtParams(n: number | null): string {
  if (!n) return '?';
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(0)}K`;
}

export function renderTable(models: LibraryEntry[]): string {
  const rows = models.map((m) => [
    m.id,
    m.architecture ?? '?',
    m.quantization ? `${m.quantization.bits}-bit/g${m.quantization.groupSize}` : (m.dtype ?? '?'),
    m.activeParameters ? `${fmtParams(m.parameters)} (${fmtParams(m.activeParameters)} active)` : fmtParams(m.parameters),
    formatBytes(m.sizeBytes),
    Number.isFinite(m.fitsInMemory.needBytes) ? `${m.fitsInMemory.fits ? 'yes' : 'NO'} (${formatBytes(m.fitsInMemory.needBytes)})` : 'unknown',
    Number.isFinite(m.fitsInMemory.contextTokens) ? String(m.fitsInMemory.contextTokens) : '?',
    m.ready ? 'ready' : `incomplete: ${m.problem ?? ''}`,
  ]);
  const head = ['ID', 'ARCH', 'QUANT/DTYPE', 'PARAMS', 'SIZE', 'FITS (NEED)', 'CONTEXT', 'STATUS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** A remote model as `models` reports it (also the --json element, with `remote: true`). */
export interface RemoteRow {
  id: string;
  remote: true;
  upstreamModel: string;
  health: 'up' | 'down' | 'unchecked';
  note: string | null;
}

export function renderRemoteTable(rows: RemoteRow[]): string {
  const cells = rows.map((r) => [r.id, 'remote', r.upstreamModel, r.note ? `${r.health} (${r.note})` : r.health]);
  const head = ['ID', 'BADGE', 'UPSTREAM MODEL', 'HEALTH'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}

async function remoteRows(remotes: readonly RemoteModelSetting[], offline: boolean): Promise<RemoteRow[]> {
  return Promise.all(
    remotes.map(async (r) => {
      const probe: RemoteProbe | null = offline ? null : await probeRemote(r);
      return { id: r.id, remote: true as const, upstreamModel: r.model || r.id, health: probe?.health ?? 'unchecked', note: probe?.note ?? null };
    }),
  );
}

export async function run(argv: string[]): Promise<number> {
  const args = handleUsage('models', parse(argv), HELP);
  if (typeof args === 'number') return args;
  // The configured context (settings: flags > env > config.json > defaults) drives the KV estimate,
  // so the answer matches what `serve` would refuse or accept. 0 = the model's own limit.
  let contextTokens: number | 'auto' | undefined = args.context;
  let remotes: RemoteModelSetting[] = [];
  try {
    const { settings } = loadSettings({ flags: args.dataDirGiven ? { dataDir: args.dataDir } : {}, repair: false });
    remotes = settings.remotes;
    if (contextTokens === undefined) {
      const c = settings.contextLength;
      // "auto" (default): each model's own limit, capped by what fits next to its weights.
      contextTokens = c === 'auto' ? 'auto' : c > 0 ? c : Number.MAX_SAFE_INTEGER;
    }
  } catch {
    // unreadable settings: the library default context (4096), no remote models
  }
  try {
    const [models, remoteList] = await Promise.all([listModels(args.dataDir, { includeIncomplete: args.all, contextTokens }), remoteRows(remotes, args.offline)]);
    if (args.json) {
      console.log(JSON.stringify([...models, ...remoteList], null, 2));
    } else if (models.length === 0) {
      console.log('No models yet. Download one with: mlx-bar pull mlx-community/Qwen3-0.6B-4bit');
    } else {
      console.log(renderTable(models));
      const avail = models[0].fitsInMemory.availableBytes;
      const ctxNote =
        contextTokens === 'auto'
          ? 'the CONTEXT column (contextLength "auto": each model\'s own limit, capped by what fits next to its weights)'
          : `${models[0].fitsInMemory.contextTokens} tokens`;
      console.log(`\nMemory estimate: weights + KV cache for ${ctxNote}; ${formatBytes(avail)} available.`);
    }
    if (!args.json && remoteList.length) console.log(`\nRemote models (served by other machines behind this endpoint):\n${renderRemoteTable(remoteList)}`);
    return 0;
  } catch (err) {
    console.error(`mlx-bar models: ${sanitizeMessage(err)}`);
    return 1;
  }
}
