// Parses a request body as JSON defensively: strict UTF-8 (invalid bytes → 400, not silent
// U+FFFD), a nesting-depth scan before parsing (deep `[[[[…` → 400 in microseconds, so no
// recursive code downstream can hit a RangeError), prototype-poisoning keys dropped
// (secure-json-parse), and a top-level object required.
import sjson from 'secure-json-parse';
import { ApiError } from '../common/errors.ts';

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Maximum bracket depth outside strings; a linear scan with no recursion. */
export function jsonDepthExceeds(buf: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

export function parseJsonBody(buf: Buffer, maxDepth: number): Record<string, unknown> {
  if (buf.length === 0) throw new ApiError('invalid_json', 'Request body is empty; expected a JSON object');
  let text: string;
  try {
    text = decoder.decode(buf);
  } catch {
    throw new ApiError('invalid_json', 'Request body is not valid UTF-8');
  }
  if (jsonDepthExceeds(buf, maxDepth)) {
    throw new ApiError('invalid_json', `JSON is nested too deeply (limit ${maxDepth} levels)`);
  }
  let value: unknown;
  try {
    value = sjson.parse(text, undefined, { protoAction: 'remove', constructorAction: 'remove' });
  } catch {
    // The parser's message quotes the input; a fixed message leaks nothing.
    throw new ApiError('invalid_json', 'Request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ApiError('invalid_json', 'Request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
