// Bounded concurrency with a bounded FIFO queue. Beyond the queue a request is refused at once
// (503 queue_full + Retry-After) instead of piling up; a waiter whose client disconnects leaves the
// queue immediately. Fairness: strict FIFO.
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
    private readonly maxConcurrent: number,
    private readonly maxQueue: number,
    private readonly retryAfterSeconds: number,
    private readonly onChange: (load: ServerLoad) => void = () => {},
  ) {}

  get load(): ServerLoad {
    return { active: this.active, queued: this.waiters.length };
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
      const next = this.waiters.shift();
      if (next) {
        // Hand the slot over directly: `active` stays the same.
        next.cleanup();
        next.resolve(this.releaser());
      } else {
        this.active--;
      }
      this.notify();
    };
  }

  private notify() {
    try {
      this.onChange(this.load);
    } catch {
      // a metrics hook must never break scheduling
    }
  }
}
