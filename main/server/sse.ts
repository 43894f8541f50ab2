// Server-sent events on a raw ServerResponse, the way the OpenAI SDKs parse them: `data: <json>`
// frames, `: ping` comments as keep-alives (ignored by the SDKs), and `data: [DONE]` at the end.
// APIs with named events (Anthropic Messages, OpenAI Responses) use `sendEvent(name, data)`, their
// own keep-alive frame (Anthropic: `event: ping`) and no `[DONE]` (options below).
// Writes honour back-pressure (wait for 'drain' when the socket buffer is full) and never throw
// on a closed socket (mlx-lm's BrokenPipe crash).
import type { ServerResponse } from 'node:http';

export interface SseOptions {
  /** Raw frame written as keep-alive (default `: ping` comment); null = none (NDJSON has no comments). */
  keepAliveFrame?: string | null;
  /** Content type of the stream (default SSE; Ollama streams `application/x-ndjson`). */
  contentType?: string;
  /** Raw frame written by done() (default `data: [DONE]`; null = none, the stream just ends). */
  doneFrame?: string | null;
}

export class SseWriter {
  private started = false;
  private lastWrite = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly keepAliveFrame: string | null;
  private readonly doneFrame: string | null;
  private readonly contentType: string;

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string>,
    opts: SseOptions = {},
  ) {
    this.keepAliveFrame = opts.keepAliveFrame === undefined ? ': ping\n\n' : opts.keepAliveFrame;
    this.contentType = opts.contentType ?? 'text/event-stream; charset=utf-8';
    this.doneFrame = opts.doneFrame === undefined ? 'data: [DONE]\n\n' : opts.doneFrame;
  }

  get isStarted(): boolean {
    return this.started;
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Sends the 200 + event-stream headers (once). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.res.writeHead(200, {
      ...this.headers,
      'content-type': this.contentType,
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.res.flushHeaders();
    this.lastWrite = Date.now();
  }

  /** Sends `: ping` whenever nothing else was written for `intervalMs` (starting the stream if needed). */
  startKeepAlive(intervalMs: number): void {
    if (this.timer || this.keepAliveFrame === null) return;
    const frame = this.keepAliveFrame;
    this.timer = setInterval(() => {
      if (this.closed) return this.stopKeepAlive();
      if (Date.now() - this.lastWrite >= intervalMs - 5) {
        this.start();
        this.raw(frame);
      }
    }, Math.max(50, Math.floor(intervalMs / 2)));
    this.timer.unref();
  }

  stopKeepAlive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Writes one `data:` frame; resolves when the socket can take more (back-pressure). */
  async send(payload: unknown): Promise<void> {
    this.start();
    if (!this.raw(`data: ${JSON.stringify(payload)}\n\n`)) await this.drained();
  }

  /** Writes one named event (`event: <name>` + `data: <json>`), with back-pressure. */
  async sendEvent(event: string, payload: unknown): Promise<void> {
    this.start();
    if (!this.raw(`event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`)) await this.drained();
  }

  /** Writes one JSON line (NDJSON streams), with back-pressure. */
  async sendLine(payload: unknown): Promise<void> {
    this.start();
    if (!this.raw(`${JSON.stringify(payload)}\n`)) await this.drained();
  }

  async done(): Promise<void> {
    this.stopKeepAlive();
    this.start();
    if (this.doneFrame !== null) this.raw(this.doneFrame);
    if (!this.closed) this.res.end();
  }

  private raw(s: string): boolean {
    if (this.closed) return true;
    this.lastWrite = Date.now();
    try {
      return this.res.write(s);
    } catch {
      return true;
    }
  }

  private drained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}
