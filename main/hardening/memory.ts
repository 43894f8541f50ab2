// Memory sampler, pressure levels and per-request memory admission.
//
// Why: the seed never sampled memory (its numbers were always 0) and used "this process's RSS as a %
// of RAM" as an OOM signal. We sample, every second, the RSS of the server process and of the engine
// process (through EngineClient.stats(), which also carries MLX counters where the build has them;
// the CPU build of @frost-beta/mlx 0.0.7 reports 0) and derive:
//   - current / peak footprint (server + engine) and growth relative to the first sample taken after
//     the model loaded (so the model weights are not "growth");
//   - a pressure level from configurable watermarks on the app footprint (bytes, or % of total RAM)
//     and on system memory (% of RAM in use):
//       * Linux: "in use" = 1 − MemAvailable/MemTotal from /proc/meminfo (min with
//         process.availableMemory(), which honours cgroup limits);
//       * macOS: os.freemem() (and process.availableMemory() before libuv PR #4908) count only truly
//         free pages and read near zero on a healthy Mac, so they are NOT used; instead the kernel's
//         own level `kern.memorystatus_vm_pressure_level` (1 normal, 2 warn, 4 critical) is read with
//         `sysctl -n` (untested here: this box is Linux);
//       * elsewhere only the app footprint watermarks apply.
//   - transitions call onSoft (clear caches), onHard (shed load) and onNormal (recovered). A level is
//     left only once the signal falls 10% below its watermark, so a footprint hovering at a line does
//     not flap.
// The timer is unref'd so a forgotten sampler never keeps the process alive.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { ApiError } from '../common/errors.ts';
import type { EngineStats, ModelInfo } from '../engine/types.ts';
import { kvBytesFor, tokensForBytes } from '../engine/model/kv-size.ts';
import type { MemoryMetrics } from '../common/metrics-types.ts';
import { KvReservations, type KvReservation } from './kv-reservations.ts';

export type PressureLevel = 'normal' | 'soft' | 'hard';

export interface Watermark {
  /** Absolute app footprint (server + engine RSS), bytes. 0/undefined = not used. */
  bytes?: number;
  /** App footprint as % of total RAM (0..100). 0/undefined = not used. */
  percent?: number;
}

export interface MemorySample {
  /** ms since epoch */
  at: number;
  serverRssBytes: number;
  engineRssBytes: number;
  /** server + engine */
  footprintBytes: number;
  /** null: the MLX build has no working counter (CPU build). */
  mlxActiveBytes: number | null;
  mlxPeakBytes: number | null;
  mlxCacheBytes: number | null;
  /** The engine's KV buffer pool (kv-pool.ts), null where it has none. */
  kvPoolBytes: number | null;
  totalRamBytes: number;
  /** null where no honest figure exists (macOS, Windows). */
  systemAvailableBytes: number | null;
  /** 0..100, null where unknown. */
  systemUsedPercent: number | null;
  /** macOS kern.memorystatus_vm_pressure_level (1/2/4), null elsewhere. */
  kernelPressureLevel: number | null;
  engineAvailable: boolean;
}

/** The snapshot's memory block, every field present, plus the system figure. */
export interface MemoryStats extends Required<MemoryMetrics> {
  system_available_mb: number | null;
  pressure: PressureLevel;
  samples: number;
}

export interface MemorySamplerOptions {
  engineStats?: () => Promise<EngineStats>;
  /** Whether a model is loaded (baseline for growth is the first sample where this is true).
   *  Default: the engine reported an RSS > 0, or true when no engineStats was given. */
  modelLoaded?: () => boolean;
  intervalMs?: number;
  soft?: Watermark;
  hard?: Watermark;
  /** System "% of RAM in use" watermarks (Linux). Defaults 90 / 97. Set to 0 to disable. */
  systemSoftPercent?: number;
  systemHardPercent?: number;
  onSoft?: (s: MemorySample) => void;
  onHard?: (s: MemorySample) => void;
  onNormal?: (s: MemorySample) => void;
  /** Test seams (real sources by default). */
  readServerRss?: () => number;
  readSystem?: () => { totalBytes: number; availableBytes: number | null; kernelLevel: number | null };
  now?: () => number;
  /** Timeout for one engineStats() call; a hung engine must not stall sampling. */
  engineStatsTimeoutMs?: number;
}

const MB = 1024 * 1024;
const round1 = (x: number) => Math.round(x * 10) / 10;

/** Reads MemTotal / MemAvailable (kB) from /proc/meminfo; null if not Linux or unreadable. */
export function readProcMeminfo(text?: string): { totalBytes: number; availableBytes: number } | null {
  let t = text;
  if (t === undefined) {
    try {
      t = readFileSync('/proc/meminfo', 'utf8');
    } catch {
      return null;
    }
  }
  const total = /^MemTotal:\s+(\d+)\s*kB/m.exec(t);
  const avail = /^MemAvailable:\s+(\d+)\s*kB/m.exec(t);
  if (!total || !avail) return null;
  return { totalBytes: Number(total[1]) * 1024, availableBytes: Number(avail[1]) * 1024 };
}

let darwinLevel: number | null = null;
let darwinPending = false;
function pollDarwinPressure(): void {
  if (darwinPending) return;
  darwinPending = true;
  execFile('sysctl', ['-n', 'kern.memorystatus_vm_pressure_level'], { timeout: 1000 }, (err, out) => {
    darwinPending = false;
    const n = Number(String(out ?? '').trim());
    darwinLevel = !err && Number.isFinite(n) && n > 0 ? n : null;
  });
}

/** Total RAM, available memory (honest sources only) and the macOS kernel pressure level. */
export function readSystemMemory(): { totalBytes: number; availableBytes: number | null; kernelLevel: number | null } {
  const totalBytes = os.totalmem();
  if (process.platform === 'linux') {
    const mi = readProcMeminfo();
    let avail = mi?.availableBytes ?? null;
    const pa = (process as unknown as { availableMemory?: () => number }).availableMemory;
    if (typeof pa === 'function') {
      const v = pa.call(process);
      if (Number.isFinite(v) && v > 0) avail = avail === null ? v : Math.min(avail, v);
    }
    return { totalBytes: mi?.totalBytes ?? totalBytes, availableBytes: avail, kernelLevel: null };
  }
  if (process.platform === 'darwin') {
    pollDarwinPressure(); // async; the value lags by one sample
    return { totalBytes, availableBytes: null, kernelLevel: darwinLevel };
  }
  return { totalBytes, availableBytes: null, kernelLevel: null };
}

/** Resolves a watermark to bytes (the smaller of the two forms when both are set); 0 = unset. */
export function watermarkBytes(w: Watermark | undefined, totalRamBytes: number): number {
  if (!w) return 0;
  const cands: number[] = [];
  if (w.bytes && w.bytes > 0) cands.push(w.bytes);
  if (w.percent && w.percent > 0) cands.push((Math.min(100, w.percent) / 100) * totalRamBytes);
  return cands.length ? Math.min(...cands) : 0;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // Not unref'd: it lives at most `ms`, and an unref'd timer would let a process whose only
    // pending work is this sample exit with the promise unsettled.
    const t = setTimeout(() => reject(new Error('timeout')), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** Settings (main/settings/schema.ts `memory`) → watermarks: the MB form when set, else the percentage. */
export function watermarksFromSettings(m: { softLimitMb: number; hardLimitMb: number; softPercent: number; hardPercent: number }): { soft: Watermark; hard: Watermark } {
  return {
    soft: m.softLimitMb > 0 ? { bytes: m.softLimitMb * MB } : { percent: m.softPercent },
    hard: m.hardLimitMb > 0 ? { bytes: m.hardLimitMb * MB } : { percent: m.hardPercent },
  };
}

export class MemorySampler {
  private readonly opts: MemorySamplerOptions;
  private timer: NodeJS.Timeout | null = null;
  private last: MemorySample | null = null;
  private peakFootprint = 0;
  private enginePeak = 0;
  private baseline = 0;
  private count = 0;
  private level: PressureLevel = 'normal';
  private inflight: Promise<MemorySample> | null = null;
  private lastEngine: EngineStats | null = null;
  /** Worst-case KV still to come of the generations running now (see kv-reservations.ts). */
  readonly reservations = new KvReservations();

  constructor(opts: MemorySamplerOptions = {}) {
    this.opts = opts;
  }

  /** Starts sampling every intervalMs (default 1000); takes one sample right away. */
  start(): this {
    if (this.timer) return this;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The growth baseline is re-taken at the next sample where a model is loaded (call after a reload). */
  resetBaseline(): void {
    this.baseline = 0;
  }

  get pressure(): PressureLevel {
    return this.level;
  }

  get latest(): MemorySample | null {
    return this.last;
  }

  get engineStats(): EngineStats | null {
    return this.lastEngine;
  }

  /** Takes one sample now (concurrent callers share it). Never rejects. */
  sample(): Promise<MemorySample> {
    if (this.inflight) return this.inflight;
    this.inflight = this.takeSample().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async takeSample(): Promise<MemorySample> {
    const now = this.opts.now ?? Date.now;
    // The KV running generations hold now is in the RSS read below (engine stats come after this).
    const sawReservations = this.reservations.sampleStarted();
    const serverRss = (this.opts.readServerRss ?? (() => process.memoryUsage.rss()))();
    let engineRss = 0;
    let mlxActive: number | null = null;
    let mlxPeak: number | null = null;
    let mlxCache: number | null = null;
    let kvPool: number | null = null;
    let engineAvailable = false;
    if (this.opts.engineStats) {
      try {
        const st = await withTimeout(this.opts.engineStats(), this.opts.engineStatsTimeoutMs ?? 2000);
        this.lastEngine = st;
        engineRss = Number.isFinite(st.rssBytes) ? st.rssBytes : 0;
        const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
        mlxActive = n(st.mlxActiveBytes);
        mlxPeak = n(st.mlxPeakBytes);
        mlxCache = n(st.mlxCacheBytes);
        kvPool = n(st.kvPool?.bytes);
        engineAvailable = true;
      } catch {
        engineAvailable = false; // engine down or restarting: its RSS is unknown, count 0
      }
    }
    const sys = (this.opts.readSystem ?? readSystemMemory)();
    const footprint = serverRss + engineRss;
    const s: MemorySample = {
      at: now(),
      serverRssBytes: serverRss,
      engineRssBytes: engineRss,
      footprintBytes: footprint,
      mlxActiveBytes: mlxActive,
      mlxPeakBytes: mlxPeak,
      mlxCacheBytes: mlxCache,
      kvPoolBytes: kvPool,
      totalRamBytes: sys.totalBytes,
      systemAvailableBytes: sys.availableBytes,
      systemUsedPercent:
        sys.availableBytes === null || !sys.totalBytes ? null : Math.max(0, Math.min(100, (1 - sys.availableBytes / sys.totalBytes) * 100)),
      kernelPressureLevel: sys.kernelLevel,
      engineAvailable,
    };
    this.count++;
    this.last = s;
    sawReservations();
    this.peakFootprint = Math.max(this.peakFootprint, footprint);
    this.enginePeak = Math.max(this.enginePeak, engineRss, mlxPeak ?? 0);
    const loaded = this.opts.modelLoaded ? this.opts.modelLoaded() : this.opts.engineStats ? engineRss > 0 : true;
    if (this.baseline === 0 && loaded && footprint > 0) this.baseline = footprint;
    this.updateLevel(s);
    return s;
  }

  /** Pressure level this sample indicates, with 10% hysteresis on the way down. */
  levelFor(s: MemorySample, current: PressureLevel = this.level): PressureLevel {
    const softB = watermarkBytes(this.opts.soft, s.totalRamBytes);
    const hardB = watermarkBytes(this.opts.hard, s.totalRamBytes);
    const sysSoft = this.opts.systemSoftPercent ?? 90;
    const sysHard = this.opts.systemHardPercent ?? 97;
    const over = (value: number | null, line: number, stickyIn: boolean) =>
      value !== null && line > 0 && value >= (stickyIn ? line * 0.9 : line);
    const hard =
      over(s.footprintBytes, hardB, current === 'hard') ||
      over(s.systemUsedPercent, sysHard, current === 'hard') ||
      (s.kernelPressureLevel !== null && s.kernelPressureLevel >= 4);
    if (hard) return 'hard';
    const sticky = current !== 'normal';
    const soft =
      over(s.footprintBytes, softB, sticky) ||
      over(s.systemUsedPercent, sysSoft, sticky) ||
      (s.kernelPressureLevel !== null && s.kernelPressureLevel >= 2);
    return soft ? 'soft' : 'normal';
  }

  private updateLevel(s: MemorySample): void {
    const next = this.levelFor(s);
    if (next === this.level) return;
    this.level = next;
    try {
      if (next === 'hard') this.opts.onHard?.(s);
      else if (next === 'soft') this.opts.onSoft?.(s);
      else this.opts.onNormal?.(s);
    } catch {
      // a failing callback must not stop sampling
    }
  }

  stats(): MemoryStats {
    const s = this.last;
    const cur = s?.footprintBytes ?? 0;
    return {
      current_mb: round1(cur / MB),
      peak_mb: round1(this.peakFootprint / MB),
      growth_percent: this.baseline > 0 ? round1(((cur - this.baseline) / this.baseline) * 100) : 0,
      server_rss_mb: round1((s?.serverRssBytes ?? 0) / MB),
      engine_rss_mb: round1((s?.engineRssBytes ?? 0) / MB),
      engine_peak_mb: round1(this.enginePeak / MB),
      mlx_active_mb: s?.mlxActiveBytes == null ? null : round1(s.mlxActiveBytes / MB),
      mlx_peak_mb: s?.mlxPeakBytes == null ? null : round1(s.mlxPeakBytes / MB),
      mlx_cache_mb: s?.mlxCacheBytes == null ? null : round1(s.mlxCacheBytes / MB),
      kv_pool_mb: s?.kvPoolBytes == null ? null : round1(s.kvPoolBytes / MB),
      system_available_mb: s?.systemAvailableBytes == null ? null : round1(s.systemAvailableBytes / MB),
      reserved_kv_mb: round1(this.reservations.reservedBytes() / MB),
      reserving_generations: this.reservations.count,
      pressure: this.level,
      samples: this.count,
    };
  }

  /** Footprint budget in bytes: the hard watermark, else 90% of RAM. */
  budgetBytes(totalRamBytes = this.last?.totalRamBytes ?? os.totalmem()): number {
    return watermarkBytes(this.opts.hard, totalRamBytes) || 0.9 * totalRamBytes;
  }

  /**
   * Admission by memory for one request, using the latest sample. The KV the running generations
   * may still add (their reservations) counts as taken unless `reservations` is false (a request
   * checked on arrival, which may wait in the queue until some of them ended); `reservedBytes`
   * adds more on top.
   */
  admit(model: ModelInfo, promptTokens: number, maxTokens: number, opts: { contextLength?: number; reservedBytes?: number; reservations?: boolean } = {}): ApiError | null {
    const s = this.last;
    return admitByMemory({
      model,
      promptTokens,
      maxTokens,
      contextLength: opts.contextLength,
      footprintBytes: s?.footprintBytes ?? 0,
      reservedBytes: (opts.reservations === false ? 0 : this.reservations.reservedBytes()) + (opts.reservedBytes ?? 0),
      budgetBytes: this.budgetBytes(),
      systemAvailableBytes: s?.systemAvailableBytes ?? null,
    });
  }

  /**
   * Admission of a generation that starts now (it has its slot): `admit`, and when it passes, a
   * reservation of its worst-case KV (prompt + max_tokens, bounded by the context) that later
   * admissions count until it is released.
   */
  reserve(model: ModelInfo, promptTokens: number, maxTokens: number, opts: { contextLength?: number } = {}): ApiError | KvReservation {
    const refusal = this.admit(model, promptTokens, maxTokens, opts);
    if (refusal) return refusal;
    return this.reservations.reserve(model, promptTokens, maxTokens, opts.contextLength);
  }
}

export function createMemorySampler(opts: MemorySamplerOptions = {}): MemorySampler {
  return new MemorySampler(opts);
}

// ---------------------------------------------------------------- per-request estimate & admission

export interface RequestMemoryEstimate {
  kvBytes: number;
  activationBytes: number;
  totalBytes: number;
}

/** Prefill runs in chunks of this many tokens (engine-findings §7.3); activations scale with it. */
export const PREFILL_CHUNK = 512;
const F32 = 4;

/**
 * KV bytes (kvBytesPerToken × (prompt + max new tokens), sliding-window layers counted only up to
 * their ring size: kv-size.ts) plus an activation headroom for one prefill
 * chunk: attention scores (heads × chunk × context × 4 B), hidden/MLP temporaries (≈ 16 × chunk ×
 * hidden × 4 B), logits for the last position (2 × vocab × 4 B) and a fixed 32 MiB for allocator
 * slack. Deliberately an over-estimate; NaN/negative inputs give Infinity (fail safe).
 */
export function estimateRequestMemory(model: Pick<ModelInfo, 'kvBytesPerToken' | 'kvSliding' | 'hiddenSize' | 'headDim' | 'vocabSize'>, promptTokens: number, maxTokens: number): RequestMemoryEstimate {
  const vals = [model.kvBytesPerToken, model.hiddenSize, model.headDim, model.vocabSize, promptTokens, maxTokens];
  if (vals.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
    return { kvBytes: Infinity, activationBytes: Infinity, totalBytes: Infinity };
  }
  const tokens = promptTokens + maxTokens;
  const kvBytes = kvBytesFor(model.kvBytesPerToken, model.kvSliding, tokens);
  const chunk = Math.max(1, Math.min(PREFILL_CHUNK, promptTokens || 1));
  const heads = model.headDim > 0 ? Math.max(1, Math.round(model.hiddenSize / model.headDim)) : 1;
  const scores = heads * chunk * tokens * F32;
  const hidden = 16 * chunk * model.hiddenSize * F32;
  const logits = 2 * model.vocabSize * F32;
  const activationBytes = scores + hidden + logits + 32 * MB;
  return { kvBytes, activationBytes, totalBytes: kvBytes + activationBytes };
}

/**
 * What contextLength "auto" means for a loaded model: its own limit, capped by the longest request
 * whose memory estimate (estimateRequestMemory: KV bytes per token from the model's shape, plus one
 * prefill chunk's activations, which grow with the context) fits in `budgetBytes` next to the
 * weights. So a request inside the auto limit is never refused as "could never fit" by admitByMemory.
 */
export function autoContextLength(model: Pick<ModelInfo, 'contextLength' | 'kvBytesPerToken' | 'kvSliding' | 'hiddenSize' | 'headDim' | 'vocabSize' | 'weightBytes'>, budgetBytes: number): number {
  const heads = model.headDim > 0 ? Math.max(1, Math.round(model.hiddenSize / model.headDim)) : 1;
  const scoresPerToken = heads * PREFILL_CHUNK * F32;
  const fixed = 16 * PREFILL_CHUNK * model.hiddenSize * F32 + 2 * model.vocabSize * F32 + 32 * MB;
  const room = budgetBytes - Math.max(0, model.weightBytes || 0) - fixed;
  if (!Number.isFinite(room) || !(model.kvBytesPerToken + scoresPerToken > 0)) return model.contextLength;
  return Math.max(0, Math.min(model.contextLength, tokensForBytes(model.kvBytesPerToken, model.kvSliding, room, scoresPerToken)));
}

/** The context limit requests get: the setting ("auto", 0 = the model's, or a cap) resolved for `model`. */
export function effectiveContextLength(
  model: Parameters<typeof autoContextLength>[0],
  setting: number | 'auto' | undefined,
  budgetBytes: number,
): number {
  if (setting === 'auto') return autoContextLength(model, budgetBytes);
  if (typeof setting === 'number' && setting > 0) return Math.min(model.contextLength, setting);
  return model.contextLength;
}

export interface AdmitArgs {
  model: ModelInfo;
  promptTokens: number;
  maxTokens: number;
  /** Context cap from settings; the effective limit is min(model.contextLength, cap). */
  contextLength?: number;
  /** Current server + engine footprint (bytes), weights included. */
  footprintBytes: number;
  /** Bytes promised to admitted requests not yet visible in RSS. */
  reservedBytes?: number;
  /** Footprint the app may reach (hard watermark). */
  budgetBytes: number;
  /** Linux MemAvailable; null where unknown. */
  systemAvailableBytes?: number | null;
}

const fmtMb = (b: number) => `${Math.ceil(b / MB)} MB`;

/**
 * Refuse before any work rather than let the engine abort:
 *  - prompt + max_tokens over the context → 400 context_length_exceeded (OpenAI's wording);
 *  - the request could never fit, even with nothing else running → 400 context_length_exceeded
 *    explaining the memory limit (retrying cannot help, so not a 5xx the SDKs would retry);
 *  - it does not fit right now → 503 insufficient_memory with Retry-After.
 * Returns null when admitted.
 */
export function admitByMemory(a: AdmitArgs): ApiError | null {
  const ctx = Math.min(a.model.contextLength || Infinity, a.contextLength && a.contextLength > 0 ? a.contextLength : Infinity);
  const requested = a.promptTokens + a.maxTokens;
  if (Number.isFinite(ctx) && requested > ctx) {
    return new ApiError(
      'context_length_exceeded',
      `This model's maximum context length is ${ctx} tokens. However, you requested ${requested} tokens (${a.promptTokens} in the messages, ${a.maxTokens} in the completion). Please reduce the length of the messages or completion.`,
      { param: 'messages' },
    );
  }
  const est = estimateRequestMemory(a.model, a.promptTokens, a.maxTokens);
  if (!Number.isFinite(est.totalBytes)) {
    return new ApiError('insufficient_memory', 'Could not estimate the memory this request needs; refusing it to protect the engine.', { retryAfter: 5 });
  }
  // What the app would use with the model loaded and nothing else running.
  const idleFloor = Math.max(a.model.weightBytes || 0, 0);
  if (idleFloor + est.totalBytes > a.budgetBytes) {
    const maxTokensFit = Math.max(0, Math.min(a.model.contextLength || Infinity, tokensForBytes(Math.max(1, a.model.kvBytesPerToken), a.model.kvSliding, a.budgetBytes - idleFloor - est.activationBytes)));
    return new ApiError(
      'context_length_exceeded',
      `This request needs about ${fmtMb(est.totalBytes)} of memory for its ${requested} tokens, more than the ${fmtMb(Math.max(0, a.budgetBytes - idleFloor))} available next to the model; at most about ${maxTokensFit} tokens fit. Please reduce the length of the messages or completion.`,
      { param: 'messages' },
    );
  }
  const free = a.budgetBytes - a.footprintBytes - (a.reservedBytes ?? 0);
  const sysFree = a.systemAvailableBytes == null ? Infinity : a.systemAvailableBytes - 256 * MB;
  if (est.totalBytes > Math.min(free, sysFree)) {
    return new ApiError('insufficient_memory', `Not enough free memory for this request right now (needs about ${fmtMb(est.totalBytes)}); try again shortly.`, {
      retryAfter: 2,
    });
  }
  return null;
}
