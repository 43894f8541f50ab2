// Preflight: validates everything a launch depends on and returns a structured report, used by
// `mlx-bar check` (main/cli/check.ts) and at the start of `serve`. Never throws for bad input: every
// problem is a check with status ok | warn | error, a message a user can act on, and a hint.
// Messages name files relative to the model folder ("config.json", "model-00001-of-00002.safetensors")
// and call folders "the model folder"/"the data folder"; everything is passed through the sanitizer
// too, so the report can be shown in the dashboard.
//
// What the seed's validator got wrong and this does instead: exact file names (not substrings:
// "robin.txt" is not a weights file), the safetensors header of every weight file is read and checked
// (bounded, against the real file size), the shard index is checked against the shards, the
// architecture is checked, a busy port is an error (with a free port suggested) found by binding (not
// a connect probe), a non-numeric env var is an error instead of a crash, native dependencies are
// loaded in a child process so an abort cannot kill the checker, and the port checked is the one
// actually used.
import os from 'node:os';
import { sanitizeMessage } from '../common/sanitize.ts';
import { loadSettings, type LoadSettingsResult } from '../settings/load.ts';
import { capabilitiesDir, choosePolicy, describeCapabilities, getCapabilities, type MlxCapabilities, type PolicyChoice } from '../engine/probe/index.ts';
import { checkMemoryFit, checkModel, resolveModelDir } from './preflight-model.ts';
import { checkNative } from './preflight-native.ts';
import type { PreflightCheck, PreflightReport, RunningMlxBar } from './preflight-report.ts';
import { isDemoModelId } from './demo-model.ts';
import { checkDataDir, checkHostPolicy, checkPort } from './preflight-system.ts';

export { formatReport, type CheckStatus, type PreflightCheck, type PreflightReport, type RunningMlxBar } from './preflight-report.ts';
export { probeNative, type NativeProbeResult } from './preflight-native.ts';
export { describeRunning, findFreePort, probeMlxBar, probePort } from './preflight-system.ts';
export { resolveModelDir } from './preflight-model.ts';

export interface PreflightOptions {
  /** Setting path → raw value, from the command line (parseSettingFlags(...).flags). */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Precomputed settings (e.g. serve already loaded them). */
  loaded?: LoadSettingsResult;
  /** Move a bad settings file aside (serve) or only report it (check, default). */
  repairSettings?: boolean;
  /** A missing model is an error (serve) or a warning (check, default). */
  requireModel?: boolean;
  /** Skip the port bind test (e.g. the caller binds itself right after). */
  skipPortCheck?: boolean;
  /** serve --demo: the built-in demo model is used, no model folder is checked. */
  demo?: boolean;
  /** Skip loading MLX in a child process. */
  skipNative?: boolean;
  nativeTimeoutMs?: number;
}

export async function runPreflight(opts: PreflightOptions = {}): Promise<PreflightReport> {
  const env = opts.env ?? process.env;
  const checks: PreflightCheck[] = [];
  let loaded: LoadSettingsResult | null = opts.loaded ?? null;
  if (!loaded) {
    try {
      loaded = loadSettings({ flags: opts.flags, env, repair: opts.repairSettings ?? false });
    } catch (e) {
      checks.push({ id: 'settings', status: 'error', message: `Settings could not be loaded: ${sanitizeMessage(e)}`, hint: null });
    }
  }
  let suggestedPort: number | null = null;
  const found: { running: RunningMlxBar | null } = { running: null };
  let model: PreflightReport['model'] = null;
  let policy: PolicyChoice = choosePolicy('float32', null);
  const report: Pick<PreflightReport, 'capabilities' | 'dtypePolicy'> = { capabilities: null, dtypePolicy: null };
  if (loaded) {
    for (const e of loaded.errors) checks.push({ id: e.source === 'env' ? 'env' : 'flags', status: 'error', message: e.message, hint: `Fix ${e.where}` });
    for (const w of loaded.warnings) checks.push({ id: w.source === 'file' ? 'settings-file' : 'settings', status: 'warn', message: `${w.where} — ${w.message}`, hint: null });
    if ((loaded.file.status === 'invalid' || loaded.file.status === 'corrupt') && !loaded.file.movedTo) {
      checks.push({ id: 'settings-file', status: 'warn', message: 'config.json has problems: the server will keep it aside (config.json.invalid-<time>) and use defaults for the bad values', hint: 'Fix or delete config.json in the data folder' });
    }
    if (!loaded.errors.length && !loaded.warnings.length) checks.push({ id: 'settings', status: 'ok', message: loaded.file.status === 'missing' ? 'No settings file yet: defaults, environment and flags are used' : 'Settings file, environment and flags are valid', hint: null });
    const s = loaded.settings;
    checkHostPolicy(s, checks);
    suggestedPort = await checkPort(s, checks, !!opts.skipPortCheck, found);
    checkDataDir(s, checks);
    // What this MLX build can do (probed once per binary in child processes, cached in the data
    // folder) and the dtype policy it gives with the dtypePolicy setting; the memory fit uses it.
    let capabilities: MlxCapabilities | null = null;
    if (!opts.skipNative && s.dtypePolicy !== 'float32') {
      try {
        capabilities = await getCapabilities(capabilitiesDir(s.dataDir, env), { env });
      } catch (e) {
        checks.push({ id: 'mlx-probe', status: 'warn', message: `The MLX capability probe failed: ${sanitizeMessage(e)}`, hint: 'The engine will compute in float32' });
      }
    }
    policy = choosePolicy(s.dtypePolicy, capabilities);
    report.capabilities = capabilities;
    report.dtypePolicy = policy;
    if (capabilities) {
      const [build, ...rest] = describeCapabilities(capabilities);
      checks.push({ id: 'mlx-probe', status: 'ok', message: build, hint: null });
      for (const line of rest) checks.push({ id: 'mlx-probe', status: 'ok', message: line, hint: null });
    }
    checks.push({ id: 'dtype-policy', status: 'ok', message: `${policy.mode} policy (dtypePolicy "${s.dtypePolicy}"), because:`, hint: null });
    for (const r of policy.reasons) checks.push({ id: 'dtype-policy', status: 'ok', message: `  ${r}`, hint: null });
    // The demo model's id (what /v1/models and `mlx-bar models` show for it) means --demo.
    const demo = opts.demo || isDemoModelId(s.model);
    const dir = demo ? null : resolveModelDir(s.model, s.dataDir);
    if (demo) {
      checks.push({ id: 'model-folder', status: 'ok', message: 'The built-in DEMO model (random weights) will be served', hint: null });
    } else if (!dir) {
      checks.push({
        id: 'model-folder',
        status: opts.requireModel ? 'error' : 'warn',
        message: 'No model is configured',
        hint: 'Pass --model <folder | owner/repo> (or set MLXBAR_MODEL), or --demo to try the built-in random-weight demo model',
      });
    } else {
      const facts = await checkModel(dir, checks);
      if (facts) {
        model = { dir, architecture: facts.architecture, parameters: facts.shape.parameters, weightFiles: facts.weightFiles };
        if (facts.shape.parameters) checkMemoryFit(facts.shape, s, checks, policy);
      }
    }
  }
  if (!opts.skipNative) await checkNative(env, checks, opts.nativeTimeoutMs ?? 30_000);
  for (const c of checks) {
    c.message = sanitizeMessage(c.message);
    if (c.hint) c.hint = sanitizeMessage(c.hint);
  }
  return { ok: !checks.some((c) => c.status === 'error') && !found.running, checks, settings: loaded?.settings ?? null, suggestedPort, model, running: found.running, ...report };
}

/** Total RAM, for callers that want to show it next to the report. */
export const totalRamBytes = () => os.totalmem();
