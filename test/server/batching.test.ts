// Continuous batching through the real server: with maxConcurrent 4 (and the engine batching 4),
// four streaming requests sent at once through the official `openai` client are decoded together
// (the engine's counters show shared steps) and each gets exactly the text it gets alone — its own
// sampling parameters, stop string and length — and cancelling one stream leaves the others intact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;

before(async () => {
  stack = await startStack({ config: { maxConcurrent: 4 }, engine: { maxBatch: 4 } });
  model = stack.modelInfo.id;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  await stack?.close();
});

interface Req {
  content: string;
  max_tokens: number;
  temperature?: number;
  seed?: number;
  top_p?: number;
  stop?: string[];
}

async function streamText(r: Req, signal?: AbortSignal, onChunk?: (n: number) => void): Promise<{ text: string; finish: string | null }> {
  const stream = await client.chat.completions.create(
    { model, messages: [{ role: 'user', content: r.content }], max_tokens: r.max_tokens, temperature: r.temperature ?? 0, seed: r.seed, top_p: r.top_p, stop: r.stop, stream: true },
    { signal },
  );
  let text = '';
  let finish: string | null = null;
  let n = 0;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
    onChunk?.(++n);
  }
  return { text, finish };
}

describe('continuous batching on the real server', () => {
  test('4 concurrent streams get their single-request text (sampling, stop, length per request) and share decode steps', { timeout: 240_000 }, async () => {
    const reqs: Req[] = [
      { content: 'Tell me a story about a lighthouse keeper.', max_tokens: 40 },
      { content: 'List three colours.', max_tokens: 28, temperature: 0.8, top_p: 0.9, seed: 11 },
      { content: 'A much longer question, about the history of the printing press, movable type, paper and ink, and how books spread across Europe.', max_tokens: 36 },
      { content: 'Hi', max_tokens: 44 },
    ];
    // Alone, one after the other.
    const alone = [];
    for (const r of reqs) alone.push(await streamText(r));
    // A stop string taken from the middle of request 3's own output: batched, it must stop there.
    const words = alone[3].text.slice(8);
    const stop = words.slice(0, Math.min(6, words.length));
    const stopReq = { ...reqs[3], stop: [stop] };
    const stopAlone = await streamText(stopReq);
    assert.equal(stopAlone.finish, 'stop');
    reqs[3] = stopReq;
    alone[3] = stopAlone;

    const before = (await stack.engine.stats()).batch;
    assert.ok(before, 'the engine reports its batch counters');
    const together = await Promise.all(reqs.map((r) => streamText(r)));
    for (let i = 0; i < reqs.length; i++) {
      assert.equal(together[i].text, alone[i].text, `request ${i}`);
      assert.equal(together[i].finish, alone[i].finish, `request ${i} finish reason`);
    }
    const after = (await stack.engine.stats()).batch!;
    assert.ok(after.maxSequences >= 2, `at most ${after.maxSequences} sequences shared a step`);
    assert.ok(after.batchedSteps > before.batchedSteps, 'steps were shared');
  });

  test('cancelling one of 4 concurrent streams does not disturb the other three', { timeout: 240_000 }, async () => {
    const reqs: Req[] = [
      { content: 'Count to ten.', max_tokens: 32 },
      { content: 'Describe the sea.', max_tokens: 48 },
      { content: 'Name a fruit.', max_tokens: 30 },
      { content: 'What is a cache?', max_tokens: 34 },
    ];
    const alone = [];
    for (const r of reqs) alone.push(await streamText(r));
    const abort = new AbortController();
    const cancelledBefore = stack.records.filter((r) => r.cancelled).length;
    // (The openai client ends the iteration quietly when its signal aborts.)
    const results = await Promise.all(reqs.map((r, i) => (i === 1 ? streamText(r, abort.signal, (n) => (n === 3 ? abort.abort() : undefined)) : streamText(r))));
    assert.equal(results[1].finish, null, 'the cancelled stream did not finish');
    assert.ok(results[1].text.length < alone[1].text.length && alone[1].text.startsWith(results[1].text), 'it stopped early, on its own text');
    for (const i of [0, 2, 3]) assert.equal(results[i].text, alone[i].text, `request ${i}`);
    for (let i = 0; i < 100 && stack.records.filter((r) => r.cancelled).length === cancelledBefore; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(stack.records.filter((r) => r.cancelled).length, cancelledBefore + 1, 'the server recorded the cancelled request');
    // The engine is free again: a new request completes normally.
    const again = await streamText(reqs[2]);
    assert.equal(again.text, alone[2].text);
  });
});
