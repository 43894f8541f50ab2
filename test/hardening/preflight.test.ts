// Preflight on good and broken inputs: real model folders (tiny-model fixture), real port binds,
// real files, MLX loaded in a real child process, and `mlx-bar check` run as a real CLI process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { runPreflight, probeNative, formatReport, type PreflightReport } from '../../main/core/preflight.ts';
import { run as runCheck } from '../../main/cli/check.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let good = ''; // sharded tiny model (index + 2 shards)
let single = ''; // single-file tiny model
const scratch: string[] = [];

function tmp(prefix = 'mlxbar-pre-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(d);
  return d;
}

/** A private copy of a model folder (tokenizer.json linked: it is 11 MB and never modified here). */
function copyModel(src: string): string {
  const dst = tmp('mlxbar-model-');
  for (const f of fs.readdirSync(src)) {
    if (f === 'tokenizer.json') fs.symlinkSync(path.join(src, f), path.join(dst, f));
    else fs.copyFileSync(path.join(src, f), path.join(dst, f));
  }
  return dst;
}

const shardNames = (dir: string) => fs.readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();

function byId(r: PreflightReport, id: string) {
  return r.checks.filter((c) => c.id === id);
}
function errorOf(r: PreflightReport, id: string) {
  const c = r.checks.find((x) => x.id === id && x.status === 'error');
  assert.ok(c, `expected an error check "${id}", got: ${JSON.stringify(r.checks.map((x) => [x.id, x.status, x.message]))}`);
  return c!;
}
/** No path, user name or stack frame in anything the report says. */
function assertClean(r: PreflightReport) {
  const text = formatReport(r);
  assert.doesNotMatch(text, /\/tmp\/|\/home\/|\/Users\/|\/root\/|node_modules|at .*:\d+:\d+|Error:/, text);
}

async function pre(model: string, extra: Parameters<typeof runPreflight>[0] = {}) {
  const { flags, ...rest } = extra ?? {};
  return runPreflight({ env: {}, skipNative: true, ...rest, flags: { model, dataDir: tmp(), port: '0', ...(flags ?? {}) } });
}

before(async () => {
  const spec = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128, vocabSize: 512 } as const;
  good = await buildTinyModel({ family: 'qwen3', ...spec, shards: 2 });
  single = await buildTinyModel({ family: 'llama', ...spec });
});

after(() => {
  for (const d of scratch) fs.rmSync(d, { recursive: true, force: true });
});

test('a good tiny model passes every check (sharded and single-file)', async () => {
  for (const m of [good, single]) {
    const r = await pre(m);
    assert.equal(r.ok, true, formatReport(r));
    for (const id of ['model-files', 'model-architecture', 'model-weights', 'memory-fit', 'data-dir', 'host-policy', 'port']) {
      assert.ok(byId(r, id).some((c) => c.status === 'ok'), `${id} ok`);
    }
    assert.ok(r.model && r.model.parameters! > 0 && r.model.weightFiles >= 1);
    assertClean(r);
  }
  assert.equal((await pre(good)).checks.find((c) => c.id === 'model-index')?.status, 'ok');
});

test('Gemma 3 multimodal checkpoint: dimensions come from text_config (no top-level num_hidden_layers), the fit is known', async () => {
  const mm = await buildTinyModel({ family: 'gemma3', layers: 3, slidingPattern: 3, slidingWindow: 8, vocabSize: 512 });
  const cfg = JSON.parse(fs.readFileSync(path.join(mm, 'config.json'), 'utf8'));
  assert.equal(cfg.num_hidden_layers, undefined, 'the multimodal layout keeps the text dimensions in text_config');
  const r = await pre(mm);
  assert.equal(r.ok, true, formatReport(r));
  assert.equal(byId(r, 'model-config').length, 0, 'no "config.json lacks num_hidden_layers" error');
  assert.ok(byId(r, 'memory-fit').some((c) => c.status === 'ok' && /KV cache/.test(c.message)));
});

test('missing required files are named exactly; substring look-alikes do not count', async () => {
  const m = copyModel(single);
  fs.rmSync(path.join(m, 'tokenizer_config.json'));
  const r = await pre(m);
  assert.equal(r.ok, false);
  assert.match(errorOf(r, 'model-files').message, /missing tokenizer_config\.json/);
  assertClean(r);

  // The seed accepted this folder (substring matches on "config.json", "tokenizer", "bin").
  const fake = tmp('mlxbar-fake-');
  for (const f of ['xconfig.json.bak', 'tokenizer_notes.txt', 'robin.txt', 'weights.safetensors.part']) fs.writeFileSync(path.join(fake, f), '{}');
  const r2 = await pre(fake);
  const msg = errorOf(r2, 'model-files').message;
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) assert.ok(msg.includes(f), `${f} in: ${msg}`);
  assertClean(r2);

  const r3 = await pre(path.join(tmp(), 'does-not-exist'));
  assert.match(errorOf(r3, 'model-folder').message, /does not exist/);
  assertClean(r3);
});

test('truncated, garbage and absurd safetensors headers are errors naming the file', async () => {
  const cases: [string, (f: string) => void, RegExp][] = [
    ['truncated to 5 bytes', (f) => fs.truncateSync(f, 5), /too small/],
    ['absurd length', (f) => {
      const b = fs.readFileSync(f);
      b.writeBigUInt64LE(0xfffffff0n, 0);
      fs.writeFileSync(f, b);
    }, /invalid header length/],
    ['garbage header', (f) => {
      const b = fs.readFileSync(f);
      b.fill(0x41, 8, 40);
      fs.writeFileSync(f, b);
    }, /not valid JSON/],
    ['truncated data', (f) => fs.truncateSync(f, fs.statSync(f).size - 100), /outside the file|truncated/],
    ['empty', (f) => fs.writeFileSync(f, ''), /too small/],
  ];
  for (const [what, corrupt, re] of cases) {
    const m = copyModel(single);
    corrupt(path.join(m, 'model.safetensors'));
    const r = await pre(m);
    assert.equal(r.ok, false, what);
    const c = errorOf(r, 'model-weights');
    assert.match(c.message, /"model\.safetensors" has an unreadable safetensors header/, what);
    assert.match(c.message, re, what);
    assert.ok(c.hint && /re-download/i.test(c.hint));
    assertClean(r);
  }
});

test('index pointing at a missing shard, a tensor in the wrong shard, or a path outside the folder', async () => {
  const m1 = copyModel(good);
  const shards = shardNames(m1);
  assert.equal(shards.length, 2);
  fs.rmSync(path.join(m1, shards[1]));
  const r1 = await pre(m1);
  assert.match(errorOf(r1, 'model-index').message, new RegExp(`missing: "${shards[1].replace(/[.]/g, '\\.')}"`));
  assertClean(r1);

  const m2 = copyModel(good);
  const idxFile = path.join(m2, 'model.safetensors.index.json');
  const idx = JSON.parse(fs.readFileSync(idxFile, 'utf8'));
  const [tensor] = Object.entries(idx.weight_map as Record<string, string>).find(([, f]) => f === shards[1])!;
  idx.weight_map[tensor] = shards[0];
  fs.writeFileSync(idxFile, JSON.stringify(idx));
  const r2 = await pre(m2);
  assert.match(errorOf(r2, 'model-index').message, /not in the named shard/);

  const m3 = copyModel(good);
  const idx3 = JSON.parse(fs.readFileSync(path.join(m3, 'model.safetensors.index.json'), 'utf8'));
  idx3.weight_map[tensor] = '../../etc/passwd.safetensors';
  fs.writeFileSync(path.join(m3, 'model.safetensors.index.json'), JSON.stringify(idx3));
  const r3 = await pre(m3);
  assert.match(errorOf(r3, 'model-index').message, /invalid shard file/);
  assertClean(r3);

  const m4 = copyModel(good);
  fs.writeFileSync(path.join(m4, 'model.safetensors.index.json'), '{"weight_map": ');
  assert.match(errorOf(await pre(m4), 'model-index').message, /not valid JSON/);
});

test('unsupported or missing model_type, and broken config.json', async () => {
  const m = copyModel(single);
  const cfgFile = path.join(m, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model_type: 'gpt2' }));
  const r = await pre(m);
  const c = errorOf(r, 'model-architecture');
  assert.match(c.message, /model_type "gpt2" is not supported/);
  assert.match(c.hint!, /llama, mistral, qwen2, qwen3/);
  delete cfg.model_type;
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  assert.match(errorOf(await pre(m), 'model-architecture').message, /no model_type/);
  fs.writeFileSync(cfgFile, '{"model_type": "llama",');
  assert.match(errorOf(await pre(m), 'model-config').message, /config\.json is not valid JSON/);
});

test('memory fit: a KV cache that cannot fit in RAM is an error with the numbers', async () => {
  const m = copyModel(single);
  const cfgFile = path.join(m, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, num_key_value_heads: 4096, max_position_embeddings: 1048576 }));
  const r = await pre(m, { flags: { contextLength: '1048576' } });
  const c = errorOf(r, 'memory-fit');
  assert.match(c.message, /does not fit.*weights .* in float32 \+ KV cache .* for 1048576 tokens/);
  assert.match(c.hint!, /context-length/);
});

test('busy port → error with a free port suggested (found by binding)', async () => {
  // A program that holds the port and never answers (check asks it for /health: not MLX Bar).
  const conns = new Set<net.Socket>();
  const blocker = net.createServer((s) => conns.add(s));
  await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, r));
  const busy = (blocker.address() as net.AddressInfo).port;
  try {
    const r = await runPreflight({ flags: { dataDir: tmp(), port: String(busy) }, env: {}, skipNative: true });
    const c = errorOf(r, 'port');
    assert.match(c.message, new RegExp(`Port ${busy} on 127\\.0\\.0\\.1 is already in use; port \\d+ is free`));
    assert.ok(r.suggestedPort && r.suggestedPort !== busy);
    assert.match(c.hint!, new RegExp(`--port ${r.suggestedPort}`));
    // the suggestion is really bindable
    const probe = net.createServer();
    await new Promise<void>((res, rej) => {
      probe.once('error', rej);
      probe.listen({ host: '127.0.0.1', port: r.suggestedPort! }, res);
    });
    await new Promise<void>((res) => probe.close(() => res()));
  } finally {
    for (const c of conns) c.destroy();
    await new Promise<void>((res) => blocker.close(() => res()));
  }
  const low = await runPreflight({ flags: { dataDir: tmp(), port: '80' }, env: {}, skipNative: true, skipPortCheck: true });
  assert.equal(low.checks.find((c) => c.id === 'port-privileged')?.status, 'warn');
});

test('host policy: non-loopback without an API key is an error; bad env values are errors by name', async () => {
  const r = await runPreflight({ flags: { dataDir: tmp(), host: '0.0.0.0', port: '0' }, env: {}, skipNative: true });
  assert.match(errorOf(r, 'host-policy').message, /0\.0\.0\.0 is reachable from other machines and no API key is set/);
  const withKey = await runPreflight({ flags: { dataDir: tmp(), host: '0.0.0.0', port: '0', apiKey: 'sk-local-123456' }, env: {}, skipNative: true });
  assert.equal(withKey.checks.find((c) => c.id === 'host-policy')?.status, 'warn');
  // The key is resolved into the settings (so the checks below look at a report that knows it)…
  assert.equal(withKey.settings?.apiKey, 'sk-local-123456');
  // …and appears in no check's message or hint.
  for (const c of withKey.checks) {
    assert.ok(!c.message.includes('sk-local-123456') && !(c.hint ?? '').includes('sk-local-123456'), `key leaked in check ${c.id}`);
  }
  assert.ok(!formatReport(withKey).includes('sk-local-123456'));

  const e = await runPreflight({ flags: { dataDir: tmp() }, env: { MLXBAR_PORT: 'eighty', MLXBAR_RESPONSE_CACHE: 'sure' }, skipNative: true, skipPortCheck: true });
  const envErrors = e.checks.filter((c) => c.id === 'env' && c.status === 'error').map((c) => c.message);
  assert.equal(envErrors.length, 2);
  assert.ok(envErrors.some((m) => m.startsWith('MLXBAR_PORT must be an integer')));
  assert.ok(envErrors.some((m) => m.startsWith('MLXBAR_RESPONSE_CACHE must be a boolean')));
  assert.equal(e.ok, false);
});

test('data folder: a file instead of a folder, an uncreatable folder, a corrupt settings file', async () => {
  const f = path.join(tmp(), 'a-file');
  fs.writeFileSync(f, 'x');
  const r1 = await runPreflight({ flags: { dataDir: f, port: '0' }, env: {}, skipNative: true });
  assert.match(errorOf(r1, 'data-dir').message, /not a folder/);
  // /proc refuses new entries even for root
  const r2 = await runPreflight({ flags: { dataDir: '/proc/mlxbar-preflight-test/data', port: '0' }, env: {}, skipNative: true });
  assert.match(errorOf(r2, 'data-dir').message, /cannot be created/);
  assertClean(r2);
  if (process.getuid && process.getuid() !== 0) {
    const ro = tmp();
    fs.chmodSync(ro, 0o500);
    const r3 = await runPreflight({ flags: { dataDir: ro, port: '0' }, env: {}, skipNative: true });
    assert.match(errorOf(r3, 'data-dir').message, /not writable/);
    fs.chmodSync(ro, 0o700);
  }
  const d = tmp();
  fs.writeFileSync(path.join(d, 'config.json'), '{"port": 80');
  const r4 = await runPreflight({ flags: { dataDir: d, port: '0' }, env: {}, skipNative: true });
  assert.equal(r4.checks.find((c) => c.id === 'settings-file')?.status, 'warn');
  const nested = tmp();
  fs.writeFileSync(path.join(nested, 'config.json'), '{"responseCache": {"maxEntries": -5}}');
  const r5 = await runPreflight({ flags: { dataDir: nested, port: '0' }, env: {}, skipNative: true });
  assert.ok(
    r5.checks.some((c) => c.id === 'settings-file' && c.message.includes('config.json: responseCache.maxEntries — responseCache.maxEntries must be ≥ 1, got -5')),
    JSON.stringify(r5.checks),
  );
  assert.equal(fs.readFileSync(path.join(d, 'config.json'), 'utf8'), '{"port": 80', 'check does not modify the settings file');
});

test('native dependencies: MLX loads in a child process; the reference BLAS is detected and warned about', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
  const ok = await probeNative(process.env, 60_000);
  assert.equal(ok.status, 'ok', ok.detail);
  const refDir = '/usr/lib/x86_64-linux-gnu/blas';
  if (fs.existsSync(path.join(refDir, 'libblas.so.3'))) {
    const ref = await probeNative({ ...process.env, MLXBAR_BLAS_DIR: refDir }, 60_000);
    assert.equal(ref.status, 'ok', ref.detail);
    assert.equal(ref.blas, 'reference');
    const r = await runPreflight({ flags: { dataDir: tmp(), port: '0' }, env: { ...process.env, MLXBAR_BLAS_DIR: refDir }, nativeTimeoutMs: 60_000 });
    const blas = r.checks.find((c) => c.id === 'blas')!;
    assert.equal(blas.status, 'warn');
    assert.match(blas.message, /reference BLAS/);
  }
  if (fs.existsSync('/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3')) assert.equal(ok.blas, 'openblas');
  // A child that dies before answering is reported, and the checker survives.
  const crashed = await probeNative({ ...process.env, NODE_OPTIONS: '--require=' + path.join(tmp(), 'missing.cjs') }, 60_000);
  assert.notEqual(crashed.status, 'ok');
});

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'main/cli/index.ts'), 'check', ...args], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test('`mlx-bar check` CLI: exit 0 on a good tiny model, 2 on errors, never a stack trace', async () => {
  const okRun = await runCli(['--model', good, '--data-dir', tmp(), '--port', '0']);
  assert.equal(okRun.code, 0, okRun.stdout + okRun.stderr);
  assert.match(okRun.stdout, /MLX Bar preflight check/);
  assert.match(okRun.stdout, /native-mlx +MLX loaded and a float32 matmul ran/);
  assert.match(okRun.stdout, /ready to serve/);

  const broken = copyModel(single);
  fs.truncateSync(path.join(broken, 'model.safetensors'), 7);
  const bad = await runCli(['--model', broken, '--data-dir', tmp(), '--host', '0.0.0.0', '--port', '0'], { MLXBAR_MAX_QUEUE: 'lots' });
  assert.equal(bad.code, 2);
  assert.match(bad.stdout, /✖ model-weights/);
  assert.match(bad.stdout, /✖ host-policy/);
  assert.match(bad.stdout, /MLXBAR_MAX_QUEUE must be an integer/);
  assert.match(bad.stdout, /the server would not start/);
  for (const s of [bad.stdout, bad.stderr]) assert.doesNotMatch(s, /at .*:\d+:\d+|\/tmp\/|Error:/);

  const usage = await runCli(['--prot', '80']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--prot/);
  assert.doesNotMatch(usage.stderr, /at .*:\d+:\d+/);
});

test('check --json prints the structured report (API key hidden)', async () => {
  let out = '';
  const code = await runCheck(['--model', single, '--data-dir', tmp(), '--port', '0', '--api-key', 'secret-key-123', '--json'], { out: (s) => (out += s), err: () => {}, env: {} });
  assert.equal(code, 0);
  const j = JSON.parse(out);
  assert.equal(j.ok, true);
  assert.ok(Array.isArray(j.checks) && j.checks.every((c: { id: string; status: string; message: string }) => c.id && ['ok', 'warn', 'error'].includes(c.status) && c.message));
  assert.ok(!out.includes('secret-key-123'));
  assert.equal(j.settings.apiKey, '(set)');
});
