// The Ollama API translation on its own (no engine): requests → internal requests, internal events
// → NDJSON lines / bodies, model listings. End-to-end with the `ollama` client: ollama-api.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../../main/common/errors.ts';
import { ollamaEmbedBody, validateOllamaChat, validateOllamaGenerate } from '../../main/server/ollama/request.ts';
import { OllamaEncoder, ollamaErrorBody } from '../../main/server/ollama/output.ts';
import { parameterSize, quantizationLevel, showBody, tagsEntry } from '../../main/server/ollama/models.ts';
import type { OutputDone } from '../../main/server/output-events.ts';

const opts = { maxStopLength: 256 };
const chat = (body: Record<string, unknown>) => validateOllamaChat(body, opts);

function rejects(fn: () => unknown, param: string, code = 'invalid_value'): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.param, param, err.message);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected a 400 on ${param}`);
}

describe('Ollama requests → internal requests', () => {
  test('stream is the default; options map onto sampling; num_predict caps the output', () => {
    const r = chat({
      model: 'tiny:latest',
      messages: [{ role: 'user', content: 'hi' }],
      options: { temperature: 0.2, top_p: 0.9, top_k: 7, min_p: 0.05, seed: 42, stop: ['END'], num_predict: 9, repeat_penalty: 1.1, num_ctx: 512, num_gpu: 99, use_mmap: true },
    });
    assert.equal(r.stream, true);
    assert.equal(r.model, 'tiny', ':latest is our id');
    assert.equal(r.numCtx, 512);
    const c = r.chat!;
    assert.equal(c.model, 'tiny');
    assert.equal(c.maxTokens, 9);
    assert.deepEqual(
      { t: c.sampling.temperature, p: c.sampling.topP, k: c.sampling.topK, minP: c.sampling.minP, seed: c.sampling.seed, stop: c.sampling.stop, rep: c.sampling.repetitionPenalty },
      { t: 0.2, p: 0.9, k: 7, minP: 0.05, seed: 42, stop: ['END'], rep: 1.1 },
    );
    assert.equal(chat({ messages: [{ role: 'user', content: 'x' }], stream: false }).stream, false);
    assert.equal(chat({ messages: [{ role: 'user', content: 'x' }], options: { num_predict: -2 } }).chat!.maxTokens, Number.MAX_SAFE_INTEGER);
    assert.equal(chat({ messages: [{ role: 'user', content: 'x' }], options: { num_predict: -1 } }).chat!.maxTokens, null);
  });

  test('format "json" / a schema become the JSON constraint; think:false the non-thinking prompt', () => {
    assert.deepEqual(chat({ messages: [{ role: 'user', content: 'x' }], format: 'json' }).chat!.constraint, { schema: null });
    const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] };
    assert.deepEqual(chat({ messages: [{ role: 'user', content: 'x' }], format: schema }).chat!.constraint, { schema });
    const off = chat({ messages: [{ role: 'user', content: 'x' }], think: false });
    assert.equal(off.think, false);
    assert.deepEqual(off.chat!.templateKwargs, { enable_thinking: false });
    assert.equal(chat({ messages: [{ role: 'user', content: 'x' }], think: 'high' }).think, true);
  });

  test('tool calls in history (object arguments) become OpenAI tool_calls; tool results keep the tool name', () => {
    const r = chat({
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: '', thinking: 'hmm', tool_calls: [{ function: { name: 'get', arguments: { city: 'Paris' } } }] },
        { role: 'tool', content: 'sunny', tool_name: 'get' },
      ],
      tools: [{ type: 'function', function: { name: 'get', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    });
    const [, a, t] = r.chat!.messages;
    assert.deepEqual(a, { role: 'assistant', content: null, reasoning_content: 'hmm', tool_calls: [{ id: 'call_1_0', type: 'function', function: { name: 'get', arguments: '{"city":"Paris"}' } }] });
    assert.deepEqual(t, { role: 'tool', content: 'sunny', name: 'get' });
    assert.equal(r.chat!.tools!.length, 1);
    assert.equal(r.chat!.toolChoice, 'auto');
  });

  test('empty messages / prompt is Ollama\'s "load the model" request', () => {
    assert.equal(chat({ model: 'x', messages: [] }).chat, null);
    assert.equal(validateOllamaGenerate({ model: 'x' }, { ...opts, vocabSize: 100 }).request, null);
  });

  test('generate: system + prompt through the chat template, raw: true as a plain completion', () => {
    const g = validateOllamaGenerate({ prompt: 'p', system: 's', stream: false }, { ...opts, vocabSize: 100 });
    assert.equal(g.request!.kind, 'chat');
    assert.deepEqual((g.request as { messages: unknown }).messages, [
      { role: 'system', content: 's' },
      { role: 'user', content: 'p' },
    ]);
    const raw = validateOllamaGenerate({ prompt: 'p', raw: true }, { ...opts, vocabSize: 100 });
    assert.equal(raw.request!.kind, 'completions');
  });

  test('errors name the Ollama field; what we cannot do is refused', () => {
    const m = [{ role: 'user', content: 'x' }];
    const e = rejects(() => chat({ messages: m, options: { temperature: 5 } }), 'options.temperature');
    assert.match(e.message, /options\.temperature/);
    rejects(() => chat({ messages: m, options: { num_predict: 0 } }), 'options.num_predict');
    rejects(() => chat({ messages: m, format: 'yaml' }), 'format');
    rejects(() => chat({ messages: m, format: { type: 'string', not: {} } }), 'format');
    rejects(() => chat({ messages: [{ role: 'user', content: 'x', images: ['aGk='] }] }), 'messages[0].images', 'unsupported_parameter');
    rejects(() => validateOllamaGenerate({ prompt: 'p', suffix: 's' }, { ...opts, vocabSize: 100 }), 'suffix', 'unsupported_parameter');
    rejects(() => validateOllamaGenerate({ prompt: 'p', context: [1, 2] }, { ...opts, vocabSize: 100 }), 'context', 'unsupported_parameter');
    rejects(() => chat({ messages: [{ role: 'robot', content: 'x' }] }), 'messages');
  });

  test('embed: truncation on by default, as Ollama', () => {
    assert.deepEqual(ollamaEmbedBody({ model: 'm:latest', input: ['a', 'b'] }), { model: 'm', input: ['a', 'b'], truncate: true });
    assert.equal(ollamaEmbedBody({ input: 'a', truncate: false }).truncate, false);
  });
});

const done = (over: Partial<OutputDone> = {}): OutputDone => ({ finishReason: 'stop', promptTokens: 10, cachedTokens: 0, completionTokens: 3, prefillMs: 1.5, decodeMs: 2, totalMs: 4, ...over });

describe('internal events → Ollama lines and bodies', () => {
  test('stream: content and thinking lines, a whole tool call once complete, then done with stats in ns', () => {
    const enc = new OllamaEncoder('m', 'chat');
    const lines = [
      ...enc.push({ type: 'reasoning', text: 'hm' }),
      ...enc.push({ type: 'content', text: 'ok' }),
      ...enc.push({ type: 'tool_call', index: 0, id: 'call_1', name: 'get' }),
      ...enc.push({ type: 'tool_call_arguments', index: 0, argumentsDelta: '{"city":' }),
      ...enc.push({ type: 'tool_call_arguments', index: 0, argumentsDelta: '"Paris"}' }),
      ...enc.finish(done({ finishReason: 'tool_calls' })),
    ];
    assert.equal(lines.length, 4, 'argument fragments are not lines of their own');
    assert.deepEqual((lines[0] as { message: unknown }).message, { role: 'assistant', content: '', thinking: 'hm' });
    assert.deepEqual((lines[1] as { message: unknown }).message, { role: 'assistant', content: 'ok' });
    assert.deepEqual((lines[2] as { message: unknown }).message, {
      role: 'assistant',
      content: '',
      tool_calls: [{ id: 'call_1', function: { index: 0, name: 'get', arguments: { city: 'Paris' } } }],
    });
    const last = lines[3] as Record<string, unknown>;
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    assert.equal(last.prompt_eval_count, 10);
    assert.equal(last.eval_count, 3);
    assert.equal(last.prompt_eval_duration, 1_500_000);
    assert.equal(last.total_duration, 4_000_000);
    assert.ok(!Number.isNaN(Date.parse(last.created_at as string)));
    for (const l of lines.slice(0, 3)) assert.equal((l as { done: boolean }).done, false);
  });

  test('non-stream body collects content, thinking and calls; a call cut short stays text', () => {
    const enc = new OllamaEncoder('m', 'chat');
    enc.push({ type: 'content', text: 'a' });
    enc.push({ type: 'tool_call', index: 0, id: 'c', name: 'f' });
    enc.push({ type: 'tool_call_arguments', index: 0, argumentsDelta: '{"x": 1' });
    const body = enc.body(done({ finishReason: 'length' }));
    assert.equal(body.done_reason, 'length');
    assert.deepEqual(body.message, { role: 'assistant', content: 'a{"x": 1' });
  });

  test('generate uses `response` and a top-level `thinking`', () => {
    const enc = new OllamaEncoder('m', 'generate');
    assert.deepEqual(
      enc.push({ type: 'reasoning', text: 't' }).map((l) => [l.response, l.thinking]),
      [['', 't']],
    );
    enc.push({ type: 'content', text: 'r' });
    const body = enc.body(done());
    assert.equal(body.response, 'r');
    assert.equal(body.thinking, 't');
    assert.equal(body.message, undefined);
  });

  test("errors are Ollama's {error}", () => {
    assert.deepEqual(ollamaErrorBody(new ApiError('model_not_found', "model 'x' not found")), { error: "model 'x' not found" });
  });
});

describe('Ollama model listings', () => {
  const facts = { id: 'org/Qwen3-0.6B-4bit', sizeBytes: 123, architecture: 'qwen3', parameters: 596_049_920, quantization: { bits: 4 }, dtype: 'q4', contextLength: 40960, modifiedAt: 0, capabilities: { tools: true, thinking: true } };
  test('tags entry: our id as name and model, details in Ollama style', () => {
    const e = tagsEntry(facts);
    assert.equal(e.name, 'org/Qwen3-0.6B-4bit');
    assert.equal(e.model, 'org/Qwen3-0.6B-4bit');
    assert.match(e.digest as string, /^[0-9a-f]{64}$/);
    assert.deepEqual(e.details, { parent_model: '', format: 'mlx', family: 'qwen3', families: ['qwen3'], parameter_size: '596.05M', quantization_level: 'Q4' });
  });
  test('show: context length under the GGUF-style key clients read; capabilities from the template', () => {
    const s = showBody(facts);
    assert.equal((s.model_info as Record<string, unknown>)['qwen3.context_length'], 40960);
    assert.deepEqual(s.capabilities, ['completion', 'tools', 'thinking']);
  });
  test('sizes and levels', () => {
    assert.equal(parameterSize(8_030_000_000), '8.0B');
    assert.equal(quantizationLevel({ quantization: null, dtype: 'bfloat16' }), 'BF16');
  });
});
