// Label values and the small number helpers of the metrics collector: every label value comes from a
// fixed set (routes, status classes, error codes, corruption reasons, API dialects) or is cleaned and
// bounded (model ids), so client input can never create new Prometheus series.
import { ERROR_CODES } from '../common/errors.ts';
import { API_DIALECTS, apiOfRoute, type ApiDialect } from '../common/api-dialect.ts';
import type { DegradationState, RequestRecord } from '../common/metrics-types.ts';

/** Routes that may appear as a label value; anything else is `other`. */
export const METRIC_ROUTES = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/models',
  '/v1/responses',
  '/v1/messages',
  '/v1/messages/count_tokens',
  '/api/chat',
  '/api/generate',
  '/api/embed',
  '/api/embeddings',
  'other',
] as const;
/**
 * Routes that generate text: the only ones in the latency/TTFT/tokens-per-second window. A /v1/models
 * listing in 2 ms or an embeddings batch is not a generation and would drag the percentiles down.
 */
export const GENERATION_ROUTES = ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/v1/messages', '/api/chat', '/api/generate'] as const;
const GENERATION_ROUTE_SET = new Set<string>(GENERATION_ROUTES);
/** Default latency window: the last minute, so the dashboard's charts move with the traffic. */
export const DEFAULT_WINDOW_SECONDS = 60;
/** Cache-corruption reasons that may appear as a label value / JSON key; anything else is `other`. */
// Same names as main/caches/entry-file.ts CorruptReason (plus io_error and the catch-all other).
export const CORRUPTION_REASONS = [
  'empty',
  'truncated',
  'bad_magic',
  'bad_kind',
  'bad_header',
  'absurd_length',
  'length_mismatch',
  'bad_trailer',
  'checksum',
  'invalid_utf8',
  'invalid_json',
  'invalid_meta',
  'not_a_file',
  'io_error',
  'other',
] as const;
export type CorruptionReason = (typeof CORRUPTION_REASONS)[number];
export const DEGRADATION_STATES: DegradationState[] = ['normal', 'upstream_down', 'cache_disabled', 'shedding', 'engine_restarting', 'engine_failed'];

export const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
export const r3 = (x: number) => Math.round(x * 1e3) / 1e3;
export const nonNeg = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0);

export function routeLabel(route: string): string {
  const r = (route || '').split('?')[0];
  return (METRIC_ROUTES as readonly string[]).includes(r) ? r : 'other';
}
/** The API label: the record's own, else derived from its route; `other` for non-API routes. */
export function apiLabel(r: RequestRecord): ApiDialect | 'other' {
  const a = r.api ?? apiOfRoute(r.route);
  return a && (API_DIALECTS as readonly string[]).includes(a) ? a : 'other';
}
export function statusClass(status: number): string {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}
export function corruptionReason(reason: string): CorruptionReason {
  return (CORRUPTION_REASONS as readonly string[]).includes(reason) ? (reason as CorruptionReason) : 'other';
}
export function errorCodeLabel(code: string | null): string {
  return code && Object.prototype.hasOwnProperty.call(ERROR_CODES, code) ? code : 'other';
}
/** Model ids as label values: printable, short. */
export function cleanModelId(id: string): string {
  return id.replace(/[^A-Za-z0-9._:@/-]/g, '_').slice(0, 64) || 'unknown';
}

