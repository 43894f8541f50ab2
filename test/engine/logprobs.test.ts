// Log-probabilities in the real token generator (MLX, tiny random-weight model, real Qwen3
// vocabulary): every reported number is checked against log_softmax of a full-recompute of the
// logits in float64 — the RAW model distribution, also when penalties, temperature or a decoding
// constraint chose the token. Plus the tracker that assigns tokens to released text (stop strings).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateAll, generateTokens, type LoadedModel } from '../../main/engine/model/generator.ts';
import type { TokenLogprobs } from '../../main/engine/model/sampling.ts';
import type { TextPipeline } from '../../main/engine/text/index.ts';
import { ANY_OBJECT_NODE, TokenConstraint, type TokenTable } from '../../main/engine/constrain/index.ts';
import { LogprobTracker, TokenTexts } from '../../main/engine/process/logprobs.ts';
import { DEFAULT_SAMPLING, type GenerateRequest, type SamplingParams } from '../../main/engine/types.ts';
import { parseEngineMessage, validateGenerateRequest } from '../../main/engine/process/protocol.ts';
import { engineLogits, loadGeneratorFixture } from './reference-helpers.ts';

let lm: LoadedModel;
let text: TextPipeline;
let table: TokenTable;
let eos: Set<number>;

before(async () => {
  ({ lm, text, table, eos } = await loadGeneratorFixture());
});

const prompt = () => text.encode('<|im_start|>user\nSay something<|im_end|>\n<|im_start|>assistant\n', { addSpecialTokens: false });
const sampling = (p: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_SAMPLING, ...p });

/** log_softmax in float64. */
function logSoftmax(row: number[]): number[] {
  let m = -Infinity;
  for (const x of row) if (x > m) m = x;
  let s = 0;
  for (const x of row) s += Math.exp(x - m);
  const lse = m + Math.log(s);
  return row.map((x) => x - lse);
}

async function run(req: Parameters<typeof generateTokens>[2]): Promise<{ token: number; logprobs?: TokenLogprobs }[]> {
  const out: { token: number; logprobs?: TokenLogprobs }[] = [];
  for await (const t of generateTokens(lm, null, req)) out.push(t);
  return out;
}

/** Checks every step against the reference distribution of the same prefix; returns the steps whose token was not the raw argmax. */
function checkAgainstReference(steps: { token: number; logprobs?: TokenLogprobs }[], k: number): number {
  const seq = prompt();
  let notArgmax = 0;
  for (const [i, s] of steps.entries()) {
    const lp = s.logprobs;
    assert.ok(lp, `step ${i} has logprobs`);
    assert.equal(lp.id, s.token);
    const rows = engineLogits(lm, seq);
    const ref = logSoftmax(rows[rows.length - 1]!);
    assert.ok(Math.abs(lp.logprob - ref[s.token]!) < 1e-4, `step ${i}: chosen ${lp.logprob} vs reference ${ref[s.token]}`);
    assert.ok(lp.logprob <= 0);
    const order = ref.map((v, id) => ({ id, v })).sort((a, b) => b.v - a.v);
    assert.equal(lp.top.length, k);
    for (let j = 0; j < k; j++) {
      assert.ok(Math.abs(lp.top[j]!.logprob - order[j]!.v) < 1e-4, `step ${i} alt ${j}: ${lp.top[j]!.logprob} vs ${order[j]!.v}`);
      assert.equal(lp.top[j]!.id, order[j]!.id, `step ${i} alt ${j} id`);
      if (j > 0) assert.ok(lp.top[j - 1]!.logprob >= lp.top[j]!.logprob, 'sorted descending');
    }
    if (s.token !== order[0]!.id) notArgmax++;
    seq.push(s.token);
  }
  return notArgmax;
}

describe('generator logprobs (raw model distribution)', () => {
  test('greedy: chosen = top-1 alternative = reference log_softmax max; alternatives = reference top-k', async () => {
    const steps = await run({ promptIds: prompt(), sampling: sampling({ maxTokens: 6 }), logprobs: 5, eosTokenIds: [...eos] });
    assert.ok(steps.length > 0);
    assert.equal(checkAgainstReference(steps, 5), 0);
    for (const s of steps) assert.equal(s.logprobs!.logprob, s.logprobs!.top[0]!.logprob);
  });

  test('penalties + temperature: the numbers are still the raw distribution (before penalties and temperature)', async () => {
    const steps = await run({
      promptIds: prompt(),
      sampling: sampling({ maxTokens: 6, temperature: 1.5, seed: 7, repetitionPenalty: 1.5, presencePenalty: 1, topK: 50 }),
      logprobs: 3,
      eosTokenIds: [...eos],
    });
    assert.ok(steps.length > 0);
    checkAgainstReference(steps, 3);
  });

  test('under a constraint: raw (unconstrained) log-probabilities of the token the constraint let through', async () => {
    const c = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
    const steps = await run({ promptIds: prompt(), sampling: sampling({ maxTokens: 6 }), logprobs: 4, constraint: c, eosTokenIds: [...eos] });
    assert.equal(steps.length, 6);
    // A random model never starts JSON on its own: the constraint overrode the raw argmax.
    assert.ok(checkAgainstReference(steps, 4) > 0);
    assert.ok(steps[0]!.logprobs!.logprob < steps[0]!.logprobs!.top[0]!.logprob);
  });

  test('logprobs 0 → chosen token only; not requested → no logprobs field', async () => {
    const zero = await run({ promptIds: prompt(), sampling: sampling({ maxTokens: 3 }), logprobs: 0, eosTokenIds: [...eos] });
    checkAgainstReference(zero, 0);
    const off = await generateAll(lm, null, { promptIds: prompt(), sampling: sampling({ maxTokens: 3 }), eosTokenIds: [...eos] });
    assert.deepEqual(off.tokens, zero.map((s) => s.token));
    const raw = await run({ promptIds: prompt(), sampling: sampling({ maxTokens: 3 }), eosTokenIds: [...eos] });
    for (const s of raw) assert.equal(s.logprobs, undefined);
  });
});

describe('LogprobTracker: which delta reports which token', () => {
  const texts = () => new TokenTexts(
    (id) => table.bytes[id],
    (id) => text.decode([id], { skipSpecialTokens: false }),
  );
  const sampled = (id: number) => ({ id, logprob: -1, top: [{ id, logprob: -1 }] });

  test('held-back text: tokens come out when their text is released; a cut stop string drops its own tokens only', () => {
    const ids = text.encode('Hello world, stop here', { addSpecialTokens: false });
    const pieces = ids.map((id) => text.decode([id]));
    const comma = pieces.indexOf(',');
    assert.ok(comma > 0, `',' is its own token: ${JSON.stringify(pieces)}`);
    const detok = text.createDetokenizer();
    const stops = text.createStopMatcher([', st']);
    const tr = new LogprobTracker(texts());
    const released: string[][] = [];
    let out = '';
    for (const id of ids) {
      const piece = detok.push(id);
      tr.push(sampled(id), piece);
      const r = stops.push(piece);
      out += r.emit;
      const lps = tr.emitted(r.emit.length);
      if (r.stopped) lps.push(...tr.stopped());
      released.push(lps.map((t) => t.token));
      if (r.stopped) break;
    }
    assert.equal(out, 'Hello world');
    // Each token before ',' comes out with its own text; ',' is held (it may start ', st') and,
    // wholly inside the cut stop string, is never reported.
    assert.deepEqual(released.slice(0, comma), pieces.slice(0, comma).map((p) => [p]));
    assert.deepEqual(released.slice(comma), released.slice(comma).map(() => []));
    assert.equal(released.flat().join(''), 'Hello world');
  });

  test('a token straddling the cut is reported; the first bytes of a split character get text ""', () => {
    const tr = new LogprobTracker(texts());
    // Two byte-level tokens that together spell one character: find a character Qwen3 splits.
    const ids = text.encode('🫠', { addSpecialTokens: false });
    assert.ok(ids.length >= 2, 'the emoji is split over several tokens');
    const detok = text.createDetokenizer();
    for (const id of ids) tr.push(sampled(id), detok.push(id));
    const lps = tr.emitted('🫠'.length);
    assert.equal(lps.length, ids.length);
    assert.equal(lps.map((t) => t.token).join(''), '🫠');
    assert.equal(lps[0]!.token, '');
    assert.deepEqual(lps.flatMap((t) => t.bytes), [...new TextEncoder().encode('🫠')]);
    assert.equal(lps[0]!.top[0]!.token, '', 'the chosen token shows the same text among the alternatives');

    const tr2 = new LogprobTracker(texts());
    const ids2 = text.encode('abc defgh', { addSpecialTokens: false });
    const detok2 = text.createDetokenizer();
    const starts: number[] = [];
    let pos = 0;
    for (const id of ids2) {
      const piece = detok2.push(id);
      starts.push(pos);
      pos += piece.length;
      tr2.push(sampled(id), piece);
    }
    // A stop string cut after 'abc d': tokens starting before offset 5 are reported (the one holding
    // ' d…' straddles the cut), the ones after it are not.
    const first = tr2.emitted(5);
    const rest = tr2.stopped();
    const expected = ids2.filter((_, i) => starts[i]! < 5).map((id) => text.decode([id]));
    assert.deepEqual([...first, ...rest].map((t) => t.token), expected);
    assert.ok(expected.join('').length > 5, 'the last reported token straddles the cut');
    assert.ok(expected.length < ids2.length, 'some token lies wholly after the cut');
  });
});

describe('protocol: logprobs limits', () => {
  const req = (extra: Record<string, unknown>) => ({ requestId: 'r1', promptIds: [1, 2], sampling: { ...DEFAULT_SAMPLING }, ...extra });
  const alt = (o: Record<string, unknown> = {}) => ({ id: 5, token: 'a', logprob: -0.5, bytes: [97], ...o });
  const delta = (logprobs: unknown) => parseEngineMessage({ type: 'event', event: { type: 'delta', requestId: 'r1', text: 'a', tokens: 1, logprobs } });

  test('requests: logprobs is an integer 0..20, kept when valid, absent when not sent', () => {
    assert.equal((validateGenerateRequest(req({ logprobs: 20 })) as GenerateRequest).logprobs, 20);
    assert.equal((validateGenerateRequest(req({ logprobs: 0 })) as GenerateRequest).logprobs, 0);
    assert.equal('logprobs' in (validateGenerateRequest(req({})) as GenerateRequest), false);
    for (const bad of [21, -1, 1.5, '3', true]) assert.equal(typeof validateGenerateRequest(req({ logprobs: bad })), 'string', String(bad));
  });

  test('delta events: well-formed entries pass, malformed ones drop the message', () => {
    assert.ok(delta([{ ...alt(), top: [alt(), alt({ id: 6, logprob: -2 })] }]));
    assert.ok(delta(undefined));
    assert.equal(delta([{ ...alt(), top: Array.from({ length: 21 }, () => alt()) }]), null, '21 alternatives');
    assert.equal(delta([{ ...alt({ logprob: 0.5 }), top: [] }]), null, 'positive logprob');
    assert.equal(delta([{ ...alt({ logprob: Infinity }), top: [] }]), null, 'non-finite');
    assert.equal(delta([{ ...alt({ bytes: [256] }), top: [] }]), null, 'byte out of range');
    assert.equal(delta([{ ...alt({ bytes: new Array(2000).fill(1) }), top: [] }]), null, 'too many bytes');
    assert.equal(delta([{ ...alt(), top: [alt({ token: 7 })] }]), null, 'alternative without text');
    assert.equal(delta({}), null, 'not an array');
  });
});
