// The response cache as the server uses it: only deterministic requests are cacheable, keys isolate
// model / tokenizer / template / engine / params / seed, keys are stable under irrelevant
// differences, deep nesting does not throw, errors / cancelled / truncated results are never
// stored, a restart (new instance on the same data dir) hits from disk, and the server hook adapter
// round-trips the server's own key and value types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openCaches } from '../../main/caches/index.ts';
import type { CachedResponse, ResponseCacheRequest } from '../../main/caches/response-cache.ts';
import { Degradation } from '../../main/hardening/degradation.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { makeTempDir, FP } from './helpers.ts';

const base: ResponseCacheRequest = {
  route: 'chat',
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Name a prime.' },
  ],
  tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
  sampling: { temperature: 0, maxTokens: 32, stop: ['\n\n', 'END'] },
};
const answer: CachedResponse = {
  text: '7',
  content: '7',
  toolCalls: null,
  finishReason: 'stop',
  stopReason: 'eos',
  promptTokens: 20,
  completionTokens: 1,
};

async function open(t: Parameters<typeof makeTempDir>[0], dir?: string) {
  const d = dir ?? (await makeTempDir(t));
  const degradation = new Degradation();
  const caches = await openCaches(d, FP, degradation, { response: { enabled: true } });
  return { dir: d, caches, rc: caches.response, degradation };
}

test('only deterministic, single-choice requests are cacheable; the cache is opt-in', async (t) => {
  const { rc, dir } = await open(t);
  assert.equal(rc.isCacheable(base), true);
  assert.equal(rc.isCacheable({ ...base, sampling: { temperature: 0.7, maxTokens: 32 } }), false);
  assert.equal(rc.isCacheable({ ...base, sampling: { temperature: 0.7, maxTokens: 32, seed: 42 } }), true);
  assert.equal(rc.isCacheable({ ...base, sampling: { temperature: 0.7, maxTokens: 32, seed: 1.5 } }), false);
  assert.equal(rc.isCacheable({ ...base, n: 2 }), false);
  assert.equal(rc.isCacheable({ ...base, logprobs: true }), false);
  const off = await openCaches(dir, FP, undefined, {});
  assert.equal(off.response.isCacheable(base), false, 'disabled unless enabled in settings');
  assert.equal(await off.response.set(off.response.keyFor(base)!, answer), false);
  rc.setEnabled(false);
  assert.equal(rc.isCacheable(base), false);
});

test('keys isolate model, tokenizer, template, engine, params and seed; ignore irrelevant differences', async (t) => {
  const { rc } = await open(t);
  const k = rc.keyFor(base)!;
  assert.match(k, /^[0-9a-f]{64}$/);
  const variants: [string, string | null][] = [
    ['model', rc.keyFor(base, { ...FP, model: 'model-fp-B' })],
    ['tokenizer', rc.keyFor(base, { ...FP, tokenizer: 'tok-2' })],
    ['template', rc.keyFor(base, { ...FP, template: 'tpl-2' })],
    ['engine', rc.keyFor(base, { ...FP, engine: 'engine-0.2.0' })],
    ['max tokens', rc.keyFor({ ...base, sampling: { ...base.sampling, maxTokens: 33 } })],
    ['stop', rc.keyFor({ ...base, sampling: { ...base.sampling, stop: ['END'] } })],
    ['top_p', rc.keyFor({ ...base, sampling: { ...base.sampling, topP: 0.9 } })],
    ['repetition penalty', rc.keyFor({ ...base, sampling: { ...base.sampling, repetitionPenalty: 1.1 } })],
    ['message text', rc.keyFor({ ...base, messages: [{ role: 'user', content: 'Name a prime!' }] })],
    ['tools', rc.keyFor({ ...base, tools: null })],
    ['route', rc.keyFor({ ...base, route: 'completions' })],
    ['prompt ids', rc.keyFor({ ...base, promptIds: [1, 2, 3] })],
    ['tools parsed', rc.keyFor({ ...base, toolsActive: true })],
  ];
  for (const [what, other] of variants) assert.ok(other && other !== k, `${what} must change the key`);
  const seeded = (seed: number) => rc.keyFor({ ...base, sampling: { temperature: 0.8, maxTokens: 32, seed } });
  assert.notEqual(seeded(1), seeded(2), 'seed matters when sampling');
  // same meaning → same key
  assert.equal(rc.keyFor({ ...base, sampling: { ...base.sampling, stop: ['END', '\n\n', 'END'] } }), k, 'stop order/duplicates');
  assert.equal(rc.keyFor({ ...base, sampling: { ...DEFAULT_SAMPLING, ...base.sampling } }), k, 'explicit defaults');
  assert.equal(rc.keyFor({ ...base, sampling: { ...base.sampling, seed: 99 } }), k, 'seed is irrelevant at temperature 0');
  const reordered = JSON.parse(JSON.stringify(base), (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v,
  );
  assert.equal(rc.keyFor(reordered), k, 'object key order');
});

test('isolation end to end: a stored answer is not served to another model, template or params', async (t) => {
  const { rc, dir } = await open(t);
  await rc.set(rc.keyFor(base)!, answer);
  assert.deepEqual(await rc.get(rc.keyFor(base)!), answer);
  for (const fp of [{ ...FP, model: 'other' }, { ...FP, template: 'other' }]) {
    assert.equal(await rc.get(rc.keyFor(base, fp)!), null);
  }
  assert.equal(await rc.get(rc.keyFor({ ...base, sampling: { ...base.sampling, maxTokens: 64 } })!), null);
  // a server instance running another model on the same data dir does not see it either
  const other = await openCaches(dir, { ...FP, model: 'other' }, undefined, { response: { enabled: true } });
  assert.equal(await other.response.get(rc.keyFor(base)!), null);
});

test('deeply nested request content canonicalizes without RangeError', async (t) => {
  const { rc } = await open(t);
  let deep: unknown = 'leaf';
  for (let i = 0; i < 50_000; i++) deep = i % 2 ? [deep] : { x: deep };
  const k = rc.keyFor({ ...base, tools: deep });
  assert.match(k ?? '', /^[0-9a-f]{64}$/);
  assert.notEqual(k, rc.keyFor(base));
  assert.throws(() => JSON.stringify(deep), RangeError, 'the input really is too deep for recursion');
  // cyclic input cannot be keyed (not cacheable) instead of throwing
  const cyc: Record<string, unknown> = { a: 1 };
  cyc.self = cyc;
  assert.equal(rc.keyFor({ ...base, tools: cyc }), null);
});

test('errors, cancelled, truncated or malformed results are never stored', async (t) => {
  const { rc } = await open(t);
  const k = rc.keyFor(base)!;
  const bad: unknown[] = [
    { ...answer, finishReason: 'cancelled' },
    { ...answer, stopReason: 'cancelled' },
    { ...answer, finishReason: 'error' },
    { ...answer, error: { message: 'engine crashed' } },
    { ...answer, text: undefined },
    { ...answer, completionTokens: -1 },
    { ...answer, toolCalls: [{ type: 'function', function: { name: 'f' } }] },
    null,
  ];
  for (const v of bad) assert.equal(await rc.set(k, v as CachedResponse), false, JSON.stringify(v));
  assert.equal(await rc.get(k), null);
  assert.equal(rc.stats().refused, bad.length);
  // complete results with finish reason length / tool_calls are fine
  const len: CachedResponse = { ...answer, finishReason: 'length', stopReason: 'max_tokens' };
  assert.equal(await rc.set(k, len), true);
  assert.deepEqual(await rc.get(k), len);
  const tools: CachedResponse = {
    text: '<tool_call>{"name":"lookup","arguments":{"q":"x"}}</tool_call>',
    content: null,
    toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }],
    finishReason: 'tool_calls',
    promptTokens: 20,
    completionTokens: 12,
  };
  const k2 = rc.keyFor({ ...base, toolsActive: true })!;
  assert.equal(await rc.set(k2, tools), true);
  assert.deepEqual(await rc.get(k2), tools);
});

test('restart: a new instance on the same data dir serves the stored response from disk', async (t) => {
  const first = await open(t);
  const k = first.rc.keyFor(base)!;
  assert.equal(await first.rc.set(k, answer), true);
  const second = await open(t, first.dir);
  assert.equal(second.caches.opened.response.entries, 1);
  const hit = await second.rc.get(k);
  assert.deepEqual(hit, answer);
  assert.equal(second.rc.stats().diskHits, 1);
  // then from memory; mutating a returned value does not alter the cache
  hit!.text = 'tampered';
  assert.deepEqual(await second.rc.get(k), answer);
  assert.equal(second.rc.stats().memoryHits, 1);
  // soft memory pressure drops the memory copies; the next hit comes from disk again
  second.rc.clearMemory();
  assert.equal(second.rc.stats().memoryEntries, 0);
  assert.deepEqual(await second.rc.get(k), answer);
  assert.equal(second.rc.stats().diskHits, 2);
});

test('server hook adapter: the server key/value types round-trip; non-deterministic keys are ignored', async (t) => {
  const { rc, dir } = await open(t);
  const hook = rc.serverHook();
  const key = { route: 'chat' as const, modelFingerprint: FP.model, promptIds: [5, 6, 7], sampling: { ...DEFAULT_SAMPLING, maxTokens: 8 }, toolsActive: false };
  const gen = { text: 'hi', finishReason: 'stop' as const, stopReason: 'eos' as const, promptTokens: 3, completionTokens: 1 };
  assert.equal(await hook.get(key), null);
  await hook.set(key, gen);
  assert.deepEqual(await hook.get(key), gen);
  assert.equal(await hook.get({ ...key, promptIds: [5, 6, 8] }), null);
  const random = { ...key, sampling: { ...key.sampling, temperature: 0.9 } };
  await hook.set(random, gen);
  assert.equal(await hook.get(random), null);
  // persisted: a new process finds it
  const again = await openCaches(dir, FP, undefined, { response: { enabled: true } });
  assert.deepEqual(await again.response.serverHook().get(key), gen);
});
