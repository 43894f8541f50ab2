// Every error class that can leave the process (ApiError for each stable code, unknown errors via
// toApiError) carries no absolute path, home directory, user name, stack frame or secret
// environment value — checked by regex — while ordinary text survives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { ApiError, ERROR_CODES, toApiError, type ErrorCode } from '../../main/common/errors.ts';
import { sanitizeMessage } from '../../main/common/sanitize.ts';

const SECRET = 'sk-test-9f8e7d6c5b4a';
process.env.MLXBAR_API_KEY = SECRET;
const user = os.userInfo().username;
const home = os.homedir();

const LEAKS: [string, RegExp][] = [
  ['POSIX absolute path', /\/(home|Users|root|tmp|var|etc|opt|usr|work)\//],
  ['home directory', new RegExp(home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))],
  ['Windows path', /[A-Za-z]:\\/],
  ['file URL', /file:\/\//i],
  ['stack frame', /\bat .*:\d+:\d+|\n\s+at /],
  ['secret env value', new RegExp(SECRET)],
  ['user name', new RegExp(`\\b${user}\\b`)],
];

const NASTY = [
  `ENOENT: no such file or directory, open '${home}/.cache/mlx-bar/cache/response/ab12.entry'`,
  `EACCES: permission denied, mkdir '/Users/alice/Library/Application Support/MLX Bar/cache'`,
  `Failed to load C:\\Users\\bob\\models\\qwen\\model.safetensors`,
  `cannot read file:///home/carol/models/x/config.json`,
  `bad key ${SECRET} rejected`,
  `TypeError: x is undefined\n    at loadModel (/work/main/main/engine/model/weights.ts:12:7)\n    at async main (node:internal/main:1:1)`,
  `see ~/secrets/notes.txt for ${user}`,
];

test('control: every raw input does contain a leak the checks detect', () => {
  for (const raw of NASTY) assert.ok(LEAKS.some(([, re]) => re.test(raw)), `undetected raw input: ${raw}`);
});

test('ApiError leaks nothing in its message or JSON body', () => {
  // Every code goes through the same constructor, so one code is enough for the message checks.
  for (const raw of NASTY) {
    const err = new ApiError('invalid_request', raw);
    const body = JSON.stringify(err.toJSON());
    for (const [what, re] of LEAKS) {
      assert.doesNotMatch(err.message, re, `${what} in "${err.message}"`);
      assert.doesNotMatch(body, re, `${what} in body`);
    }
  }
});

test('ApiError codes map to the HTTP status and OpenAI error type clients expect', () => {
  // Written out from the OpenAI error conventions, not read from ERROR_CODES.
  const expected: [ErrorCode, number, string][] = [
    ['invalid_request', 400, 'invalid_request_error'],
    ['context_length_exceeded', 400, 'invalid_request_error'],
    ['invalid_api_key', 401, 'authentication_error'],
    ['forbidden_origin', 403, 'permission_error'],
    ['model_not_found', 404, 'not_found_error'],
    ['method_not_allowed', 405, 'invalid_request_error'],
    ['body_too_large', 413, 'invalid_request_error'],
    ['unsupported_media_type', 415, 'invalid_request_error'],
    ['queue_full', 503, 'server_error'],
    ['model_loading', 503, 'server_error'],
    ['internal_error', 500, 'server_error'],
  ];
  for (const [code, status, type] of expected) {
    const body = new ApiError(code, 'x').toJSON();
    assert.deepEqual([new ApiError(code, 'x').status, body.error.type, body.error.code], [status, type, code], code);
  }
});

test('unknown errors become a generic internal_error; known codes keep their class', () => {
  const e = toApiError(new Error(`boom at ${home}/x.ts:1:2`));
  assert.equal(e.code, 'internal_error');
  assert.equal(e.status, 500);
  assert.equal(e.message, 'Internal server error');
  const known = toApiError(Object.assign(new Error(`queue full at ${home}/q`), { code: 'queue_full' }));
  assert.equal(known.code, 'queue_full');
  assert.equal(known.status, 503);
  for (const [what, re] of LEAKS) assert.doesNotMatch(known.message, re, what);
  assert.equal(toApiError('a string').code, 'internal_error');
  assert.equal(toApiError(null).code, 'internal_error');
});

test('ordinary text survives: ratios, units, API routes, numbers', () => {
  assert.equal(sanitizeMessage('ratio 1/2/3 ok'), 'ratio 1/2/3 ok');
  assert.equal(sanitizeMessage('decoded 12 tokens/s'), 'decoded 12 tokens/s');
  assert.match(sanitizeMessage('POST /v1/chat/completions failed'), /\/v1\/chat\/completions/);
  assert.equal(sanitizeMessage(''), 'Unknown error');
  assert.ok(sanitizeMessage('x'.repeat(5000)).length <= 500, 'bounded length');
});
