// The reasoning split shared by every API: expected results written out by hand for the cases a
// user sees (Qwen3 thinking output, thinking off, a prompt that opens the block, a tag that is not
// at the start, an unclosed block), and the streaming property: any cut of the text into deltas
// (tags split anywhere) gives exactly the whole-text result. Plus the combined splitter with the
// real Hermes tool-call parser: a call written inside the thinking block is not a call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rng } from '../helpers/rng.ts';
import { ReasoningSplitter, promptOpensThinking, splitReasoning } from '../../main/engine/text/reasoning.ts';
import { createToolCallParser } from '../../main/engine/text/index.ts';
import { collectEvents, collectOutput, OutputSplitter, type OutputEvent } from '../../main/server/output-split.ts';

const CASES: { name: string; text: string; startInThinking?: boolean; reasoning: string | null; content: string }[] = [
  { name: 'Qwen3 thinking output', text: '<think>\nThe user greets me.\n</think>\n\nHello!', reasoning: '\nThe user greets me.\n', content: 'Hello!' },
  { name: 'no think block', text: 'Hello there', reasoning: null, content: 'Hello there' },
  { name: 'leading whitespace before the block', text: '\n <think>a</think>b', reasoning: 'a', content: 'b' },
  { name: 'tag later in the answer stays content', text: 'Use <think> tags </think> like this', reasoning: null, content: 'Use <think> tags </think> like this' },
  { name: 'unclosed block (cut by max_tokens) is reasoning', text: '<think>still thinking about', reasoning: 'still thinking about', content: '' },
  { name: 'prompt opened the block', text: 'why\n</think>\n\nAnswer', startInThinking: true, reasoning: 'why\n', content: 'Answer' },
  { name: 'empty block (thinking off in Qwen3 style output)', text: '<think>\n\n</think>\n\nAnswer', reasoning: '\n\n', content: 'Answer' },
  { name: 'almost a tag', text: '<thin k>x', reasoning: null, content: '<thin k>x' },
  { name: 'only whitespace', text: '  \n', reasoning: null, content: '  \n' },
  { name: 'partial close tag inside reasoning is reasoning', text: '<think>a </thi b</think>c', reasoning: 'a </thi b', content: 'c' },
  { name: 'partial open tag at the end', text: '<thi', reasoning: null, content: '<thi' },
];

test('whole-text split: the documented cases', () => {
  for (const c of CASES) {
    assert.deepEqual(splitReasoning(c.text, { startInThinking: c.startInThinking }), { reasoning: c.reasoning, content: c.content }, c.name);
  }
});

test('streaming: every random cut into deltas equals the whole-text split', () => {
  const r = rng(12);
  for (const c of CASES) {
    for (let trial = 0; trial < 200; trial++) {
      const s = new ReasoningSplitter({ startInThinking: c.startInThinking });
      let reasoning = '';
      let content = '';
      let i = 0;
      while (i < c.text.length) {
        const n = 1 + Math.floor(r() * 4);
        const part = s.push(c.text.slice(i, i + n));
        reasoning += part.reasoning;
        content += part.content;
        i += n;
      }
      const end = s.flush();
      reasoning += end.reasoning;
      content += end.content;
      assert.equal(content, c.content, `${c.name} (content)`);
      assert.equal(s.sawReasoning ? reasoning : null, c.reasoning, `${c.name} (reasoning)`);
    }
  }
});

test('streaming: reasoning is released as it comes, not held to the end', () => {
  const s = new ReasoningSplitter();
  assert.deepEqual(s.push('<thi'), { reasoning: '', content: '' });
  assert.deepEqual(s.push('nk>step one'), { reasoning: 'step one', content: '' });
  assert.equal(s.inReasoning, true);
  // `</` could start the closing tag: held, everything before it is out.
  assert.deepEqual(s.push(', two </'), { reasoning: ', two ', content: '' });
  assert.deepEqual(s.push('think>\n\nThe answer'), { reasoning: '', content: 'The answer' });
  assert.deepEqual(s.push(' <think>x'), { reasoning: '', content: ' <think>x' });
});

test('promptOpensThinking: open block at the end of the prompt only', () => {
  assert.equal(promptOpensThinking('<|im_start|>assistant\n<think>\n'), true);
  assert.equal(promptOpensThinking('<|im_start|>assistant\n<think>\n\n</think>\n\n'), false);
  assert.equal(promptOpensThinking('<|im_start|>assistant\n'), false);
  assert.equal(promptOpensThinking('user wrote <think> here\n<|im_start|>assistant\n'), false);
});

test('combined splitter: a tool call inside the thinking block is not a call; one after it is', () => {
  const text =
    '<think>maybe <tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call> no</think>\n\n' +
    'Sure.\n<tool_call>\n{"name": "read", "arguments": {"path": "a.txt"}}\n</tool_call>';
  const whole = collectOutput(text, { reasoning: true, toolParser: createToolCallParser('hermes') });
  assert.equal(whole.reasoning, 'maybe <tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call> no');
  assert.equal(whole.content, 'Sure.');
  assert.equal(whole.toolCalls.length, 1);
  assert.equal(whole.toolCalls[0]!.function.name, 'read');
  assert.deepEqual(JSON.parse(whole.toolCalls[0]!.function.arguments), { path: 'a.txt' });

  const r = rng(5);
  for (let trial = 0; trial < 100; trial++) {
    const sp = new OutputSplitter({ reasoning: true, toolParser: createToolCallParser('hermes') });
    const events: OutputEvent[] = [];
    for (let i = 0; i < text.length; ) {
      const n = 1 + Math.floor(r() * 6);
      events.push(...sp.push(text.slice(i, i + n)));
      i += n;
    }
    events.push(...sp.flush());
    const got = collectEvents(events);
    assert.equal(got.reasoning, whole.reasoning);
    assert.equal(got.content, whole.content);
    assert.deepEqual(
      got.toolCalls.map((c) => [c.function.name, c.function.arguments]),
      whole.toolCalls.map((c) => [c.function.name, c.function.arguments]),
    );
    // Reasoning events all come before any answer event.
    const firstAnswer = events.findIndex((e) => e.type !== 'reasoning');
    assert.ok(events.slice(firstAnswer).every((e) => e.type !== 'reasoning'));
  }
});

test('combined splitter with the split off: the think block stays in the content', () => {
  const out = collectOutput('<think>a</think>b', { reasoning: false, toolParser: null });
  assert.deepEqual(out, { reasoning: null, content: '<think>a</think>b', toolCalls: [] });
});
