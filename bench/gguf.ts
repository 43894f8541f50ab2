// A small GGUF (v3) writer for the bench's llama.cpp yardstick: converts one of the bench's
// random-weight float32 checkpoints (Hugging Face safetensors layout, Llama/Qwen2/Qwen3) into a
// GGUF file that llama.cpp loads, so both engines run on the same weights. Written from ggml's
// docs/gguf.md (header, typed metadata, tensor infos, aligned data) and ggml's Q4_0 block layout;
// no MLX needed (safetensors are read directly), and tensors are streamed one at a time.
//
// Layout notes (why the code looks the way it does):
//  - GGUF dims are ggml `ne` order, innermost first: an HF [out, in] matrix is ne = [in, out] with
//    the very same bytes.
//  - Qwen2/Qwen3 use the rotate-half ("NEOX") rope in both HF and llama.cpp, so q/k need no
//    permutation; the `llama` architecture in llama.cpp expects the interleaved rope order, so HF
//    Llama q/k rows are permuted the way llama.cpp's converter does.
//  - The tokenizer (gpt2-style BPE: tokens, types, merges) comes from the folder's tokenizer.json;
//    ids past the tokenizer's size (vocab padding) become `[PAD<id>]` tokens of type UNUSED.
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';

export type GgufWeightType = 'f32' | 'q4_0';

const GGML_TYPE = { f32: 0, q4_0: 2 } as const;
const GGUF_ALIGNMENT = 32;
// Metadata value types.
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const;

type MetaValue =
  | { t: 'u32' | 'i32' | 'f32' | 'u64'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'string'; v: string }
  | { t: 'strings'; v: string[] }
  | { t: 'i32s'; v: Int32Array };

/** Growable little-endian byte buffer for the header part. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private need(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.need(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.need(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number): void {
    this.need(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number): void {
    this.need(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  u8(v: number): void {
    this.need(1);
    this.buf[this.length++] = v;
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.need(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(align: number): void {
    while (this.length % align) this.u8(0);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeMeta(out: Bytes, key: string, m: MetaValue): void {
  out.str(key);
  switch (m.t) {
    case 'u32':
      out.u32(T.u32);
      out.u32(m.v);
      break;
    case 'i32':
      out.u32(T.i32);
      out.i32(m.v);
      break;
    case 'u64':
      out.u32(T.u64);
      out.u64(m.v);
      break;
    case 'f32':
      out.u32(T.f32);
      out.f32(m.v);
      break;
    case 'bool':
      out.u32(T.bool);
      out.u8(m.v ? 1 : 0);
      break;
    case 'string':
      out.u32(T.string);
      out.str(m.v);
      break;
    case 'strings':
      out.u32(T.array);
      out.u32(T.string);
      out.u64(m.v.length);
      for (const s of m.v) out.str(s);
      break;
    case 'i32s':
      out.u32(T.array);
      out.u32(T.i32);
      out.u64(m.v.length);
      for (const x of m.v) out.i32(x);
      break;
  }
}

// ---- float16 (Q4_0 block scales) ----

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE binary16 bits of `x`, round to nearest even (what ggml's FP32→FP16 does). */
export function toHalfBits(x: number): number {
  f32buf[0] = x;
  const f = u32buf[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  let mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

export function fromHalfBits(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// ---- Q4_0: blocks of 32 values = f16 scale d + 16 bytes of 4-bit codes ----
// Value j of a block is (q_j - 8) * d; byte i holds q_i in its low nibble and q_{i+16} in its high
// nibble. d = m / -8 where m is the value of largest magnitude (sign kept), so m itself maps to 0.

export const Q4_0_BLOCK = 32;
export const Q4_0_BYTES = 18;

/** Quantizes `x` (length a multiple of 32) into Q4_0 blocks. */
export function quantizeQ4_0(x: Float32Array): Buffer {
  if (x.length % Q4_0_BLOCK) throw new Error('Q4_0 needs rows that are a multiple of 32 values');
  const nb = x.length / Q4_0_BLOCK;
  const out = Buffer.alloc(nb * Q4_0_BYTES);
  for (let b = 0; b < nb; b++) {
    const o = b * Q4_0_BLOCK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < Q4_0_BLOCK; j++) {
      const v = x[o + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d ? 1 / d : 0;
    const p = b * Q4_0_BYTES;
    out.writeUInt16LE(toHalfBits(d), p);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(x[o + j] * id + 8.5));
      const q1 = Math.min(15, Math.trunc(x[o + j + 16] * id + 8.5));
      out[p + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** Inverse of quantizeQ4_0 (for tests and sanity checks). */
export function dequantizeQ4_0(buf: Buffer, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let b = 0; b < n / Q4_0_BLOCK; b++) {
    const p = b * Q4_0_BYTES;
    const d = fromHalfBits(buf.readUInt16LE(p));
    for (let j = 0; j < 16; j++) {
      const byte = buf[p + 2 + j];
      out[b * 32 + j] = ((byte & 15) - 8) * d;
      out[b * 32 + j + 16] = ((byte >> 4) - 8) * d;
    }
  }
  return out;
}

// ---- safetensors input ----

interface StTensor {
  file: string;
  dtype: string;
  shape: number[];
  start: number; // absolute file offset
  bytes: number;
}

function readSafetensorsIndex(dir: string): Map<string, StTensor> {
  const files = existsSync(path.join(dir, 'model.safetensors.index.json'))
    ? [...new Set(Object.values((JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> }).weight_map))]
    : ['model.safetensors'];
  const out = new Map<string, StTensor>();
  for (const f of files) {
    const file = path.join(dir, f);
    const fd = openSync(file, 'r');
    try {
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const n = Number(lenBuf.readBigUInt64LE(0));
      const hdr = Buffer.alloc(n);
      readSync(fd, hdr, 0, n, 8);
      const json = JSON.parse(hdr.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      for (const [name, t] of Object.entries(json)) {
        if (name === '__metadata__') continue;
        out.set(name, { file, dtype: t.dtype, shape: t.shape, start: 8 + n + t.data_offsets[0], bytes: t.data_offsets[1] - t.data_offsets[0] });
      }
    } finally {
      closeSync(fd);
    }
  }
  return out;
}

function readF32(t: StTensor): Float32Array {
  if (t.dtype !== 'F32') throw new Error(`GGUF writer reads float32 checkpoints only (got ${t.dtype})`);
  const buf = Buffer.alloc(t.bytes);
  const fd = openSync(t.file, 'r');
  try {
    let done = 0;
    while (done < t.bytes) done += readSync(fd, buf, done, t.bytes - done, t.start + done);
  } finally {
    closeSync(fd);
  }
  return new Float32Array(buf.buffer, buf.byteOffset, t.bytes / 4);
}

/** llama.cpp's converter permutes HF Llama q/k rows back to the interleaved rope order. */
function permuteRope(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const out = new Float32Array(w.length);
  const hd = rows / heads;
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let k = 0; k < 2; k++) {
        const src = h * hd + k * half + i; // HF: [head][2][half]
        const dst = h * hd + i * 2 + k; // GGUF llama: [head][half][2]
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

interface HfConfig {
  model_type: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta?: number;
  vocab_size: number;
  tie_word_embeddings?: boolean;
  bos_token_id?: number;
  eos_token_id?: number | number[];
}

interface PlannedTensor {
  name: string;
  ne: number[];
  type: GgufWeightType;
  bytes: number;
  offset: number;
  data: () => Buffer;
}

function tokenizerMeta(dir: string, vocabSize: number): [string, MetaValue][] {
  const tok = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
    added_tokens?: { id: number; content: string; special: boolean }[];
  };
  if (tok.model.type !== 'BPE') throw new Error('GGUF writer: only BPE tokenizers');
  const tokens: string[] = new Array(vocabSize).fill('');
  const types = new Int32Array(vocabSize).fill(5); // UNUSED
  for (const [s, id] of Object.entries(tok.model.vocab)) {
    if (id < vocabSize) {
      tokens[id] = s;
      types[id] = 1; // NORMAL
    }
  }
  for (const a of tok.added_tokens ?? []) {
    if (a.id >= vocabSize) continue;
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4; // CONTROL : USER_DEFINED
  }
  for (let i = 0; i < vocabSize; i++) if (types[i] === 5) tokens[i] = `[PAD${i}]`;
  const merges = tok.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  return [
    ['tokenizer.ggml.model', { t: 'string', v: 'gpt2' }],
    ['tokenizer.ggml.pre', { t: 'string', v: 'qwen2' }],
    ['tokenizer.ggml.tokens', { t: 'strings', v: tokens }],
    ['tokenizer.ggml.token_type', { t: 'i32s', v: types }],
    ['tokenizer.ggml.merges', { t: 'strings', v: merges }],
  ];
}

/**
 * Writes `<dir>` (a float32 HF checkpoint of a Llama/Qwen2/Qwen3 model) as GGUF at `outFile`, with
 * every 2-D weight in `type` (norms stay f32). Returns the tensor count and file size.
 */
export function writeGgufFromCheckpoint(dir: string, outFile: string, type: GgufWeightType): { tensors: number; bytes: number } {
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as HfConfig;
  const arch = cfg.model_type;
  if (!['llama', 'qwen2', 'qwen3'].includes(arch)) throw new Error(`GGUF writer: unsupported model_type ${arch}`);
  const st = readSafetensorsIndex(dir);
  const heads = cfg.num_attention_heads;
  const kvHeads = cfg.num_key_value_heads ?? heads;
  const headDim = cfg.head_dim ?? cfg.hidden_size / heads;
  const get = (n: string): StTensor => {
    const t = st.get(n);
    if (!t) throw new Error(`GGUF writer: checkpoint has no ${n}`);
    return t;
  };

  const planned: PlannedTensor[] = [];
  const add = (name: string, src: string, opts: { quantize: boolean; permuteHeads?: number }): void => {
    const t = get(src);
    const ne = [...t.shape].reverse();
    const n = t.shape.reduce((a, b) => a * b, 1);
    const ty: GgufWeightType = opts.quantize && type === 'q4_0' && t.shape.length === 2 && ne[0] % Q4_0_BLOCK === 0 ? 'q4_0' : 'f32';
    const bytes = ty === 'q4_0' ? (n / Q4_0_BLOCK) * Q4_0_BYTES : n * 4;
    planned.push({
      name,
      ne,
      type: ty,
      bytes,
      offset: 0,
      data: () => {
        let w = readF32(t);
        if (opts.permuteHeads) w = permuteRope(w, t.shape[0], t.shape[1], opts.permuteHeads);
        return ty === 'q4_0' ? quantizeQ4_0(w) : Buffer.from(w.buffer, w.byteOffset, w.byteLength);
      },
    });
  };
  const permute = arch === 'llama';
  add('token_embd.weight', 'model.embed_tokens.weight', { quantize: true });
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    const b = `blk.${i}.`;
    add(`${b}attn_norm.weight`, `${p}input_layernorm.weight`, { quantize: false });
    add(`${b}attn_q.weight`, `${p}self_attn.q_proj.weight`, { quantize: true, ...(permute ? { permuteHeads: heads } : {}) });
    add(`${b}attn_k.weight`, `${p}self_attn.k_proj.weight`, { quantize: true, ...(permute ? { permuteHeads: kvHeads } : {}) });
    add(`${b}attn_v.weight`, `${p}self_attn.v_proj.weight`, { quantize: true });
    add(`${b}attn_output.weight`, `${p}self_attn.o_proj.weight`, { quantize: true });
    if (arch === 'qwen2') {
      for (const x of ['q', 'k', 'v']) add(`${b}attn_${x}.bias`, `${p}self_attn.${x}_proj.bias`, { quantize: false });
    }
    if (arch === 'qwen3') {
      add(`${b}attn_q_norm.weight`, `${p}self_attn.q_norm.weight`, { quantize: false });
      add(`${b}attn_k_norm.weight`, `${p}self_attn.k_norm.weight`, { quantize: false });
    }
    add(`${b}ffn_norm.weight`, `${p}post_attention_layernorm.weight`, { quantize: false });
    add(`${b}ffn_gate.weight`, `${p}mlp.gate_proj.weight`, { quantize: true });
    add(`${b}ffn_up.weight`, `${p}mlp.up_proj.weight`, { quantize: true });
    add(`${b}ffn_down.weight`, `${p}mlp.down_proj.weight`, { quantize: true });
  }
  add('output_norm.weight', 'model.norm.weight', { quantize: false });
  if (!cfg.tie_word_embeddings && st.has('lm_head.weight')) add('output.weight', 'lm_head.weight', { quantize: true });

  const eos = Array.isArray(cfg.eos_token_id) ? cfg.eos_token_id[0] : cfg.eos_token_id;
  const meta: [string, MetaValue][] = [
    ['general.architecture', { t: 'string', v: arch }],
    ['general.name', { t: 'string', v: path.basename(dir) }],
    ['general.alignment', { t: 'u32', v: GGUF_ALIGNMENT }],
    ['general.file_type', { t: 'u32', v: type === 'q4_0' ? 2 : 0 }],
    ['general.quantization_version', { t: 'u32', v: 2 }],
    [`${arch}.block_count`, { t: 'u32', v: cfg.num_hidden_layers }],
    [`${arch}.context_length`, { t: 'u32', v: cfg.max_position_embeddings }],
    [`${arch}.embedding_length`, { t: 'u32', v: cfg.hidden_size }],
    [`${arch}.feed_forward_length`, { t: 'u32', v: cfg.intermediate_size }],
    [`${arch}.attention.head_count`, { t: 'u32', v: heads }],
    [`${arch}.attention.head_count_kv`, { t: 'u32', v: kvHeads }],
    [`${arch}.attention.key_length`, { t: 'u32', v: headDim }],
    [`${arch}.attention.value_length`, { t: 'u32', v: headDim }],
    [`${arch}.rope.dimension_count`, { t: 'u32', v: headDim }],
    [`${arch}.rope.freq_base`, { t: 'f32', v: cfg.rope_theta ?? 10000 }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { t: 'f32', v: cfg.rms_norm_eps }],
    [`${arch}.vocab_size`, { t: 'u32', v: cfg.vocab_size }],
    ...tokenizerMeta(dir, cfg.vocab_size),
    ...(cfg.bos_token_id !== undefined && cfg.bos_token_id < cfg.vocab_size ? ([['tokenizer.ggml.bos_token_id', { t: 'u32', v: cfg.bos_token_id }]] as [string, MetaValue][]) : []),
    ...(eos !== undefined && eos < cfg.vocab_size ? ([['tokenizer.ggml.eos_token_id', { t: 'u32', v: eos }]] as [string, MetaValue][]) : []),
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: false }],
  ];

  const head = new Bytes();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(planned.length);
  head.u64(meta.length);
  for (const [k, v] of meta) writeMeta(head, k, v);
  let off = 0;
  for (const p of planned) {
    p.offset = off;
    off += p.bytes;
    off = Math.ceil(off / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  for (const p of planned) {
    head.str(p.name);
    head.u32(p.ne.length);
    for (const d of p.ne) head.u64(d);
    head.u32(GGML_TYPE[p.type]);
    head.u64(p.offset);
  }
  head.pad(GGUF_ALIGNMENT);
  const fd = openSync(outFile, 'w');
  let pos = 0;
  try {
    const w = (b: Buffer): void => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
      pos += b.length;
    };
    w(head.bytes());
    const dataStart = pos;
    for (const p of planned) {
      const want = dataStart + p.offset;
      if (pos < want) w(Buffer.alloc(want - pos));
      const d = p.data();
      if (d.length !== p.bytes) throw new Error(`GGUF writer: ${p.name} has ${d.length} bytes, expected ${p.bytes}`);
      w(d);
    }
  } finally {
    closeSync(fd);
  }
  return { tensors: planned.length, bytes: pos };
}
