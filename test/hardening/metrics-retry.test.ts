// withRetry: exponential backoff over p-retry, only for retryable errors, abortable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withRetry, isRetryableError } from '../../main/hardening/retry.ts';
import { ApiError } from '../../main/hardening/errors.ts';

const transient = () => Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });

test('retries transient errors 3 times with growing delays (100/200/400 ms base, jitter ≤ 2×)', async () => {
  const times: number[] = [];
  await assert.rejects(
    withRetry(async () => {
      times.push(performance.now());
      throw transient();
    }),
    (e: Error & { code?: string }) => e.code === 'ECONNRESET',
  );
  assert.equal(times.length, 4, '1 attempt + 3 retries');
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  const base = [100, 200, 400];
  gaps.forEach((g, i) => {
    assert.ok(g >= base[i] - 5, `gap ${i} = ${g} ms, expected ≥ ${base[i]}`);
    assert.ok(g < base[i] * 2 + 400, `gap ${i} = ${g} ms, expected < ${base[i] * 2} (+ slack for a busy box)`);
  });
});

test('succeeds without sleeping when the first attempt works; recovers after transient failures', async () => {
  const t0 = performance.now();
  assert.equal(await withRetry(async () => 42), 42);
  assert.ok(performance.now() - t0 < 50);
  let n = 0;
  const retries: number[] = [];
  const v = await withRetry(
    async (attempt) => {
      n++;
      if (attempt < 3) throw new ApiError('engine_restarting', 'restarting');
      return 'ok';
    },
    { jitter: false, minTimeoutMs: 10, onRetry: (i) => retries.push(i.attempt) },
  );
  assert.equal(v, 'ok');
  assert.equal(n, 3);
  assert.deepEqual(retries, [1, 2]);
});

test('non-retryable errors fail at once with the original error', async () => {
  for (const err of [
    new ApiError('invalid_request', 'bad'),
    Object.assign(new Error('nope'), { code: 'ENOENT' }),
    Object.assign(new Error('full'), { code: 'ENOSPC' }),
    new TypeError('x is not a function'),
  ]) {
    let calls = 0;
    await assert.rejects(
      withRetry(async () => {
        calls++;
        throw err;
      }),
      (e) => e === err,
    );
    assert.equal(calls, 1, `${err.message} must not be retried`);
  }
  assert.equal(isRetryableError(new ApiError('engine_crashed', 'x')), true);
  assert.equal(isRetryableError(Object.assign(new Error('x'), { retryable: false, code: 'ECONNRESET' })), false);
});

test('abort stops the backoff wait and rejects with the reason', async () => {
  const ac = new AbortController();
  let calls = 0;
  const t0 = performance.now();
  const p = withRetry(
    async () => {
      calls++;
      throw transient();
    },
    { signal: ac.signal, minTimeoutMs: 5000, jitter: false },
  );
  setTimeout(() => ac.abort(new Error('user cancelled')), 50);
  await assert.rejects(p, /user cancelled/);
  assert.ok(performance.now() - t0 < 2000);
  assert.equal(calls, 1);
  await assert.rejects(withRetry(async () => 1, { signal: ac.signal }), /user cancelled/);
});
