// The degradation state machine on its own, under a fake clock: the circuit opens after 5
// consecutive cache errors, lets probes through only after the cooldown, closes after 10
// consecutive successes, reopens with a doubled (capped) cooldown on a failed probe, and the
// combined state follows the documented priority while cache_enabled stays independent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Degradation, type DegradationChange } from '../../main/hardening/degradation.ts';

function enospc(): NodeJS.ErrnoException {
  const e = new Error('ENOSPC: no space left on device, write \'/home/alice/.mlxbar/cache/response/ab.entry\'') as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  return e;
}

function machine(extra: ConstructorParameters<typeof Degradation>[0] = {}) {
  let t = 1_700_000_000_000;
  const logs: string[] = [];
  const changes: DegradationChange[] = [];
  const d = new Degradation({ now: () => t, cacheCooldownMs: 10_000, cacheMaxCooldownMs: 40_000, log: (l) => logs.push(l), ...extra });
  d.on('change', (c) => changes.push(c));
  return { d, logs, changes, advance: (ms: number) => { t += ms; }, now: () => t };
}

test('5 consecutive cache errors disable the cache; one success in between resets the streak', () => {
  const { d, changes } = machine();
  for (let i = 0; i < 4; i++) d.recordCacheError('set', enospc());
  d.recordCacheSuccess('get');
  for (let i = 0; i < 4; i++) d.recordCacheError('set', enospc());
  assert.equal(d.status().state, 'normal');
  assert.equal(d.cacheAllowed(), true);
  d.recordCacheError('set', enospc());
  const s = d.status();
  assert.equal(s.state, 'cache_disabled');
  assert.equal(s.cache_enabled, false);
  assert.equal(d.cacheAllowed(), false);
  assert.match(s.reason ?? '', /cache disabled/);
  assert.equal(changes.length, 1);
  assert.equal(changes[0].previous.state, 'normal');
  // a disabled cache never refuses requests
  assert.equal(d.admission(), null);
});

test('cooldown, probes, 10 successes close; a failed probe doubles the cooldown up to the cap', () => {
  const { d, advance } = machine();
  for (let i = 0; i < 5; i++) d.recordCacheError('set', enospc());
  assert.equal(d.detail().cooldownMs, 10_000);
  advance(9_999);
  assert.equal(d.cacheAllowed(), false, 'no probe before the cooldown');
  advance(1);
  assert.equal(d.cacheAllowed(), true, 'probes allowed after the cooldown');
  assert.equal(d.detail().circuit, 'half_open');
  assert.equal(d.status().state, 'cache_disabled', 'still disabled while probing');
  // failed probe → reopen, doubled cooldown
  d.recordCacheError('set', enospc());
  assert.equal(d.cacheAllowed(), false);
  assert.equal(d.detail().cooldownMs, 20_000);
  advance(19_999);
  assert.equal(d.cacheAllowed(), false);
  advance(1);
  assert.equal(d.cacheAllowed(), true);
  d.recordCacheError('get', enospc());
  assert.equal(d.detail().cooldownMs, 40_000);
  advance(40_000);
  assert.equal(d.cacheAllowed(), true);
  d.recordCacheError('get', enospc());
  assert.equal(d.detail().cooldownMs, 40_000, 'capped');
  // recovery
  advance(40_000);
  assert.equal(d.cacheAllowed(), true);
  for (let i = 0; i < 9; i++) d.recordCacheSuccess('set');
  assert.equal(d.status().state, 'cache_disabled');
  d.recordCacheSuccess('set');
  assert.deepEqual([d.status().state, d.status().cache_enabled, d.status().reason], ['normal', true, null]);
});

test('no flapping: a sustained fault only produces one transition per (growing) cooldown', () => {
  const { d, advance, changes } = machine();
  // 10 minutes of a permanent fault; the app tries the cache on every request (every 100 ms)
  let allowedOps = 0;
  for (let ms = 0; ms < 600_000; ms += 100) {
    advance(100);
    if (d.cacheAllowed()) {
      allowedOps++;
      d.recordCacheError('set', enospc());
    }
  }
  // 5 to open, then one probe per cooldown: 10s, 20s, 40s, 40s, ... → ~5 + 16 probes
  assert.ok(allowedOps <= 5 + 17, `ops let through: ${allowedOps}`);
  const enabledFlips = changes.filter((c) => c.status.cache_enabled !== c.previous.cache_enabled).length;
  assert.equal(enabledFlips, 1, 'the cache never came back on during the fault');
});

test('an intermittent fault right after recovery reopens with the longer cooldown', () => {
  const { d, advance } = machine();
  for (let i = 0; i < 5; i++) d.recordCacheError('set', enospc());
  advance(10_000);
  for (let i = 0; i < 10; i++) d.recordCacheSuccess('set');
  assert.equal(d.status().state, 'normal');
  advance(1_000);
  for (let i = 0; i < 5; i++) d.recordCacheError('set', enospc());
  assert.equal(d.detail().cooldownMs, 20_000);
  // after a long healthy period the cooldown is back to base
  advance(20_000);
  for (let i = 0; i < 10; i++) d.recordCacheSuccess('set');
  advance(3_600_000);
  for (let i = 0; i < 5; i++) d.recordCacheError('set', enospc());
  assert.equal(d.detail().cooldownMs, 10_000);
});

test('shedding on hard memory pressure and on a full queue (with hysteresis) gives 503 + Retry-After', () => {
  const { d } = machine();
  d.reportMemoryPressure('soft');
  assert.equal(d.status().state, 'normal');
  assert.equal(d.admission(), null);
  d.reportMemoryPressure('hard');
  assert.equal(d.status().state, 'shedding');
  let err = d.admission();
  assert.ok(err);
  assert.equal(err.status, 503);
  assert.equal(err.code, 'insufficient_memory');
  assert.ok((err.retryAfter ?? 0) > 0);
  d.reportMemoryPressure('normal');
  assert.equal(d.admission(), null);

  d.reportQueueDepth(7, 8);
  assert.equal(d.status().state, 'normal');
  d.reportQueueDepth(8, 8);
  err = d.admission();
  assert.equal(err?.code, 'server_overloaded');
  assert.equal(err?.status, 503);
  d.reportQueueDepth(5, 8);
  assert.equal(d.status().state, 'shedding', 'hysteresis: still shedding above half the limit');
  d.reportQueueDepth(4, 8);
  assert.equal(d.status().state, 'normal');
});

test('engine states and the combined priority; cache_enabled stays independent', () => {
  const { d, advance } = machine();
  for (let i = 0; i < 5; i++) d.recordCacheError('get', enospc());
  d.reportMemoryPressure('hard');
  assert.equal(d.status().state, 'shedding');
  d.reportEngineState('restarting', 'exit signal SIGKILL');
  let s = d.status();
  assert.equal(s.state, 'engine_restarting');
  assert.equal(s.cache_enabled, false);
  assert.equal(d.admission()?.code, 'engine_restarting');
  assert.equal(d.admission()?.status, 503);
  d.reportEngineState('failed', 'gave up after 3 crashes');
  assert.equal(d.status().state, 'engine_failed');
  assert.equal(d.admission()?.code, 'engine_unavailable');
  d.reportEngineState('ready');
  assert.equal(d.status().state, 'shedding');
  d.reportMemoryPressure('normal');
  s = d.status();
  assert.equal(s.state, 'cache_disabled');
  const since = s.since;
  advance(5_000);
  assert.equal(d.status().since, since, 'since only moves on a state change');
  advance(5_000);
  d.cacheAllowed();
  for (let i = 0; i < 10; i++) d.recordCacheSuccess('get');
  s = d.status();
  assert.equal(s.state, 'normal');
  assert.notEqual(s.since, since);
  assert.ok(!Number.isNaN(Date.parse(s.since)));
});

test('transition logs and reasons are sanitized (no paths, no user names)', () => {
  const { d, logs } = machine();
  for (let i = 0; i < 5; i++) d.recordCacheError('set', enospc());
  d.reportEngineState('restarting', 'engine died: /Users/alice/models/qwen/model.safetensors missing');
  const text = logs.join('\n') + JSON.stringify(d.status()) + JSON.stringify(d.detail());
  assert.ok(logs.length >= 2);
  assert.doesNotMatch(text, /\/home\/|\/Users\/|alice/);
  assert.match(text, /ENOSPC/);
});

test('attachEngine follows EngineClient state events and detaches', async () => {
  const { EventEmitter } = await import('node:events');
  const { d } = machine();
  const client = Object.assign(new EventEmitter(), { state: 'ready' as const });
  const detach = d.attachEngine(client);
  client.emit('state', 'restarting', 'crash');
  assert.equal(d.status().state, 'engine_restarting');
  assert.equal(d.admission()?.retryAfter, 3);
  client.emit('state', 'ready');
  assert.equal(d.status().state, 'normal');
  detach();
  client.emit('state', 'failed');
  assert.equal(d.status().state, 'normal', 'detached');
});

// Compile-time check: the real EngineClient interface fits attachEngine.
export const _engineClientFits = (d: Degradation, c: import('../../main/engine/types.ts').EngineClient) => d.attachEngine(c);

test('upstream_down: a remote upstream with an open breaker degrades only that model — lowest priority, reported alongside, never refuses admission', () => {
  const { d, logs, changes } = machine();
  let down: string[] = [];
  d.watchUpstreams(() => down);
  assert.equal(d.status().state, 'normal');
  assert.equal(d.status().upstreams_down, undefined);
  down = ['gpu-box'];
  let s = d.status();
  assert.equal(s.state, 'upstream_down');
  assert.deepEqual(s.upstreams_down, ['gpu-box']);
  assert.match(s.reason ?? '', /"gpu-box" unavailable.*local models keep serving/);
  // The rest of the server serves on: nothing is refused because of a down upstream.
  assert.equal(d.admission(), null);
  assert.ok(logs.some((l) => l.includes('normal → upstream_down')), logs.join('\n'));
  assert.equal(changes.at(-1)?.status.state, 'upstream_down');
  // A higher state wins the combined state, but the down upstream stays visible.
  d.reportMemoryPressure('hard');
  s = d.status();
  assert.equal(s.state, 'shedding');
  assert.deepEqual(s.upstreams_down, ['gpu-box']);
  down = ['gpu-box', 'team'];
  assert.deepEqual(d.status().upstreams_down, ['gpu-box', 'team'], 'a second upstream going down is seen under another state');
  d.reportMemoryPressure('normal');
  assert.match(d.status().reason ?? '', /remote models "gpu-box", "team"/);
  down = [];
  s = d.status();
  assert.equal(s.state, 'normal');
  assert.equal(s.upstreams_down, undefined);
  assert.ok(logs.some((l) => l.includes('upstream_down → normal')));
});
