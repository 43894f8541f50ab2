// How the desktop app starts the engine + server: the same core as `mlx-bar serve` (startServe in
// main/cli/serve.ts), fed from the validated settings. No electron import: the shell passes the
// utilityProcess spawner in, so this is also usable (and tested) in plain Node.
import { existsSync } from 'node:fs';
import type { Settings } from '../settings/schema.ts';
import { toServerConfig } from '../settings/server-config.ts';
import type { EngineSpawner } from '../engine/process/spawn.ts';
import type { CoreHandle } from './controller.ts';
import { APP_ORIGIN } from './app-origin.ts';
import { isDemoModelId } from '../core/demo-model.ts';

export interface CoreStartOptions {
  /** utilityProcess-based spawner in Electron; default: child_process.fork. */
  engineSpawn?: EngineSpawner;
  log?: (line: string) => void;
}

export function readableStartError(err: unknown, s?: Settings): string {
  const code = (err as { code?: string })?.code;
  if (code === 'EADDRINUSE') return `Port ${s?.port ?? ''} is already in use; choose another port in Settings (0 picks a free one).`;
  if (code === 'EACCES' || code === 'EPERM') return `Not allowed to listen on port ${s?.port ?? ''}; use a port above 1024.`;
  if (code === 'EADDRNOTAVAIL') return 'The configured host address is not available on this machine.';
  return err instanceof Error ? err.message : String(err);
}

/**
 * The browser origins the server accepts: the user's configured ones plus the app window's own
 * (mlxbar://app, ours by construction: only our protocol handler serves it). Added here at start,
 * never written into the settings, so the Settings page shows only what the user configured.
 */
export function serverAllowedOrigins(s: Pick<Settings, 'allowedOrigins'>): string[] {
  return [...new Set([...s.allowedOrigins, APP_ORIGIN])];
}

export async function startCoreFromSettings(s: Settings, opts: CoreStartOptions = {}): Promise<CoreHandle> {
  if (!s.model) throw new Error('No model selected: choose a model folder in Settings.');
  // The demo model's id is accepted as is: startServe builds the demo model when it is missing.
  if (!existsSync(s.model) && !isDemoModelId(s.model)) {
    // Not a folder: a library id (what the tray and the Models page store) must be downloaded
    // already — the app never starts a multi-GB download just because it was launched.
    const { resolveModelArg } = await import('../library/index.ts');
    try {
      await resolveModelArg(s.model, s.dataDir, { pull: false });
    } catch {
      throw new Error('The selected model is not downloaded or its folder no longer exists; pick one in Models or Settings.');
    }
  }
  const { startServe } = await import('../core/serve.ts');
  const serveOpts = {
    model: s.model,
    host: s.host,
    port: s.port,
    dataDir: s.dataDir,
    apiKey: s.apiKey ? s.apiKey : null,
    // The window (mlxbar://app) calls this server cross-origin (Models page, chat): allow it.
    allowedOrigins: serverAllowedOrigins(s),
    demo: false,
    // Every server limit from the same validated settings (queue, body size, timeouts…).
    server: { ...toServerConfig(s), allowedOrigins: serverAllowedOrigins(s) },
    warnings: [] as string[],
    settings: s,
    // startServe hands it to createEngineClient({ spawn }): the engine runs in a utilityProcess.
    engineSpawn: opts.engineSpawn,
  };
  // A cast, not a literal: ServeOptions grows fields over time and the extra engineSpawn must pass.
  const running = await startServe(serveOpts as Parameters<typeof startServe>[0], opts.log ?? (() => {}));
  return {
    url: running.url,
    model: running.engine.model?.id ?? null,
    stop: () => running.stop(),
  };
}
