// IPC with the renderer, VS Code style (src/vs/base/parts/ipc/electron-main/ipcMain.ts): every
// handler is registered through this wrapper, which refuses
//   - channels without the `mlxbar:` prefix or not registered here,
//   - senders whose frame is not on the app origin (parsed, not string-prefixed),
//   - sub-frames (senderFrame.parent !== null),
//   - arguments that fail the channel's validator,
// before the handler runs. A refused call rejects with a generic message; handler errors reach the
// renderer sanitized (Electron serializes only `message`, so that text is the leak surface).
// Only types come from electron, so this is unit-tested in plain Node.
import type { IpcMain, IpcMainInvokeEvent } from 'electron';
import { sanitizeMessage } from '../common/sanitize.ts';
import { IPC_PREFIX } from '../../preload/api.ts';
import { APP_ORIGIN, parseUrl } from './app-origin.ts';

export interface FrameLike {
  url: string;
  parent: unknown | null;
}

export interface SenderEventLike {
  senderFrame: FrameLike | null;
}

export type SenderVerdict = { ok: true } | { ok: false; reason: string };

export function validateSender(channel: unknown, event: SenderEventLike, appOrigin: string = APP_ORIGIN): SenderVerdict {
  if (typeof channel !== 'string' || !channel.startsWith(IPC_PREFIX)) return { ok: false, reason: 'unknown channel' };
  const frame = event?.senderFrame;
  if (!frame) return { ok: false, reason: 'no sender frame' };
  if (frame.parent !== null) return { ok: false, reason: 'sub-frame sender' };
  const u = parseUrl(frame.url);
  if (!u) return { ok: false, reason: 'unparseable sender url' };
  if (u.origin !== appOrigin && `${u.protocol}//${u.host}` !== appOrigin) return { ok: false, reason: 'foreign sender origin' };
  return { ok: true };
}

/** Argument validators: return the validated tuple or a message. */
export type ArgsValidator<A extends unknown[]> = (args: unknown[]) => { ok: true; value: A } | { ok: false; message: string };

export const noArgs: ArgsValidator<[]> = (args) => (args.length === 0 ? { ok: true, value: [] } : { ok: false, message: 'expected no arguments' });

export function oneString(maxLength: number): ArgsValidator<[string]> {
  return (args) =>
    args.length === 1 && typeof args[0] === 'string' && args[0].length <= maxLength
      ? { ok: true, value: [args[0]] }
      : { ok: false, message: `expected one string of at most ${maxLength} characters` };
}

const MAX_SETTINGS_JSON = 256 * 1024;

/** A plain JSON object (no prototypes, functions or cycles; bounded size). */
export const oneSettingsObject: ArgsValidator<[Record<string, unknown>]> = (args) => {
  if (args.length !== 1) return { ok: false, message: 'expected one settings object' };
  const v = args[0];
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { ok: false, message: 'expected one settings object' };
  let json: string;
  try {
    json = JSON.stringify(v);
  } catch {
    return { ok: false, message: 'settings must be plain JSON' };
  }
  if (json.length > MAX_SETTINGS_JSON) return { ok: false, message: 'settings object is too large' };
  const clean = JSON.parse(json, (k, val) => (k === '__proto__' || k === 'constructor' || k === 'prototype' ? undefined : val)) as Record<string, unknown>;
  return { ok: true, value: [clean] };
};

export class IpcRefusedError extends Error {
  constructor(readonly reason: string) {
    super('Request refused');
    this.name = 'IpcRefusedError';
  }
}

export interface GuardedIpcOptions {
  appOrigin?: string;
  /** Called with every refusal (for the log); never sees argument values. */
  onRefused?: (channel: string, reason: string) => void;
}

export type IpcMainLike = Pick<IpcMain, 'handle' | 'removeHandler'>;

export class GuardedIpc {
  private readonly channels = new Set<string>();
  constructor(
    private readonly ipc: IpcMainLike,
    private readonly opts: GuardedIpcOptions = {},
  ) {}

  handle<A extends unknown[], R>(channel: string, validate: ArgsValidator<A>, handler: (...args: A) => R | Promise<R>): void {
    if (!channel.startsWith(IPC_PREFIX)) throw new Error(`IPC channel "${channel}" lacks the ${IPC_PREFIX} prefix`);
    if (this.channels.has(channel)) throw new Error(`IPC channel "${channel}" registered twice`);
    this.channels.add(channel);
    this.ipc.handle(channel, async (event: IpcMainInvokeEvent, ...args: unknown[]) => {
      const verdict = validateSender(channel, event as unknown as SenderEventLike, this.opts.appOrigin);
      if (!verdict.ok) {
        this.opts.onRefused?.(channel, verdict.reason);
        throw new IpcRefusedError(verdict.reason);
      }
      const parsed = validate(args);
      if (!parsed.ok) {
        this.opts.onRefused?.(channel, `invalid arguments: ${parsed.message}`);
        throw new Error(`Invalid arguments: ${parsed.message}`);
      }
      try {
        return await handler(...parsed.value);
      } catch (err) {
        throw new Error(sanitizeMessage(err));
      }
    });
  }

  registered(): string[] {
    return [...this.channels];
  }

  dispose(): void {
    for (const c of this.channels) this.ipc.removeHandler(c);
    this.channels.clear();
  }
}
