// Runs the capability probe (probe-child.ts) for the installed MLX build, once per binary: the
// result is cached in the data folder under a key made of the native module's sha256 and the
// package version, so a new or updated binding is probed again and an unchanged one never is.
// Each half-precision dtype is probed in its own child process because an unsupported op aborts
// the process; the parent reads which op was announced last and the exit code. Never loads MLX
// in the calling process.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { engineProcessEnv } from '../process/blas.ts';
import { forkSpawner, type EngineSpawner } from '../process/spawn.ts';
import { CAPABILITIES_SCHEMA, HALF_DTYPES, isCapabilities, type HalfDtype, type HalfDtypeProbe, type MlxCapabilities } from './capabilities.ts';

export const CAPABILITIES_FILE = 'mlx-capabilities.json';
// Generous: on a loaded machine a child's start-up alone took > 60 s. A child that still runs out of
// time counts as failed for this run, and the record is then NOT cached (probed again next time).
const PROBE_TIMEOUT_MS = 180_000;

/** Where the installed binding's native module and metallib are (for hashing and install checks). */
export function mlxBinaryPaths(): { packageDir: string; node: string; metallib: string; version: string } {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve('@frost-beta/mlx/package.json');
  const packageDir = path.dirname(pkgJson);
  const version = String((JSON.parse(readFileSync(pkgJson, 'utf8')) as { version?: unknown }).version ?? 'unknown');
  const release = path.join(packageDir, 'build', 'Release');
  return { packageDir, node: path.join(release, 'mlx.node'), metallib: path.join(release, 'mlx.metallib'), version };
}

/** Cache key of this MLX build: sha256 of mlx.node + the package version. */
export function mlxBinaryKey(): string {
  const { node, version } = mlxBinaryPaths();
  const h = createHash('sha256');
  h.update(readFileSync(node));
  h.update(`\0${version}\0${CAPABILITIES_SCHEMA}`);
  return h.digest('hex').slice(0, 16);
}

/** The probe script next to this module: the .ts from sources (run with tsx), mlx-probe.js once bundled. */
export function defaultProbeEntry(): { entry: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const dir = path.dirname(here);
  const ts = path.join(dir, 'probe-child.ts');
  // Bundled (scripts/build-main.mjs): dist/main/mlx-probe.js, next to the chunk or one level up.
  const js = [path.join(dir, 'mlx-probe.js'), path.join(dir, '..', 'mlx-probe.js')].find((f) => existsSync(f));
  const entry = here.endsWith('.ts') && existsSync(ts) ? ts : (js ?? ts);
  const execArgv: string[] = [];
  if (entry.endsWith('.ts')) execArgv.push('--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href);
  return { entry, execArgv };
}

interface ChildResult {
  lines: Record<string, unknown>[];
  timedOut: boolean;
  code: number | null;
  signal: string | null;
  /** The native error text (e.g. "[Matmul::eval_cpu] Currently only supports float32."), if any. */
  nativeError: string | null;
}

/**
 * Runs one probe item in a child through an EngineSpawner: the Node `fork` one by default, the
 * Electron utilityProcess one inside the app (the packaged app's run-as-node fuse is off, so its
 * binary cannot be spawned as a plain Node). The item travels in the environment.
 */
function runChild(item: string, env: NodeJS.ProcessEnv, spawner: EngineSpawner): Promise<ChildResult> {
  const { entry, execArgv } = defaultProbeEntry();
  // The engine's own environment (no secrets; OpenBLAS as the engine will load it), so the timings
  // are the ones the engine will see.
  const childEnv = { ...engineProcessEnv(env), MLXBAR_PROBE_ITEM: item };
  return new Promise((resolve) => {
    const lines: Record<string, unknown>[] = [];
    let nativeError: string | null = null;
    let done = false;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const handle = spawner(
      { entry, execArgv, env: childEnv },
      {
        onMessage: () => {},
        onLog: (line) => {
          const what = /what\(\):\s*(.+)/.exec(line)?.[1]?.trim();
          if (what) nativeError = what.slice(0, 200);
          if (!line.startsWith('{')) return;
          try {
            lines.push(JSON.parse(line));
          } catch {
            /* not ours */
          }
        },
        onExit: (code, signal) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          // stdout lines may arrive just after the exit event: one turn for the line reader.
          setImmediate(() => resolve({ lines, code, signal, nativeError, timedOut }));
        },
      },
    );
    timer = setTimeout(() => {
      timedOut = true;
      handle.kill('SIGKILL');
    }, PROBE_TIMEOUT_MS);
  });
}

function halfFrom(r: ChildResult): HalfDtypeProbe {
  const passed = r.lines.filter((l) => l.ok === true && typeof l.op === 'string').map((l) => l.op as string);
  const failed = r.lines.find((l) => l.ok === false);
  const started = [...r.lines].reverse().find((l) => typeof l.start === 'string')?.start as string | undefined;
  if (r.lines.some((l) => l.done === true) && r.code === 0) {
    return { ok: true, passed, failedOp: null, detail: `${passed.join(', ')} run and match float32` };
  }
  if (failed) return { ok: false, passed, failedOp: String(failed.op), detail: String(failed.detail) };
  if (r.timedOut) return { ok: false, passed, failedOp: null, detail: `the probe did not finish within ${PROBE_TIMEOUT_MS / 1000} s (not cached; probed again next time)` };
  const how = r.signal ? `signal ${r.signal}` : `exit code ${r.code}`;
  const op = started && !passed.includes(started) ? started : null;
  return {
    ok: false,
    passed,
    failedOp: op,
    detail: `${op ?? 'the probe'} aborted the probe process (${how})${r.nativeError ? `: ${r.nativeError}` : ''}`,
  };
}

/** Runs the probe now (a few seconds: one child for the basics, one per half dtype). */
export async function runCapabilityProbe(env: NodeJS.ProcessEnv = process.env, spawner: EngineSpawner = forkSpawner): Promise<MlxCapabilities> {
  return (await probeOnce(env, spawner)).caps;
}

/** The probe plus whether every child finished in time (a timed-out record is not cached). */
async function probeOnce(env: NodeJS.ProcessEnv, spawner: EngineSpawner): Promise<{ caps: MlxCapabilities; complete: boolean }> {
  const t0 = performance.now();
  const { version } = mlxBinaryPaths();
  const binaryKey = mlxBinaryKey();
  // The timed basics run alone (timings must not compete for the cores); the half-dtype children
  // time only half vs float32 within themselves, so they run side by side.
  const basics = await runChild('basics', env, spawner);
  const halves = {} as Record<HalfDtype, HalfDtypeProbe>;
  const results = await Promise.all(HALF_DTYPES.map((d) => runChild(`half:${d}`, env, spawner)));
  HALF_DTYPES.forEach((d, i) => (halves[d] = halfFrom(results[i])));
  const complete = !basics.timedOut && !results.some((r) => r.timedOut);
  const get = <T>(key: string, fallback: T): T => (basics.lines.find((l) => key in l)?.[key] as T) ?? fallback;
  const failed = basics.code !== 0 ? `the probe process failed (exit code ${basics.code}${basics.nativeError ? `: ${basics.nativeError}` : ''})` : 'not measured';
  const caps: MlxCapabilities = {
    schema: CAPABILITIES_SCHEMA,
    binaryKey,
    mlxVersion: version,
    platform: process.platform,
    arch: process.arch,
    probedAt: new Date().toISOString(),
    probeMs: performance.now() - t0,
    gpu: get('gpu', { available: false, detail: failed }),
    half: halves,
    quantizedMatmul: get('quantizedMatmul', { fast: false, q4DecodeMs: null, f32DecodeMs: null, q4PrefillMs: null, f32PrefillMs: null, detail: failed }),
    memoryCounters: get('memoryCounters', { works: false, detail: failed }),
    memoryLimits: get('memoryLimits', { works: false, detail: failed }),
    compile: get('compile', { available: false, works: false, detail: failed }),
  };
  return { caps, complete };
}

/** The cached probe of this build, if any (null when absent, unreadable or for another binary). */
export function readCachedCapabilities(dataDir: string, binaryKey = mlxBinaryKey()): MlxCapabilities | null {
  try {
    const v = JSON.parse(readFileSync(path.join(dataDir, CAPABILITIES_FILE), 'utf8')) as unknown;
    return isCapabilities(v) && v.binaryKey === binaryKey ? v : null;
  } catch {
    return null;
  }
}

const inFlight = new Map<string, Promise<MlxCapabilities>>();

/**
 * This build's capabilities: from `<dataDir>/mlx-capabilities.json` when it was probed before,
 * else probed now and cached (written atomically). Concurrent callers share one probe.
 */
export async function getCapabilities(
  dataDir: string,
  opts: { refresh?: boolean; env?: NodeJS.ProcessEnv; spawn?: EngineSpawner } = {},
): Promise<MlxCapabilities> {
  const key = mlxBinaryKey();
  if (!opts.refresh) {
    const cached = readCachedCapabilities(dataDir, key);
    if (cached) return cached;
  }
  const id = `${dataDir}\0${key}`;
  let p = inFlight.get(id);
  if (!p) {
    p = (async () => {
      const { caps, complete } = await probeOnce(opts.env ?? process.env, opts.spawn ?? forkSpawner);
      try {
        // Only into an existing folder (serve creates it; `check` must not create the data folder).
        if (!existsSync(dataDir) || !complete) return caps;
        const file = path.join(dataDir, CAPABILITIES_FILE);
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, JSON.stringify(caps, null, 2) + '\n');
        renameSync(tmp, file);
      } catch {
        /* a read-only data folder only costs a re-probe next time */
      }
      return caps;
    })().finally(() => inFlight.delete(id));
    inFlight.set(id, p);
  }
  return p;
}

/**
 * Where the capability record is kept: the data folder, or MLXBAR_CAPABILITIES_DIR (the test
 * runner points every test at one temp folder so a run probes once, not once per temp data dir).
 */
export function capabilitiesDir(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.MLXBAR_CAPABILITIES_DIR || dataDir;
}
