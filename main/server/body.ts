// A route's JSON body as an object. The body parser (json-body.ts) already refuses anything else;
// this is the typed view, and the guard for a request that reached a route without a body.
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../common/errors.ts';

export function bodyObject(request: FastifyRequest): Record<string, unknown> {
  const body = request.body as Record<string, unknown> | undefined;
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError('invalid_json', 'Request body must be a JSON object');
  return body;
}
