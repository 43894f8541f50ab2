// A pull's progress: bytes and files so far, a smoothed transfer speed and the ETA, emitted at most
// every `intervalMs` (and at every file's end) as PullProgress events.

export interface PullProgress {
  id: string;
  /** File currently transferring (repository path), or null between files. */
  file: string | null;
  receivedBytes: number;
  totalBytes: number;
  /** Smoothed transfer speed over the last seconds. */
  bytesPerSec: number;
  /** Seconds left at the current speed; null while unknown. */
  etaSec: number | null;
  filesDone: number;
  filesTotal: number;
}

export class PullMeter {
  /** Bytes of the model present so far (resumed + received). */
  received = 0;
  /** Bytes written from the network by this run (what its disk reservation has used up). */
  written = 0;
  total = 0;
  filesDone = 0;
  filesTotal = 0;
  /** File currently transferring, or null between files. */
  file: string | null = null;
  private lastEmit = 0;
  private speed = 0;
  private windowStart = Date.now();
  private windowBytes = 0;

  constructor(
    private readonly id: string,
    private readonly intervalMs: number,
    private readonly emit: (p: PullProgress) => void,
  ) {}

  /** `n` bytes arrived from the network. */
  add(n: number): void {
    this.received += n;
    this.written += n;
    this.windowBytes += n;
    this.tick(false);
  }

  /** Updates the speed and emits, unless the last event is younger than the interval (`force`: always). */
  tick(force: boolean): void {
    const now = Date.now();
    const winMs = now - this.windowStart;
    if (winMs >= 500) {
      const inst = (this.windowBytes * 1000) / winMs;
      // Exponential smoothing so one slow chunk does not make the ETA jump around.
      this.speed = this.speed === 0 ? inst : this.speed * 0.7 + inst * 0.3;
      this.windowStart = now;
      this.windowBytes = 0;
    }
    if (!force && now - this.lastEmit < this.intervalMs) return;
    this.lastEmit = now;
    this.emit(this.snapshot());
  }

  snapshot(): PullProgress {
    const left = Math.max(0, this.total - this.received);
    return {
      id: this.id,
      file: this.file,
      receivedBytes: this.received,
      totalBytes: this.total,
      bytesPerSec: this.speed,
      etaSec: this.speed > 0 ? left / this.speed : left === 0 ? 0 : null,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
    };
  }
}
