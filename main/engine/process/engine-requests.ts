// The engine client's requests in flight to one engine process, apart from supervising it
// (engine-client.ts): generation streams keyed by requestId (the process's events pushed in as they
// arrive; a cancel waits for the engine's own `done`, at most a grace period) and request/reply calls
// keyed by a numeric id (stats, prefix cache, embeddings). The supervisor routes the process's
// messages here and ends everything when the process goes away.
import { sanitizeMessage } from '../../common/sanitize.ts';
import type { EngineErrorCode, EngineEvent } from '../types.ts';
import { cancelledDoneEvent, type EngineMessage, type ParentMessage } from './protocol.ts';

/** An Error that carries an EngineErrorCode, so callers can map it to an ApiError. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string) {
    super(sanitizeMessage(message));
    this.name = 'EngineError';
    this.code = code;
  }
}

/** Sends to the process the request was made on; false when that process is gone (or not reachable). */
export type SendToProcess = (msg: ParentMessage) => boolean;

interface Stream {
  requestId: string;
  push(e: EngineEvent): void;
  /** Set when the caller cancelled; the stream ends at the engine's done or after the grace. */
  cancelTimer: NodeJS.Timeout | null;
  ended: boolean;
}

/** A reply to a request/reply call (stats, prefix export/import/clear, embed). */
export type EngineReply = Extract<EngineMessage, { id: number }>;

export class EngineRequests {
  private readonly streams = new Map<string, Stream>();
  /** Replies awaited from the engine, by request id. */
  private readonly pending = new Map<number, { resolve: (m: EngineMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextReplyId = 1;

  constructor(private readonly opts: { cancelGraceMs: number }) {}

  has(requestId: string): boolean {
    return this.streams.has(requestId);
  }

  /**
   * Sends `generate` and yields the request's events until its done/error. An abort of `signal`
   * cancels it; a consumer that stops reading early cancels it too, so the engine frees up.
   */
  async *generate(send: SendToProcess, request: Extract<ParentMessage, { type: 'generate' }>['request'], signal?: AbortSignal): AsyncGenerator<EngineEvent> {
    const requestId = request.requestId;
    const promptTokens = request.promptIds?.length ?? 0;
    const buffer: EngineEvent[] = [];
    let wake: (() => void) | null = null;
    const stream: Stream = {
      requestId,
      cancelTimer: null,
      ended: false,
      push: (e) => {
        if (stream.ended) return;
        buffer.push(e);
        if (e.type === 'done' || e.type === 'error') this.finish(stream);
        wake?.();
        wake = null;
      },
    };
    this.streams.set(requestId, stream);
    const onAbort = (): void => this.cancel(stream, send, promptTokens);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (!send({ type: 'generate', request })) {
        stream.push({ type: 'error', requestId, code: 'engine_unavailable', message: 'The engine process is not reachable' });
      }
      for (;;) {
        while (buffer.length > 0) {
          const e = buffer.shift()!;
          yield e;
          if (e.type === 'done' || e.type === 'error') return;
        }
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (!stream.ended) {
        // The consumer stopped reading early: treat it as a cancel so the engine frees up.
        this.finish(stream);
        send({ type: 'cancel', requestId });
      }
    }
  }

  private cancel(stream: Stream, send: SendToProcess, promptTokens: number): void {
    if (stream.ended || stream.cancelTimer) return;
    send({ type: 'cancel', requestId: stream.requestId });
    // Normally the engine answers with its own `done` (cancelled) within one step; if it is stuck
    // in a long native call, end the stream anyway so the caller is never held hostage.
    stream.cancelTimer = setTimeout(() => stream.push(cancelledDoneEvent(stream.requestId, promptTokens)), this.opts.cancelGraceMs);
    stream.cancelTimer.unref?.();
  }

  private finish(stream: Stream): void {
    stream.ended = true;
    if (stream.cancelTimer) clearTimeout(stream.cancelTimer);
    if (this.streams.get(stream.requestId) === stream) this.streams.delete(stream.requestId);
  }

  /** An event from the process; false when no stream waits for it (dropped). */
  onEvent(event: EngineEvent): boolean {
    const s = this.streams.get(event.requestId);
    if (!s) return false;
    s.push(event);
    return true;
  }

  /** Sends a message that the engine answers with a reply carrying the same id. */
  ask(send: SendToProcess, build: (id: number) => ParentMessage, timeoutMs: number, what: string): Promise<EngineMessage> {
    const id = this.nextReplyId++;
    return new Promise<EngineMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new EngineError('internal_error', `The engine did not answer the ${what} request in time`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      if (!send(build(id))) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new EngineError('engine_unavailable', 'The engine process is not reachable'));
      }
    });
  }

  onReply(msg: EngineReply): void {
    const w = this.pending.get(msg.id);
    if (!w) return;
    clearTimeout(w.timer);
    this.pending.delete(msg.id);
    w.resolve(msg);
  }

  /** The process is gone: every stream ends (crashed: an error; stopped: cancelled) and every call rejects with `err`. */
  endAll(why: 'crashed' | 'cancelled', err: Error): void {
    for (const s of [...this.streams.values()]) {
      if (why === 'crashed') {
        s.push({ type: 'error', requestId: s.requestId, code: 'engine_crashed', message: 'The engine process crashed; the request was not completed' });
      } else {
        s.push(cancelledDoneEvent(s.requestId));
      }
    }
    for (const [id, w] of this.pending) {
      clearTimeout(w.timer);
      w.reject(err);
      this.pending.delete(id);
    }
  }
}
