// Request bodies over LARGE_BODY_BYTES (256 KiB) are parsed in a prompt worker thread, off the
// server's event loop (issue #11 item 1: an 8 MB body's UTF-8 check, depth scan and JSON.parse held
// /health for 60-270 ms), and the schemas validation compiles (forced tool calls, response_format)
// are compiled there too. Checked with real worker threads and a real server: the same values and
// the same errors (code, param, message, each API's shape) as the inline parse, the verdict of a
// worker-compiled schema is the one validation uses, and large bodies really went through a worker.
// How long /health takes meanwhile is the bench's job: `npm run -s bench -- --only health-under-load`.
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../../main/common/errors.ts';
import { LARGE_BODY_BYTES } from '../../main/server/gates.ts';
import { parseJsonBody } from '../../main/server/json-body.ts';
import { PromptPool } from '../../main/server/prompt-pool.ts';
import { applySchemaVerdicts } from '../../main/server/schema-verdicts.ts';
import { validateChatRequest } from '../../main/server/validate.ts';
import { checkPromptBounds, textSize } from '../../main/server/prompt-bounds.ts';
import { startStack, postJson, LEAK_RE, type TestStack } from './helpers.ts';

const pad = 'x'.repeat(LARGE_BODY_BYTES + 1000);
/** A path no early refusal applies to: the worker only checks and parses. */
const OTHER = { maxDepth: 64, path: '/v1/other', early: { maxStopLength: 64, bounds: null } };
const CHAT = { ...OTHER, path: '/v1/chat/completions' };
const big = (s: string) => Buffer.from(s);

/** The parse outcome as a comparable value: the object, or the error's wire JSON + status. */
async function outcome(f: () => unknown): Promise<unknown> {
  try {
    return { value: await f() };
  } catch (err) {
    assert.ok(err instanceof ApiError, `an ApiError, got ${String(err)}`);
    return { error: err.toJSON(), status: err.status };
  }
}

describe('a large body parsed in a worker = parsed inline', { timeout: 120_000 }, () => {
  let pool: PromptPool;
  before(() => {
    pool = new PromptPool({ workers: 1, maxQueue: 4, inlineMaxChars: 4096, retryAfterSeconds: 1 });
  });
  after(async () => {
    await pool?.close();
  });

  const cases: Record<string, () => Buffer> = {
    'a valid body (prototype-poisoning keys dropped)': () =>
      big(`{"model":"m","messages":[{"role":"user","content":"${pad}","__proto__":{"admin":true}}],"constructor":{"prototype":{"x":1}},"n":1.5e3,"u":"\\u00e9✓"}`),
    'invalid UTF-8': () => Buffer.concat([Buffer.from(`{"a":"${pad}`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
    'nested too deeply': () => big(`{"pad":"${pad}","a":${'['.repeat(100)}${']'.repeat(100)}}`),
    'not JSON': () => big(`{"a":"${pad}"`),
    'not an object': () => big(`["${pad}"]`),
  };
  for (const [name, body] of Object.entries(cases)) {
    test(name, async () => {
      const parsedBefore = pool.stats.parsed;
      const inWorker = await outcome(() => pool.parseJson(body(), OTHER));
      const inline = await outcome(() => parseJsonBody(body(), 64));
      assert.deepEqual(inWorker, inline);
      if ('value' in (inWorker as object)) {
        const v = (inWorker as { value: Record<string, unknown> }).value;
        assert.equal(Object.getPrototypeOf(v), Object.prototype);
        assert.equal(Object.hasOwn((v.messages as object[])[0], '__proto__'), false);
        assert.equal(Object.hasOwn(v, 'constructor'), false);
        assert.equal(pool.stats.parsed, parsedBefore + 1, 'parsed by the worker');
      } else {
        assert.doesNotMatch(JSON.stringify(inWorker), LEAK_RE);
      }
    });
  }

  test('the schema verdict decided in the worker is the one validation uses', async () => {
    const body = (schema: object) => big(JSON.stringify({ messages: [{ role: 'user', content: pad }], response_format: { type: 'json_object', schema } }));
    // An enforceable schema: accepted. An unenforceable one: the same 400 as compiled inline.
    const ok = await pool.parseJson(body({ type: 'object', properties: { a: { type: 'integer' } } }), CHAT);
    assert.equal(validateChatRequest(ok, { maxStopLength: 64 }).constraint !== null, true);
    const bad = { type: 'object', if: { type: 'object' } };
    const inline = await outcome(() => validateChatRequest(parseJsonBody(body(bad), 64), { maxStopLength: 64 }));
    const refusedBefore = pool.stats.parseRefused;
    const viaWorker = await outcome(async () => validateChatRequest(await pool.parseJson(body(bad), CHAT), { maxStopLength: 64 }));
    assert.equal(pool.stats.parseRefused, refusedBefore + 1, 'refused by the worker (the route would refuse it the same way)');
    assert.deepEqual(viaWorker, inline);
    assert.match(JSON.stringify(viaWorker), /response_format\.schema/);
    // …and validation really takes the attached verdict instead of compiling again.
    const forged = JSON.parse(body({ type: 'object' }).toString()) as Record<string, unknown>;
    applySchemaVerdicts(forged, [{ path: ['response_format', 'schema'], verdict: { ok: false, message: 'verdict from the worker' } }]);
    assert.throws(() => validateChatRequest(forged, { maxStopLength: 64 }), /response_format\.schema: verdict from the worker/);
  });
});

describe('a real server parses large bodies in a worker, with the same answers', { timeout: 300_000 }, () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({});
  });
  after(async () => {
    await stack?.close();
  });

  const error = (body: string) => JSON.parse(body) as Record<string, unknown>;
  const tool = (i: number, parameters: object) => ({ type: 'function', function: { name: `t${i}`, description: 'd'.repeat(200), parameters } });
  const properties = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, { type: 'string', description: 'a field of the tool' }]));

  test('a forced tool call whose schema cannot be enforced: the same 400 for a large body as for a small one', async () => {
    const unenforceable = { type: 'object', properties: { a: { type: 'string' } }, if: { type: 'object' } };
    const request = (tools: number) => ({
      messages: [{ role: 'user', content: 'hi' }],
      tools: [tool(0, unenforceable), ...Array.from({ length: tools }, (_, i) => tool(i + 1, { type: 'object', properties }))],
      tool_choice: 'required',
    });
    const small = await postJson(stack.port, '/v1/chat/completions', request(1));
    const refusedBefore = stack.server.prompts.stats.parseRefused;
    const largeBody = JSON.stringify(request(120));
    assert.ok(Buffer.byteLength(largeBody) > LARGE_BODY_BYTES);
    const large = await postJson(stack.port, '/v1/chat/completions', largeBody);
    assert.equal(stack.server.prompts.stats.parseRefused, refusedBefore + 1, 'the large body was validated and refused in a worker');
    assert.equal(small.status, 400, small.body);
    assert.equal(large.status, 400, large.body);
    assert.deepEqual(error(large.body), error(small.body));
    assert.equal((error(large.body).error as { param: string }).param, 'tools[0].function.parameters');
  });

  test('enforceable forced tools in a large body pass validation and are refused by the context bounds', async () => {
    const ctx = stack.modelInfo.contextLength;
    const wide = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`p${i}`, { type: 'string', description: 'a field of the tool' }]));
    const tools = Array.from({ length: 128 }, (_, i) => tool(i, { type: 'object', properties: wide }));
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], tools, tool_choice: 'required', max_tokens: 1 });
    assert.ok(textSize(tools, Infinity) > ctx * 64 && Buffer.byteLength(body) > LARGE_BODY_BYTES, 'parsed in a worker; more characters than the context can hold');
    const refusedBefore = stack.server.prompts.stats.parseRefused;
    const r = await postJson(stack.port, '/v1/chat/completions', body);
    assert.equal(r.status, 400, r.body.slice(0, 300));
    const e = error(r.body).error as { code: string; param: string };
    assert.equal(e.code, 'context_length_exceeded');
    assert.equal(e.param, 'tools');
    assert.equal(stack.server.prompts.stats.parseRefused, refusedBefore + 1, 'refused where it was parsed');
  });

  test('100,000 messages: the answer the life cycle gives, decided in the worker; an unknown model still gets its 404', async () => {
    const messages = Array.from({ length: 100_000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'hi' }));
    const body = { messages, max_tokens: 1 };
    // What the route + life cycle answer (validation, then the context bounds of the served model).
    let expected: unknown = null;
    try {
      checkPromptBounds(validateChatRequest(body, { maxStopLength: 512 }), stack.modelInfo.contextLength);
    } catch (err) {
      expected = (err as ApiError).toJSON();
    }
    assert.ok(expected, 'the bounds refuse it');
    const refusedBefore = stack.server.prompts.stats.parseRefused;
    const r = await postJson(stack.port, '/v1/chat/completions', body);
    assert.equal(r.status, 400);
    assert.deepEqual(error(r.body), expected);
    assert.equal(stack.server.prompts.stats.parseRefused, refusedBefore + 1);
    // Naming a model the server does not have: the lease's 404 comes first, as it always did.
    const unknown = await postJson(stack.port, '/v1/chat/completions', { ...body, model: 'no-such-model' });
    assert.equal(unknown.status, 404, unknown.body.slice(0, 300));
    assert.equal((error(unknown.body).error as { code: string }).code, 'model_not_found');
  });

  test('a large malformed body: 400 invalid_json in each API\'s error shape', async () => {
    const parsedBefore = stack.server.prompts.stats.parsed;
    const body = `{"messages":[{"role":"user","content":"${pad}"}]`;
    const openai = await postJson(stack.port, '/v1/chat/completions', body);
    assert.equal(openai.status, 400);
    assert.deepEqual((error(openai.body).error as Record<string, unknown>).code, 'invalid_json');
    const anthropic = await postJson(stack.port, '/v1/messages', body);
    assert.equal(anthropic.status, 400);
    const a = error(anthropic.body);
    assert.equal(a.type, 'error');
    assert.equal((a.error as { type: string }).type, 'invalid_request_error');
    assert.equal(stack.server.prompts.stats.parsed, parsedBefore, 'nothing parsed successfully');
    // A valid large body still works end to end (parsed in the worker, rendered in the worker).
    const ok = await postJson(stack.port, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hello '.repeat(5) }], max_tokens: 2, metadata_pad: pad });
    assert.equal(ok.status, 200, ok.body.slice(0, 300));
    assert.equal(stack.server.prompts.stats.parsed, parsedBefore + 1);
  });
  /** A raw HTTP/1.1 request written in pieces of the given sizes (cycled), with a turn of the event loop between them. */
  function rawPost(path: string, body: Buffer, headers: Record<string, string>, pieces: number[], stopAt = body.length): Promise<{ status: number; body: string }> {
    return new Promise((resolve) => {
      const sock = net.connect(stack.port, '127.0.0.1');
      const received: Buffer[] = [];
      sock.on('data', (d: Buffer) => received.push(d));
      // The server may answer (413) and close while pieces are still being written: EPIPE/ECONNRESET
      // then, and the answer already read is what counts.
      sock.on('error', () => {});
      sock.on('close', () => {
        const answer = Buffer.concat(received).toString('utf8');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
        resolve({ status: m ? Number(m[1]) : 0, body: answer.slice(answer.indexOf('\r\n\r\n') + 4) });
      });
      const head = Object.entries({ host: `127.0.0.1:${stack.port}`, 'content-type': 'application/json', connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      sock.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
      let at = 0;
      let i = 0;
      const next = () => {
        // A complete body: wait for the answer (`connection: close` ends the socket). A short one:
        // the client gives up writing and half-closes, as a crashed or cut-off client would.
        if (at >= stopAt) return void (stopAt < body.length ? sock.end() : undefined);
        if (sock.destroyed) return;
        const n = Math.min(pieces[i++ % pieces.length], stopAt - at);
        const chunk = body.subarray(at, at + n);
        at += n;
        const framed = headers['transfer-encoding'] === 'chunked' ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk;
        sock.write(framed, () => setImmediate(next));
        if (at >= stopAt && headers['transfer-encoding'] === 'chunked') sock.write('0\r\n\r\n');
      };
      next();
    });
  }

  test('a large body written in odd-sized pieces (multi-byte characters split across them) arrives intact, with or without Content-Length', async () => {
    const request = { messages: [{ role: 'user', content: 'Name three colours.' }], max_tokens: 6, temperature: 0 };
    const small = await postJson(stack.port, '/v1/chat/completions', request);
    assert.equal(small.status, 200, small.body.slice(0, 300));
    const expected = (error(small.body).choices as { message: { content: string } }[])[0].message.content;
    // 4-byte, 3-byte and 2-byte UTF-8 characters: a piece boundary lands inside them, and a byte
    // copied to the wrong offset breaks the UTF-8 check, the JSON, or the prompt (another answer).
    const body = Buffer.from(JSON.stringify({ ...request, metadata_pad: '😀€é'.repeat(Math.ceil(LARGE_BODY_BYTES / 9) + 999) }));
    assert.ok(body.length > LARGE_BODY_BYTES);
    const pieces = [1, 7, 4093, 65537, 3, 32768];
    const framings: Record<string, string>[] = [{ 'content-length': String(body.length) }, { 'transfer-encoding': 'chunked' }];
    for (const headers of framings) {
      const parsedBefore = stack.server.prompts.stats.parsed;
      const r = await rawPost('/v1/chat/completions', body, headers, pieces);
      assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.body.slice(0, 300)}`);
      const answer = (error(r.body).choices as { message: { content: string } }[])[0].message.content;
      assert.equal(answer, expected, `the same greedy answer as the small request (${JSON.stringify(headers)})`);
      assert.equal(stack.server.prompts.stats.parsed, parsedBefore + 1, 'parsed in the worker');
    }
  });

  test('a client that goes away halfway through a large body: nothing parsed, the server keeps answering', async () => {
    const body = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], metadata_pad: pad }));
    const parsedBefore = stack.server.prompts.stats.parsed;
    await new Promise<void>((resolve) => {
      const sock = net.connect(stack.port, '127.0.0.1', () => {
        sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${stack.port}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
        sock.write(body.subarray(0, body.length >> 1), () => sock.destroy());
      });
      sock.on('error', () => {});
      sock.on('close', () => resolve());
    });
    const ok = await postJson(stack.port, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, metadata_pad: pad });
    assert.equal(ok.status, 200, ok.body.slice(0, 300));
    assert.equal(stack.server.prompts.stats.parsed, parsedBefore + 1, 'only the complete body was parsed');
  });

  test('a large Content-Length over the limit: 413 before the body is read', async () => {
    const body = Buffer.alloc(LARGE_BODY_BYTES * 2, 0x20);
    // Only the first piece is written: the answer comes from the headers alone.
    const r = await rawPost('/v1/chat/completions', body, { 'content-length': String(64 * 1024 * 1024) }, [1024], 1024);
    assert.equal(r.status, 413);
    assert.equal((error(r.body).error as { code: string }).code, 'body_too_large');
  });
  test('the other front doors (Anthropic, Responses, Ollama): a large request over the context gets, from the worker, the answer its route gives inline', async () => {
    // The route's own answer: the same requests to a server that parses every body inline.
    const inline = await startStack({ config: { promptWorkers: 0 } });
    try {
      const model = ((await (await fetch(`http://127.0.0.1:${stack.port}/v1/models`)).json()) as { data: { id: string }[] }).data[0].id;
      const long = 'a'.repeat(stack.modelInfo.contextLength * 64 + 1000);
      const cases: [string, Record<string, unknown>, boolean][] = [
        ['/v1/messages', { model, max_tokens: 1, messages: [{ role: 'user', content: long }] }, true],
        ['/v1/messages', { model, max_tokens: 1, system: long, messages: [{ role: 'user', content: 'hi' }] }, true],
        ['/v1/responses', { model, max_output_tokens: 16, input: long }, true],
        ['/api/chat', { model, stream: false, messages: [{ role: 'user', content: long }] }, true],
        ['/api/generate', { model, stream: false, prompt: long }, true],
        // Not decided in the worker: an unknown previous response (the store is the main thread's), a model not served.
        ['/v1/responses', { model, max_output_tokens: 16, input: long, previous_response_id: 'resp_unknown' }, false],
        ['/v1/messages', { model: 'no-such-model', max_tokens: 1, messages: [{ role: 'user', content: long }] }, false],
        // Invalid: refused in the worker by the route's own validation.
        ['/v1/messages', { model, messages: [{ role: 'user', content: long }] }, true],
      ];
      const scrub = (text: string) => text.replace(/"(request_id|id)":"[^"]*"/g, '"$1":"-"');
      for (const [path, body, inWorker] of cases) {
        const refusedBefore = stack.server.prompts.stats.parseRefused;
        const got = await postJson(stack.port, path, body);
        const want = await postJson(inline.port, path, body);
        const label = `${path} ${Object.keys(body).join(',')}`;
        assert.ok(got.status >= 400, `${label}: refused (${got.status})`);
        assert.equal(got.status, want.status, `${label}: ${got.body.slice(0, 200)} vs ${want.body.slice(0, 200)}`);
        assert.equal(scrub(got.body), scrub(want.body), label);
        assert.equal(stack.server.prompts.stats.parseRefused, refusedBefore + (inWorker ? 1 : 0), `${label}: refused in the worker: ${inWorker}`);
      }
    } finally {
      await inline.close();
    }
  });
});
