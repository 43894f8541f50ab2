// Per-request bookkeeping that becomes one RequestRecord when the response closes (finished,
// failed or aborted), so streamed and cancelled requests are measured like any other.
import { performance } from 'node:perf_hooks';
import type { RequestRecord } from '../common/metrics-types.ts';

export interface RequestTrack {
  id: string;
  route: string;
  startedAt: number;
  stream: boolean;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Lookup decoding: draft tokens verified / accepted (engine `done`; absent when off). */
  draftTokens?: number;
  acceptedDrafts?: number;
  firstTokenAt: number | null;
  finishReason: string | null;
  responseCacheHit: boolean;
  cancelled: boolean;
  errorCode: string | null;
  /** false for /health, metrics and dashboard files (not traffic). */
  record: boolean;
  /** Set while a generation runs: the record waits for it so token counts of cancelled requests are final. */
  settled: Promise<void> | null;
}

export function newTrack(id: string, route: string, record: boolean): RequestTrack {
  return {
    id,
    route,
    startedAt: performance.now(),
    stream: false,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    firstTokenAt: null,
    finishReason: null,
    responseCacheHit: false,
    cancelled: false,
    errorCode: null,
    record,
    settled: null,
  };
}

/** `endedAt`: performance.now() when the response closed (latency ends there, not at engine wind-down). */
export function toRecord(t: RequestTrack, status: number, aborted: boolean, endedAt: number = performance.now()): RequestRecord {
  const now = endedAt;
  return {
    id: t.id,
    route: t.route,
    stream: t.stream,
    status,
    promptTokens: t.promptTokens,
    completionTokens: t.completionTokens,
    cachedTokens: t.cachedTokens,
    latencySeconds: (now - t.startedAt) / 1000,
    ttftSeconds: t.firstTokenAt === null ? null : (t.firstTokenAt - t.startedAt) / 1000,
    finishReason: t.finishReason,
    responseCacheHit: t.responseCacheHit,
    cancelled: t.cancelled || aborted,
    errorCode: t.errorCode,
    ...(t.draftTokens !== undefined ? { draftTokens: t.draftTokens, acceptedDrafts: t.acceptedDrafts ?? 0 } : {}),
  };
}
