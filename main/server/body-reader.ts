// Reads a request body into one Buffer, enforcing the route's byte limit and Content-Length the way
// fastify's own reader does (413 body_too_large before or while reading; 400 when the bytes do not
// match Content-Length; a client that goes away → the stream's error). Why not fastify's reader:
// it keeps the chunks and joins them with Buffer.concat at the end, and the prompt pool then copied
// the result once more to move it to a worker — for an 8 MB body two copies of 12–25 ms each, back to
// back on the event loop (/health waited 50–100 ms). Here a body with a large Content-Length is
// copied into its own ArrayBuffer chunk by chunk as it arrives (64 KiB copies, spread over the
// upload), and that ArrayBuffer can be moved to a worker without another copy.
import type { Readable } from 'node:stream';
import { ApiError } from '../common/errors.ts';

export interface BodyReadOptions {
  /** The route's body limit in bytes. */
  limit: number;
  /** The Content-Length header (NaN when absent, e.g. chunked uploads). */
  contentLength: number;
  /** From this Content-Length up, the body is written into a buffer of that size as it arrives. */
  preallocateFrom: number;
}

const tooLarge = () => new ApiError('body_too_large', 'Request body is too large');
const lengthMismatch = () => new ApiError('invalid_request', 'Content-Length does not match the body');

/** True when `buf` is the whole of its ArrayBuffer, so moving that ArrayBuffer moves exactly the body. */
export function ownsArrayBuffer(buf: Buffer): boolean {
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
}

export function readBody(payload: Readable & { receivedEncodedLength?: number }, opts: BodyReadOptions): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const { limit, contentLength } = opts;
    if (contentLength > limit) return reject(tooLarge());
    // A Buffer over its own ArrayBuffer (not a slice of Node's pool): transferable as is.
    const target = Number.isFinite(contentLength) && contentLength >= opts.preallocateFrom ? Buffer.from(new ArrayBuffer(contentLength)) : null;
    const chunks: Buffer[] = [];
    let received = 0;
    const cleanup = () => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onError);
    };
    function onData(chunk: Buffer | string) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const at = received;
      received += bytes.length;
      if (received > limit || (payload.receivedEncodedLength ?? 0) > limit) {
        cleanup();
        payload.resume(); // drain what is in flight; the error reply closes the connection
        return reject(tooLarge());
      }
      if (target) {
        if (received > target.length) {
          cleanup();
          payload.resume();
          return reject(lengthMismatch());
        }
        target.set(bytes, at);
      } else chunks.push(bytes);
    }
    function onEnd() {
      cleanup();
      if (Number.isFinite(contentLength) && (payload.receivedEncodedLength || received) !== contentLength) return reject(lengthMismatch());
      resolve(target ?? Buffer.concat(chunks, received));
    }
    function onError(err: Error & { statusCode?: number }) {
      cleanup();
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
      reject(err);
    }
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onError);
    payload.resume();
  });
}
