// The engine IPC protocol's defensive validation and the BLAS helpers (pure functions; the process
// behaviour itself is tested end to end in process.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEngineMessage, parseParentMessage, parsePrefixSnapshot, validateGenerateRequest } from '../../main/engine/process/protocol.ts';
import { detectLoadedBlas, engineProcessEnv, ENGINE_MALLOC_TUNABLES, findOpenBlasDir } from '../../main/engine/process/blas.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';

const good = { requestId: 'r-1', promptIds: [1, 2, 3], sampling: { ...DEFAULT_SAMPLING } };

test('generate requests are validated field by field', () => {
  const ok = validateGenerateRequest(good);
  assert.equal(typeof ok, 'object');
  assert.equal((ok as { cachePrompt: boolean }).cachePrompt, true, 'cachePrompt defaults to true');
  const bad: [string, unknown][] = [
    ['not an object', 'x'],
    ['id with spaces', { ...good, requestId: 'a b' }],
    ['id too long', { ...good, requestId: 'x'.repeat(129) }],
    ['empty prompt', { ...good, promptIds: [] }],
    ['negative id', { ...good, promptIds: [1, -1] }],
    ['fractional id', { ...good, promptIds: [1.5] }],
    ['string id', { ...good, promptIds: ['1'] }],
    ['NaN temperature', { ...good, sampling: { ...DEFAULT_SAMPLING, temperature: NaN } }],
    ['topP > 1', { ...good, sampling: { ...DEFAULT_SAMPLING, topP: 1.5 } }],
    ['negative maxTokens', { ...good, sampling: { ...DEFAULT_SAMPLING, maxTokens: -1 } }],
    ['fractional seed', { ...good, sampling: { ...DEFAULT_SAMPLING, seed: 1.5 } }],
    ['stop not an array', { ...good, sampling: { ...DEFAULT_SAMPLING, stop: 'x' } }],
    ['empty stop string', { ...good, sampling: { ...DEFAULT_SAMPLING, stop: [''] } }],
    ['too many stops', { ...good, sampling: { ...DEFAULT_SAMPLING, stop: Array.from({ length: 17 }, (_, i) => `s${i}`) } }],
    ['missing sampling', { requestId: 'r', promptIds: [1] }],
    ['cachePrompt not boolean', { ...good, cachePrompt: 'yes' }],
  ];
  for (const [what, v] of bad) assert.equal(typeof validateGenerateRequest(v), 'string', what);
});

test('parent messages: malformed envelopes are dropped, load options checked', () => {
  assert.equal(parseParentMessage(null), null);
  assert.equal(parseParentMessage({ type: 'nope' }), null);
  assert.equal(parseParentMessage({ type: 'cancel' }), null);
  assert.equal(parseParentMessage({ type: 'stats', id: -1 }), null);
  assert.equal(parseParentMessage({ type: 'load', protocol: 1, modelDir: '' }), null);
  assert.equal(parseParentMessage({ type: 'load', protocol: 1, modelDir: 'm', options: { prefillChunk: 0 } }), null);
  assert.deepEqual(parseParentMessage({ type: 'load', protocol: 1, modelDir: 'm', options: { prefixCacheBytes: 10 } }), {
    type: 'load',
    protocol: 1,
    modelDir: 'm',
    options: { prefixCacheBytes: 10 },
  });
  assert.equal(parseParentMessage({ type: 'load', protocol: 1, modelDir: 'm', options: { kvPoolBytes: 1.5 } }), null);
  assert.equal(parseParentMessage({ type: 'load', protocol: 1, modelDir: 'm', options: { kvPoolBytes: -1 } }), null);
  const noPool = { type: 'load', protocol: 1, modelDir: 'm', options: { kvPoolBytes: 0 } };
  assert.deepEqual(parseParentMessage(noPool), noPool);
  assert.deepEqual(parseParentMessage({ type: 'shutdown', extra: 1 }), { type: 'shutdown' });
});

test('engine messages: events with missing or wrong fields are dropped', () => {
  const done = { type: 'done', requestId: 'r', finishReason: 'stop', stopReason: 'eos', promptTokens: 1, cachedTokens: 0, completionTokens: 1, ttftMs: 1, prefillMs: 1, decodeMs: 1 };
  assert.ok(parseEngineMessage({ type: 'event', event: done }));
  assert.equal(parseEngineMessage({ type: 'event', event: { ...done, finishReason: 'weird' } }), null);
  assert.equal(parseEngineMessage({ type: 'event', event: { ...done, ttftMs: 'fast' } }), null);
  assert.equal(parseEngineMessage({ type: 'event', event: { type: 'error', requestId: 'r', code: 'made_up', message: 'x' } }), null);
  assert.equal(parseEngineMessage({ type: 'event', event: { type: 'delta', requestId: 'r', text: 5, tokens: 1 } }), null);
  assert.equal(parseEngineMessage({ type: 'stats', id: 1, stats: {} }), null);
});

test('prefix snapshots must be float32 with sizes matching their shapes and token count', () => {
  const layer = (T: number) => ({ keys: new Float32Array(2 * T * 4), values: new Float32Array(2 * T * 4), shape: [1, 2, T, 4], dtype: 'float32' });
  assert.ok(parsePrefixSnapshot({ tokens: [1, 2, 3], layers: [layer(3), layer(3)] }));
  assert.equal(parsePrefixSnapshot({ tokens: [1, 2], layers: [layer(3)] }), null, 'token axis ≠ token count');
  assert.equal(parsePrefixSnapshot({ tokens: [1, 2, 3], layers: [{ ...layer(3), keys: new Float32Array(5) }] }), null);
  assert.equal(parsePrefixSnapshot({ tokens: [1, 2, 3], layers: [{ ...layer(3), keys: Array(24).fill(0) }] }), null);
  assert.equal(parsePrefixSnapshot({ tokens: [1, 2, 3], layers: [] }), null);
});

test('BLAS detection judges the file that provides libblas.so.3', () => {
  const map = (...files: string[]) => files.map((f, i) => `7f00${i}000-7f00${i}fff r-xp 00000000 fe:01 ${100 + i}   ${f}`).join('\n');
  assert.equal(detectLoadedBlas(map('/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3', '/usr/lib/x86_64-linux-gnu/libopenblas.so.0')), 'openblas');
  // Reference libblas with LAPACK pulling in libopenblas: sgemm comes from the reference library.
  assert.equal(detectLoadedBlas(map('/usr/lib/x86_64-linux-gnu/blas/libblas.so.3', '/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3', '/usr/lib/x86_64-linux-gnu/libopenblas.so.0')), 'reference');
  assert.equal(detectLoadedBlas(map('/usr/lib/libopenblas.so.0')), 'openblas');
  assert.equal(detectLoadedBlas(map('/usr/lib/x86_64-linux-gnu/libc.so.6')), 'unknown');
});

test('engine environment: OpenBLAS first on the loader path, override honoured, threads default to cores', () => {
  const env = engineProcessEnv({ LD_LIBRARY_PATH: '/opt/a', MLXBAR_BLAS_DIR: '/opt/blas' });
  assert.equal(env.LD_LIBRARY_PATH, process.platform === 'linux' ? '/opt/blas:/opt/a' : '/opt/a');
  assert.ok(Number(env.OPENBLAS_NUM_THREADS) >= 1);
  assert.equal(engineProcessEnv({ OPENBLAS_NUM_THREADS: '1' }).OPENBLAS_NUM_THREADS, '1');
  assert.deepEqual(findOpenBlasDir({ MLXBAR_BLAS_DIR: '/x' }), { dir: '/x', source: 'override' });
});

test('engine environment (Linux): glibc malloc keeps temporaries on the heap; a user\'s own malloc tunables win', { skip: process.platform !== 'linux' && 'glibc only' }, () => {
  assert.equal(engineProcessEnv({}).GLIBC_TUNABLES, ENGINE_MALLOC_TUNABLES);
  assert.match(ENGINE_MALLOC_TUNABLES, /glibc\.malloc\.mmap_threshold=\d+/);
  assert.match(ENGINE_MALLOC_TUNABLES, /glibc\.malloc\.trim_threshold=\d+/, 'both: setting one turns the dynamic threshold off');
  assert.match(ENGINE_MALLOC_TUNABLES, /glibc\.malloc\.hugetlb=1/, 'the heap on transparent huge pages');
  assert.match(ENGINE_MALLOC_TUNABLES, /glibc\.malloc\.top_pad=\d{8,}/, 'heap grown in whole huge pages');
  assert.equal(engineProcessEnv({ GLIBC_TUNABLES: 'glibc.rtld.nns=8' }).GLIBC_TUNABLES, `glibc.rtld.nns=8:${ENGINE_MALLOC_TUNABLES}`);
  assert.equal(engineProcessEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2');
});
