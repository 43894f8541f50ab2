// An INDEPENDENT reference forward pass for the engine tests: plain JavaScript, float64
// accumulation, loops only. It reads the checkpoint with its own safetensors parser (f32, bf16,
// f16, packed uint32 quantized weights with low bits first) and follows Hugging Face semantics
// (rotate-half rope, repeat_kv GQA, SwiGLU, RMSNorm), sharing no code with main/engine/model.
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

function denseMatrix(t: RawTensor): Matrix {
  const [rows, cols] = t.shape;
  const data = toF64(t);
  return { rows, cols, data, row: (i, out) => out.set(data.subarray(i * cols, (i + 1) * cols)) };
}

function quantMatrix(w: RawTensor, scales: RawTensor, biases: RawTensor, bits: number, groupSize: number): Matrix {
  if (w.dtype !== 'U32') throw new Error('quantized weight must be U32');
  const rows = w.shape[0];
  const perWord = 32 / bits;
  const cols = w.shape[1] * perWord;
  const s = toF64(scales);
  const b = toF64(biases);
  const words = new Uint32Array(w.bytes.buffer.slice(w.bytes.byteOffset, w.bytes.byteOffset + w.bytes.byteLength));
  const groups = cols / groupSize;
  const mask = (1 << bits) - 1;
  return {
    rows,
    cols,
    row(i, out) {
      const wpr = w.shape[1];
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

  constructor(dir: string) {
    this.cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    this.quant = this.cfg.quantization ?? null;
    this.t = loadAll(dir);
  }

  private mat(stem: string): Matrix {
    let m = this.cacheM.get(stem);
    if (!m) {
      const w = this.t.get(`${stem}.weight`);
      if (!w) throw new Error(`reference: missing ${stem}.weight`);
      const sc = this.t.get(`${stem}.scales`);
      m = sc ? quantMatrix(w, sc, this.t.get(`${stem}.biases`)!, this.quant!.bits, this.quant!.group_size) : denseMatrix(w);
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

  private rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
    const r = 1 / Math.sqrt(ss / x.length + eps);
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * r * w[i];
    return out;
  }

  private invFreq(headDim: number, opts: ReferenceOptions): Float64Array {
    const theta = this.cfg.rope_theta ?? 10000;
    const half = headDim / 2;
    const inv = new Float64Array(half);
    for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
    const rs = this.cfg.rope_scaling;
    if (rs && !opts.ignoreRopeScaling) {
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
      } else throw new Error(`reference: rope type ${type}`);
    }
    return inv;
  }

  /** Rotate-half rope in place on one head vector at absolute position pos. */
  private rope(v: Float64Array, off: number, headDim: number, pos: number, inv: Float64Array) {
    const half = headDim / 2;
    for (let i = 0; i < half; i++) {
      const a = pos * inv[i];
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x1 = v[off + i];
      const x2 = v[off + half + i];
      v[off + i] = x1 * c - x2 * s;
      v[off + half + i] = x2 * c + x1 * s;
    }
  }

  /**
   * Full causal forward over `tokens` (no cache). Returns float64 logits for the positions in
   * `positions` (default: all).
   */
  logits(tokens: number[], positions?: number[], opts: ReferenceOptions = {}): Float64Array[] {
    const c = this.cfg;
    const H = c.hidden_size;
    const nH = c.num_attention_heads;
    const nKv = c.num_key_value_heads ?? nH;
    const hd = c.head_dim ?? H / nH;
    const eps = c.rms_norm_eps;
    const L = tokens.length;
    const inv = this.invFreq(hd, opts);
    const shift = opts.ropePositionShift ?? 0;

    const emb = this.mat('model.embed_tokens');
    let xs = tokens.map((t) => {
      const r = new Float64Array(H);
      emb.row(t, r);
      return r;
    });
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      const h = xs.map((x) => this.rmsNorm(x, this.vec(`${p}.input_layernorm.weight`), eps));
      const q = this.linear(`${p}.self_attn.q_proj`, h);
      const k = this.linear(`${p}.self_attn.k_proj`, h);
      const v = this.linear(`${p}.self_attn.v_proj`, h);
      const qNorm = this.has(`${p}.self_attn.q_norm.weight`) ? this.vec(`${p}.self_attn.q_norm.weight`) : null;
      const kNorm = this.has(`${p}.self_attn.k_norm.weight`) ? this.vec(`${p}.self_attn.k_norm.weight`) : null;
      for (let t = 0; t < L; t++) {
        for (let hh = 0; hh < nH; hh++) {
          if (qNorm) q[t].set(this.rmsNorm(q[t].subarray(hh * hd, (hh + 1) * hd), qNorm, eps), hh * hd);
          this.rope(q[t], hh * hd, hd, t === L - 1 ? t + shift : t, inv);
        }
        for (let hh = 0; hh < nKv; hh++) {
          if (kNorm) k[t].set(this.rmsNorm(k[t].subarray(hh * hd, (hh + 1) * hd), kNorm, eps), hh * hd);
          this.rope(k[t], hh * hd, hd, t === L - 1 ? t + shift : t, inv);
        }
      }
      const attnOut = xs.map(() => new Float64Array(nH * hd));
      const scale = 1 / Math.sqrt(hd);
      const rep = nH / nKv;
      for (let t = 0; t < L; t++) {
        for (let hh = 0; hh < nH; hh++) {
          const kvh = Math.floor(hh / rep);
          const scores = new Float64Array(t + 1);
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            let d = 0;
            for (let i = 0; i < hd; i++) d += q[t][hh * hd + i] * k[s][kvh * hd + i];
            scores[s] = d * scale;
            if (scores[s] > max) max = scores[s];
          }
          let sum = 0;
          for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s] - max);
          for (let s = 0; s <= t; s++) {
            const w = scores[s] / sum;
            for (let i = 0; i < hd; i++) attnOut[t][hh * hd + i] += w * v[s][kvh * hd + i];
          }
        }
      }
      const o = this.linear(`${p}.self_attn.o_proj`, attnOut);
      xs = xs.map((x, t) => x.map((val, i) => val + o[t][i]));
      const h2 = xs.map((x) => this.rmsNorm(x, this.vec(`${p}.post_attention_layernorm.weight`), eps));
      const g = this.linear(`${p}.mlp.gate_proj`, h2);
      const u = this.linear(`${p}.mlp.up_proj`, h2);
      const act = g.map((gv, t) => gv.map((a, i) => (a / (1 + Math.exp(-a))) * u[t][i]));
      const d = this.linear(`${p}.mlp.down_proj`, act);
      xs = xs.map((x, t) => x.map((val, i) => val + d[t][i]));
    }
    const sel = positions ?? tokens.map((_, i) => i);
    const finals = sel.map((pos) => this.rmsNorm(xs[pos], this.vec('model.norm.weight'), eps));
    const head = this.has('lm_head.weight') && !c.tie_word_embeddings ? 'lm_head' : 'model.embed_tokens';
    return this.linear(head, finals);
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
