// Bounded concurrency with a bounded FIFO queue. Beyond the queue a request is refused at once
// (503 queue_full + Retry-After) instead of piling up; a waiter whose client disconnects leaves the
// queue immediately. Fairness: strict FIFO. The limit can change while requests run (settings
// maxConcurrent applied live): a higher one starts waiters at once, a lower one lets the running
// ones finish and starts nobody until fewer than the new limit run.
import { ApiError } from '../common/errors.ts';
import type { ServerLoad } from './hooks.ts';

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

export class WorkSlots {
  private active = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    private maxConcurrent: number,
    private readonly maxQueue: number,
    private readonly retryAfterSeconds: number,
    private readonly onChange: (load: ServerLoad) => void = () => {},
  ) {}

  get load(): ServerLoad {
    return { active: this.active, queued: this.waiters.length };
  }

  get limit(): number {
    return this.maxConcurrent;
  }

  /** Changes how many may run at once (>= 1); waiters start as far as the new limit allows. */
  setLimit(maxConcurrent: number): void {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new RangeError('maxConcurrent must be a positive integer');
    this.maxConcurrent = maxConcurrent;
    if (this.drain()) this.notify();
  }

  /** Resolves with a release function once a slot is free. Rejects with queue_full or the abort reason. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    if (this.active < this.maxConcurrent && this.waiters.length === 0) {
      this.active++;
      this.notify();
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxQueue) {
      return Promise.reject(
        new ApiError('queue_full', 'Server busy: too many requests are waiting. Retry shortly.', {
          retryAfter: this.retryAfterSeconds,
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        this.notify();
        reject(signal?.reason ?? new Error('aborted'));
      };
      const waiter: Waiter = {
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.notify();
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.drain();
      this.notify();
    };
  }

  /** Starts waiters (FIFO) while there is room; true when one started. */
  private drain(): boolean {
    let started = false;
    while (this.waiters.length > 0 && this.active < this.maxConcurrent) {
      const next = this.waiters.shift()!;
      next.cleanup();
      this.active++;
      next.resolve(this.releaser());
      started = true;
    }
    return started;
  }

  private notify() {
    try {
      this.onChange(this.load);
    } catch {
      // a metrics hook must never break scheduling
    }
  }
}
