// `npm run bench [-- --only a,b] [--skip c] [--quick] [--list] [--out file.json]`: runs the registered sections in
// order and prints ONE JSON object on stdout: `{ "results": {...}, "ratios": {...}, "meta": {...} }`.
// A failing section is reported as `{ "error": "..." }` in results and does not stop the others.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { engineProcessEnv, gemvShimLoaded } from '../main/engine/process/blas.ts';
import type { BenchOptions } from './registry.ts';

/**
 * Sections that run the generator in this process compare it with the engine process, which runs
 * with the engine's glibc malloc policy and the one-row product shim preloaded (blas.ts): on Linux
 * the bench re-runs itself under the same (glibc and the loader read them at process start).
 */
function rerunWithEngineMallocPolicy(): number | null {
  if (process.platform !== 'linux' || process.env.MLXBAR_BENCH_REEXEC === '1') return null;
  // Only these two from the engine's environment (the rest of it drops secrets the bench may pass on).
  const engine = engineProcessEnv(process.env);
  const env: NodeJS.ProcessEnv = { ...process.env, MLXBAR_BENCH_REEXEC: '1', GLIBC_TUNABLES: engine.GLIBC_TUNABLES };
  if (engine.LD_PRELOAD) env.LD_PRELOAD = engine.LD_PRELOAD;
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
  return r.status ?? 1;
}

function parseArgs(argv: string[]): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
    else out[a.slice(2)] = true;
  }
  return out;
}

const list = (v: string | boolean | undefined): string[] | null =>
  typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : null;

async function main(): Promise<void> {
  const status = rerunWithEngineMallocPolicy();
  if (status !== null) process.exit(status);
  const { SECTIONS } = await import('./sections.ts');
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const s of SECTIONS) process.stderr.write(`${s.name}: ${s.description}\n`);
    process.stdout.write(JSON.stringify({ sections: SECTIONS.map((s) => s.name) }) + '\n');
    return;
  }
  const only = list(args.only);
  const skip = list(args.skip) ?? [];
  const unknown = [...(only ?? []), ...skip].filter((n) => !SECTIONS.some((s) => s.name === n));
  if (unknown.length) {
    process.stderr.write(`unknown section(s): ${unknown.join(', ')}; known: ${SECTIONS.map((s) => s.name).join(', ')}\n`);
    process.exit(2);
  }
  const chosen = SECTIONS.filter((s) => (!only || only.includes(s.name)) && !skip.includes(s.name));
  const results: Record<string, unknown> = {};
  const ratios: Record<string, number | null> = {};
  const t0 = Date.now();
  for (const section of chosen) {
    const opts: BenchOptions = {
      quick: args.quick === true,
      args,
      log: (line) => process.stderr.write(`[bench:${section.name}] ${line}\n`),
    };
    const ts = Date.now();
    opts.log('start');
    try {
      const r = await section.run(opts);
      results[section.name] = r.result;
      for (const [k, v] of Object.entries(r.ratios ?? {})) ratios[`${section.name}.${k}`] = v;
    } catch (err) {
      results[section.name] = { error: err instanceof Error ? err.message : String(err) };
    }
    opts.log(`done in ${((Date.now() - ts) / 1000).toFixed(1)} s`);
  }
  const meta = {
    quick: args.quick === true,
    sections: chosen.map((s) => s.name),
    seconds: Math.round((Date.now() - t0) / 100) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    totalMemGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    glibcTunables: process.env.GLIBC_TUNABLES ?? null,
    gemvShim: gemvShimLoaded(),
    date: new Date().toISOString(),
  };
  const json = JSON.stringify({ results, ratios, meta }, null, 2) + '\n';
  // `--out file` also writes it to a file (npm prints its own "> script" banner on stdout; use
  // `npm run -s bench` or --out when piping the JSON somewhere).
  if (typeof args.out === 'string') writeFileSync(args.out, json);
  process.stdout.write(json);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
