// An INDEPENDENT reference forward pass for the engine tests: plain JavaScript, float64
// accumulation, loops only. It reads the checkpoint with its own safetensors parser (f32, bf16,
// f16, packed uint32 quantized weights with low bits first) and follows Hugging Face semantics
// (rotate-half rope, repeat_kv GQA, SwiGLU, RMSNorm), sharing no code with main/engine/model.
// Families, written from the published Hugging Face modeling code:
//  - qwen3_moe (Qwen3MoeSparseMoeBlock): softmax router → top-k → renormalise if norm_topk_prob;
//  - gemma3 / gemma3_text (Gemma3DecoderLayer): (1 + w) RMSNorm, embed × bf16(sqrt(H)), GeGLU
//    (tanh GELU), sandwich norms, query_pre_attn_scalar, sliding layers with the local rope base;
//  - phi3 (Phi3Attention/Phi3MLP): fused qkv_proj / gate_up_proj, partial rotary, longrope;
//  - rope_scaling linear, llama3, yarn, dynamic (HF `_compute_*_parameters`), sliding windows
//    (key s visible to query t iff t - window < s <= t).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

type Dtype = 'F32' | 'BF16' | 'F16' | 'U32';
interface RawTensor {
  dtype: Dtype;
  shape: number[];
  bytes: Buffer;
}

function parseSafetensors(file: string): Map<string, RawTensor> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes: buf.subarray(8 + n + a, 8 + n + b) });
  }
  return out;
}

function loadAll(dir: string): Map<string, RawTensor> {
  const idx = path.join(dir, 'model.safetensors.index.json');
  const files = existsSync(idx)
    ? [...new Set(Object.values<string>(JSON.parse(readFileSync(idx, 'utf8')).weight_map))]
    : ['model.safetensors'];
  const all = new Map<string, RawTensor>();
  for (const f of files) for (const [k, v] of parseSafetensors(path.join(dir, f))) all.set(k, v);
  return all;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);
function bf16ToFloat(h: number): number {
  u32view[0] = h << 16;
  return f32view[0];
}

/** Bits of the nearest bfloat16 (round to nearest even). */
function bf16Bits(x: number): number {
  f32view[0] = x;
  const u = u32view[0];
  return ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
}

/** Decodes a float tensor to float64. */
function toF64(t: RawTensor): Float64Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (t.dtype === 'F32') out[i] = t.bytes.readFloatLE(i * 4);
    else if (t.dtype === 'BF16') out[i] = bf16ToFloat(t.bytes.readUInt16LE(i * 2));
    else if (t.dtype === 'F16') out[i] = halfToFloat(t.bytes.readUInt16LE(i * 2));
    else throw new Error(`not a float tensor: ${t.dtype}`);
  }
  return out;
}

/** A [rows, cols] matrix that can produce float64 rows (dense or quantized). */
interface Matrix {
  rows: number;
  cols: number;
  row(i: number, out: Float64Array): void;
  /** Dense backing store (row-major), when available, to skip row copies. */
  data?: Float64Array;
}

// Stacked tensors ([experts, out, in]) are read as [experts * out, in].
function denseMatrix(t: RawTensor): Matrix {
  const cols = t.shape[t.shape.length - 1];
  const rows = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const data = toF64(t);
  return { rows, cols, data, row: (i, out) => out.set(data.subarray(i * cols, (i + 1) * cols)) };
}

function quantMatrix(w: RawTensor, scales: RawTensor, biases: RawTensor, bits: number, groupSize: number): Matrix {
  if (w.dtype !== 'U32') throw new Error('quantized weight must be U32');
  const wpr = w.shape[w.shape.length - 1];
  const rows = w.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const perWord = 32 / bits;
  const cols = wpr * perWord;
  const s = toF64(scales);
  const b = toF64(biases);
  const words = new Uint32Array(w.bytes.buffer.slice(w.bytes.byteOffset, w.bytes.byteOffset + w.bytes.byteLength));
  const groups = cols / groupSize;
  const mask = (1 << bits) - 1;
  return {
    rows,
    cols,
    row(i, out) {
      let j = 0;
      for (let wi = 0; wi < wpr; wi++) {
        const word = words[i * wpr + wi];
        for (let k = 0; k < perWord; k++, j++) {
          const g = i * groups + ((j / groupSize) | 0);
          out[j] = s[g] * ((word >>> (bits * k)) & mask) + b[g]; // low bits first
        }
      }
    },
  };
}

export interface ReferenceOptions {
  /** Negative control (MoE): top-k router weights without renormalisation. */
  topkNoRenorm?: boolean;
  /** Negative control (Gemma): RMSNorm as x * w instead of x * (1 + w). */
  normWithoutPlusOne?: boolean;
  /** Negative control: full attention on sliding-window layers. */
  windowOff?: boolean;
  /** Negative control (Phi-3): the fused qkv_proj split in another order. */
  qkvSplitOrder?: 'qkv' | 'kqv' | 'qvk';
  /**
   * Dynamic NTK rope: the sequence length at which each position was computed (HF cached
   * generation recomputes the base per forward call). Default: all positions at tokens.length.
   */
  processedAt?: number[];
  /**
   * Negative control: rotate the LAST token's q/k as if it sat this many positions later (a
   * wrong cache offset). A shift of every position would be invisible: rope is relative.
   */
  ropePositionShift?: number;
  /** Negative control: ignore rope_scaling. */
  ignoreRopeScaling?: boolean;
}

export class ReferenceModel {
  private cfg: any;
  private t: Map<string, RawTensor>;
  private quant: { bits: number; group_size: number } | null;
  private cacheM = new Map<string, Matrix>();
  private cacheV = new Map<string, Float64Array>();
  /** Gemma 3 text model (gemma3_text, or the text side of a gemma3 multimodal checkpoint). */
  private gemma: boolean;
  /** Tensor prefix of the text model ('language_model.' in a multimodal checkpoint). */
  private prefix = '';

  constructor(dir: string) {
    const raw = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    this.quant = raw.quantization ?? null;
    this.cfg = raw;
    if (raw.model_type === 'gemma3') {
      // Gemma3ForConditionalGeneration: the language model reads text_config (outer vocab wins).
      this.cfg = { ...raw.text_config, vocab_size: raw.vocab_size ?? raw.text_config.vocab_size };
      this.prefix = 'language_model.';
    }
    this.gemma = this.cfg.model_type === 'gemma3_text';
    this.t = loadAll(dir);
  }

  private mat(stem: string): Matrix {
    let m = this.cacheM.get(stem);
    if (!m) {
      const w = this.t.get(`${stem}.weight`);
      if (!w) throw new Error(`reference: missing ${stem}.weight`);
      const sc = this.t.get(`${stem}.scales`);
      // mlx-lm writes per-module overrides (e.g. an 8-bit MoE router) into "quantization".
      const q = (this.quant as any)?.[stem] ?? this.quant;
      m = sc ? quantMatrix(w, sc, this.t.get(`${stem}.biases`)!, q.bits, q.group_size) : denseMatrix(w);
      this.cacheM.set(stem, m);
    }
    return m;
  }

  private vec(name: string): Float64Array {
    let v = this.cacheV.get(name);
    if (!v) {
      const t = this.t.get(name);
      if (!t) throw new Error(`reference: missing ${name}`);
      v = toF64(t);
      this.cacheV.set(name, v);
    }
    return v;
  }

  private has(name: string): boolean {
    return this.t.has(name);
  }

  /** y[p] = W x[p] (+ bias) for every position p. */
  private linear(stem: string, xs: Float64Array[]): Float64Array[] {
    const m = this.mat(stem);
    const bias = this.has(`${stem}.bias`) ? this.vec(`${stem}.bias`) : null;
    const ys = xs.map(() => new Float64Array(m.rows));
    const row = new Float64Array(m.cols);
    const cols = m.cols;
    for (let i = 0; i < m.rows; i++) {
      let base = 0;
      let src: Float64Array = row;
      if (m.data) {
        src = m.data;
        base = i * cols;
      } else m.row(i, row);
      for (let p = 0; p < xs.length; p++) {
        const x = xs[p];
        let acc = 0;
        for (let j = 0; j < cols; j++) acc += src[base + j] * x[j];
        ys[p][i] = acc + (bias ? bias[i] : 0);
      }
    }
    return ys;
  }

  private rmsNorm(x: Float64Array, w: Float64Array, eps: number, plusOne = false): Float64Array {
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
    const r = 1 / Math.sqrt(ss / x.length + eps);
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * r * (plusOne ? 1 + w[i] : w[i]);
    return out;
  }

  /** Inverse frequencies of a rope over `dim` rotated dims (HF `_compute_*_parameters`). */
  private invFreq(dim: number, base: number, rs: any, opts: ReferenceOptions, seqLen: number): { inv: Float64Array; attn: number } {
    const half = dim / 2;
    const inv = new Float64Array(half);
    for (let i = 0; i < half; i++) inv[i] = 1 / base ** ((2 * i) / dim);
    let attn = 1;
    if (!rs || opts.ignoreRopeScaling) return { inv, attn };
    const type = rs.rope_type ?? rs.type;
    if (type === 'llama3') {
      const old = rs.original_max_position_embeddings;
      const lowW = old / rs.low_freq_factor;
      const highW = old / rs.high_freq_factor;
      for (let i = 0; i < half; i++) {
        const wl = (2 * Math.PI) / inv[i];
        if (wl > lowW) inv[i] = inv[i] / rs.factor;
        else if (wl >= highW) {
          const smooth = (old / wl - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
          inv[i] = (1 - smooth) * (inv[i] / rs.factor) + smooth * inv[i];
        }
      }
    } else if (type === 'linear') {
      for (let i = 0; i < half; i++) inv[i] /= rs.factor;
    } else if (type === 'yarn') {
      const f = rs.factor;
      const orig = rs.original_max_position_embeddings ?? this.cfg.max_position_embeddings;
      const corr = (rot: number) => (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(base));
      const low = Math.max(Math.floor(corr(rs.beta_fast ?? 32)), 0);
      let high = Math.min(Math.ceil(corr(rs.beta_slow ?? 1)), dim - 1);
      if (low === high) high += 0.001;
      for (let i = 0; i < half; i++) {
        const extrapolation = 1 / base ** ((2 * i) / dim);
        const interpolation = extrapolation / f;
        const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
        const extrapolationFactor = 1 - ramp;
        inv[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
      }
      const getMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      attn = rs.attention_factor ?? (rs.mscale && rs.mscale_all_dim ? getMscale(f, rs.mscale) / getMscale(f, rs.mscale_all_dim) : getMscale(f));
    } else if (type === 'dynamic') {
      const maxPos = this.cfg.max_position_embeddings;
      const len = Math.max(seqLen, maxPos);
      const newBase = base * ((rs.factor * len) / maxPos - (rs.factor - 1)) ** (dim / (dim - 2));
      for (let i = 0; i < half; i++) inv[i] = 1 / newBase ** ((2 * i) / dim);
    } else if (type === 'longrope' || type === 'su') {
      const orig = this.cfg.original_max_position_embeddings;
      const maxPos = this.cfg.max_position_embeddings;
      // HF picks long factors when the sequence exceeds the original context; the sequence length
      // this reference assumes is the context the model is served at (max_position_embeddings).
      const ext = maxPos > orig ? rs.long_factor : rs.short_factor;
      for (let i = 0; i < half; i++) inv[i] = 1 / (ext[i] * base ** ((2 * i) / dim));
      const factor = maxPos / orig;
      attn = rs.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig)));
    } else throw new Error(`reference: rope type ${type}`);
    return { inv, attn };
  }

  /** Rotate-half rope in place on the first `dim` dims of one head vector at position pos. */
  private rope(v: Float64Array, off: number, dim: number, pos: number, inv: Float64Array, attn: number) {
    const half = dim / 2;
    for (let i = 0; i < half; i++) {
      const a = pos * inv[i];
      const c = Math.cos(a) * attn;
      const s = Math.sin(a) * attn;
      const x1 = v[off + i];
      const x2 = v[off + half + i];
      v[off + i] = x1 * c - x2 * s;
      v[off + half + i] = x2 * c + x1 * s;
    }
  }

  /** rows [rowOff, rowOff + n) of matrix `stem` times each x (an expert's slice of a stacked tensor). */
  private linearRows(stem: string, rowOff: number, n: number, x: Float64Array): Float64Array {
    const m = this.mat(stem);
    const y = new Float64Array(n);
    const row = new Float64Array(m.cols);
    for (let i = 0; i < n; i++) {
      m.row(rowOff + i, row);
      let acc = 0;
      for (let j = 0; j < m.cols; j++) acc += row[j] * x[j];
      y[i] = acc;
    }
    return y;
  }

  private act(a: number): number {
    if (this.gemma) return 0.5 * a * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (a + 0.044715 * a ** 3)));
    return a / (1 + Math.exp(-a));
  }

  /** Full causal forward over `tokens` (no cache). Float64 logits for `positions` (default: all). */
  logits(tokens: number[], positions?: number[], opts: ReferenceOptions = {}): Float64Array[] {
    const c = this.cfg;
    const P = this.prefix;
    const gemma = this.gemma;
    const H = c.hidden_size;
    const nH = c.num_attention_heads;
    const nKv = c.num_key_value_heads ?? nH;
    const hd = c.head_dim ?? H / nH;
    const rotDim = Math.floor((hd * (c.partial_rotary_factor ?? 1)) / 2) * 2;
    const eps = c.rms_norm_eps;
    const L = tokens.length;
    const shift = opts.ropePositionShift ?? 0;
    const plusOne = gemma && !opts.normWithoutPlusOne;
    const norm = (x: Float64Array, name: string) => this.rmsNorm(x, this.vec(name), eps, plusOne);
    const procAt = opts.processedAt ?? tokens.map(() => L);
    const nLayers = c.num_hidden_layers;

    // Per-layer attention type (sliding window or full) and rope.
    const windows: (number | null)[] = [];
    for (let l = 0; l < nLayers; l++) {
      let sliding = false;
      if (Array.isArray(c.layer_types)) sliding = c.layer_types[l] === 'sliding_attention';
      else if (gemma) sliding = (l + 1) % c.sliding_window_pattern !== 0;
      else if (c.model_type === 'mistral' || c.model_type === 'phi3') sliding = typeof c.sliding_window === 'number' && c.sliding_window < c.max_position_embeddings;
      else if (c.use_sliding_window) sliding = l >= (c.max_window_layers ?? 0);
      windows.push(sliding && !opts.windowOff ? c.sliding_window : null);
    }
    const ropeOf = (l: number, seqLen: number) => {
      const local = gemma && (Array.isArray(c.layer_types) ? c.layer_types[l] === 'sliding_attention' : (l + 1) % c.sliding_window_pattern !== 0);
      return local
        ? this.invFreq(rotDim, c.rope_local_base_freq, null, opts, seqLen)
        : this.invFreq(rotDim, c.rope_theta ?? 10000, c.rope_scaling, opts, seqLen);
    };

    const emb = this.mat(`${P}model.embed_tokens`);
    // Gemma: embeddings × sqrt(hidden) in the checkpoint's dtype (bfloat16 in every release).
    const embScale = gemma ? bf16ToFloat(bf16Bits(Math.sqrt(H))) : 1;
    let xs = tokens.map((t) => {
      const r = new Float64Array(H);
      emb.row(t, r);
      for (let i = 0; i < H; i++) r[i] *= embScale;
      return r;
    });
    const qDim = nH * hd;
    const kvDim = nKv * hd;
    for (let l = 0; l < nLayers; l++) {
      const p = `${P}model.layers.${l}`;
      const h = xs.map((x) => norm(x, `${p}.input_layernorm.weight`));
      let q: Float64Array[], k: Float64Array[], v: Float64Array[];
      if (c.model_type === 'phi3') {
        const qkv = this.linear(`${p}.self_attn.qkv_proj`, h);
        const order = opts.qkvSplitOrder ?? 'qkv';
        const sizes: Record<string, number> = { q: qDim, k: kvDim, v: kvDim };
        const parts: Record<string, Float64Array[]> = {};
        let off = 0;
        for (const name of order) {
          const o = off;
          parts[name] = qkv.map((r) => r.slice(o, o + sizes[name]));
          off += sizes[name];
        }
        ({ q, k, v } = parts as { q: Float64Array[]; k: Float64Array[]; v: Float64Array[] });
      } else {
        q = this.linear(`${p}.self_attn.q_proj`, h);
        k = this.linear(`${p}.self_attn.k_proj`, h);
        v = this.linear(`${p}.self_attn.v_proj`, h);
      }
      const qNorm = this.has(`${p}.self_attn.q_norm.weight`) ? this.vec(`${p}.self_attn.q_norm.weight`) : null;
      const kNorm = this.has(`${p}.self_attn.k_norm.weight`) ? this.vec(`${p}.self_attn.k_norm.weight`) : null;
      for (let t = 0; t < L; t++) {
        const { inv, attn } = ropeOf(l, procAt[t]);
        const pos = t === L - 1 ? t + shift : t;
        for (let hh = 0; hh < nH; hh++) {
          if (qNorm) q[t].set(this.rmsNorm(q[t].subarray(hh * hd, (hh + 1) * hd), qNorm, eps, plusOne), hh * hd);
          this.rope(q[t], hh * hd, rotDim, pos, inv, attn);
        }
        for (let hh = 0; hh < nKv; hh++) {
          if (kNorm) k[t].set(this.rmsNorm(k[t].subarray(hh * hd, (hh + 1) * hd), kNorm, eps, plusOne), hh * hd);
          this.rope(k[t], hh * hd, rotDim, pos, inv, attn);
        }
      }
      const attnOut = xs.map(() => new Float64Array(nH * hd));
      const scale = gemma ? 1 / Math.sqrt(c.query_pre_attn_scalar) : 1 / Math.sqrt(hd);
      const rep = nH / nKv;
      const win = windows[l];
      for (let t = 0; t < L; t++) {
        const first = win === null ? 0 : Math.max(0, t - win + 1);
        for (let hh = 0; hh < nH; hh++) {
          const kvh = Math.floor(hh / rep);
          const scores = new Float64Array(t + 1);
          let max = -Infinity;
          for (let s2 = first; s2 <= t; s2++) {
            let d = 0;
            for (let i = 0; i < hd; i++) d += q[t][hh * hd + i] * k[s2][kvh * hd + i];
            scores[s2] = d * scale;
            if (scores[s2] > max) max = scores[s2];
          }
          let sum = 0;
          for (let s2 = first; s2 <= t; s2++) sum += scores[s2] = Math.exp(scores[s2] - max);
          for (let s2 = first; s2 <= t; s2++) {
            const w = scores[s2] / sum;
            for (let i = 0; i < hd; i++) attnOut[t][hh * hd + i] += w * v[s2][kvh * hd + i];
          }
        }
      }
      let o = this.linear(`${p}.self_attn.o_proj`, attnOut);
      if (gemma) o = o.map((r) => norm(r, `${p}.post_attention_layernorm.weight`));
      xs = xs.map((x, t) => x.map((val, i) => val + o[t][i]));
      const h2 = xs.map((x) => norm(x, `${p}.${gemma ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`));
      let d: Float64Array[];
      if (this.has(`${p}.mlp.gate.weight`)) d = h2.map((x) => this.moe(`${p}.mlp`, x, opts));
      else if (c.model_type === 'phi3') {
        const I = c.intermediate_size;
        const gu = this.linear(`${p}.mlp.gate_up_proj`, h2);
        const act = gu.map((r) => {
          const a = new Float64Array(I);
          for (let i = 0; i < I; i++) a[i] = this.act(r[i]) * r[I + i];
          return a;
        });
        d = this.linear(`${p}.mlp.down_proj`, act);
      } else {
        const g = this.linear(`${p}.mlp.gate_proj`, h2);
        const u = this.linear(`${p}.mlp.up_proj`, h2);
        const act = g.map((gv, t) => gv.map((a, i) => this.act(a) * u[t][i]));
        d = this.linear(`${p}.mlp.down_proj`, act);
      }
      if (gemma) d = d.map((r) => norm(r, `${p}.post_feedforward_layernorm.weight`));
      xs = xs.map((x, t) => x.map((val, i) => val + d[t][i]));
    }
    const sel = positions ?? tokens.map((_, i) => i);
    const finals = sel.map((pos) => norm(xs[pos], `${P}model.norm.weight`));
    const head = this.has(`${P}lm_head.weight`) && !c.tie_word_embeddings ? `${P}lm_head` : `${P}model.embed_tokens`;
    return this.linear(head, finals);
  }

  /** Qwen3MoeSparseMoeBlock on one token: softmax router, top-k, optional renormalisation. */
  private moe(stem: string, x: Float64Array, opts: ReferenceOptions): Float64Array {
    const c = this.cfg;
    const E = c.num_experts;
    const I = c.moe_intermediate_size;
    const H = c.hidden_size;
    const logits = this.linearRows(`${stem}.gate`, 0, E, x);
    const max = Math.max(...logits);
    const ex = Array.from(logits, (z) => Math.exp(z - max));
    const sum = ex.reduce((a, b) => a + b, 0);
    const probs = ex.map((e) => e / sum);
    const top = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a]).slice(0, c.num_experts_per_tok);
    let weights = top.map((i) => probs[i]);
    if (c.norm_topk_prob && !opts.topkNoRenorm) {
      const s = weights.reduce((a, b) => a + b, 0);
      weights = weights.map((w) => w / s);
    }
    const out = new Float64Array(H);
    top.forEach((e, j) => {
      const stacked = this.has(`${stem}.switch_mlp.gate_proj.weight`);
      const m = (name: string, rows: number) =>
        stacked ? this.linearRows(`${stem}.switch_mlp.${name}`, e * rows, rows, x) : this.linearRows(`${stem}.experts.${e}.${name}`, 0, rows, x);
      const g = m('gate_proj', I);
      const u = m('up_proj', I);
      const a = g.map((gv, i) => this.act(gv) * u[i]);
      const dn = stacked ? this.linearRows(`${stem}.switch_mlp.down_proj`, e * H, H, a) : this.linearRows(`${stem}.experts.${e}.down_proj`, 0, H, a);
      for (let i = 0; i < H; i++) out[i] += weights[j] * dn[i];
    });
    return out;
  }

  /**
   * Greedy generation by full recomputation: `steps` tokens after `prompt`, with each step's logits
   * and the margin between its best and second-best logit. Dynamic-NTK positions are rotated at the
   * length they were computed at (prompt: its length; each new token: its own step), as a cached
   * Hugging Face generate does.
   */
  greedy(prompt: number[], steps: number, opts: ReferenceOptions = {}): { tokens: number[]; logits: Float64Array[]; margins: number[] } {
    const seq = prompt.slice();
    const processedAt = prompt.map(() => prompt.length);
    const tokens: number[] = [];
    const logits: Float64Array[] = [];
    const margins: number[] = [];
    for (let s = 0; s < steps; s++) {
      const [row] = this.logits(seq, [seq.length - 1], { ...opts, processedAt });
      let best = 0;
      for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
      let second = -Infinity;
      for (let i = 0; i < row.length; i++) if (i !== best && row[i] > second) second = row[i];
      tokens.push(best);
      logits.push(row);
      margins.push(row[best] - second);
      seq.push(best);
      processedAt.push(seq.length);
    }
    return { tokens, logits, margins };
  }
}

/** Max |a - b| over equal-length vectors. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
