// Reads only the header of a .safetensors file (8-byte little-endian length + JSON), bounded and
// validated against the real file size, to estimate parameter counts without loading weights.
// Model files are untrusted input (Ollama CVE-2026-7482 was an out-of-bounds read in a model
// loader), so every length and offset is checked before use.
import fs from 'node:fs';
import fsp from 'node:fs/promises';

export const MAX_HEADER_BYTES = 32 * 1024 * 1024;

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

export interface TensorHeader {
  dtype: string;
  shape: number[];
  /** Byte length of the data (validated against the file). */
  bytes: number;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Checks the 8-byte length prefix against the file size; returns the header's byte length. */
function headerLength(lenBuf: Buffer, bytesRead: number, size: number): number {
  if (size < 8 || bytesRead < 8) throw new SafetensorsError('file too small for a safetensors header');
  const n = lenBuf.readBigUInt64LE(0);
  if (n < 2n || n > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) throw new SafetensorsError('invalid header length');
  return Number(n);
}

/** Parses and validates the header JSON (every offset inside the file, sizes matching shapes). */
function parseHeader(buf: Buffer, size: number): Map<string, TensorHeader> {
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch {
    throw new SafetensorsError('header is not valid JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError('header is not an object');
  const dataLen = size - 8 - buf.length;
  const out = new Map<string, TensorHeader>();
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t?.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) {
      throw new SafetensorsError('malformed tensor entry');
    }
    const shape = t.shape as unknown[];
    if (shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError('malformed tensor shape');
    }
    const [b, e] = t.data_offsets as unknown[];
    if (!Number.isSafeInteger(b) || !Number.isSafeInteger(e) || (b as number) < 0 || (e as number) < (b as number) || (e as number) > dataLen) {
      throw new SafetensorsError('tensor data outside the file');
    }
    const bytes = (e as number) - (b as number);
    const per = DTYPE_BYTES[t.dtype];
    const numel = (shape as number[]).reduce((a, d) => a * d, 1);
    if (per !== undefined && numel * per !== bytes) throw new SafetensorsError('tensor size does not match its shape');
    out.set(name, { dtype: t.dtype, shape: shape as number[], bytes });
  }
  return out;
}

/** The validated header of a .safetensors file (the library and preflight: off the event loop's hot path). */
export async function readSafetensorsHeader(file: string): Promise<Map<string, TensorHeader>> {
  const fh = await fsp.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const lenBuf = Buffer.alloc(8);
    const { bytesRead: got } = size >= 8 ? await fh.read(lenBuf, 0, 8, 0) : { bytesRead: 0 };
    const len = headerLength(lenBuf, got, size);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, 8);
    if (bytesRead !== len) throw new SafetensorsError('truncated header');
    return parseHeader(buf, size);
  } finally {
    await fh.close();
  }
}

/** The same, synchronously (the engine process, before it loads a checkpoint). */
export function readSafetensorsHeaderSync(file: string): Map<string, TensorHeader> {
  const fd = fs.openSync(file, 'r');
  try {
    const { size } = fs.fstatSync(fd);
    const lenBuf = Buffer.alloc(8);
    const got = size >= 8 ? fs.readSync(fd, lenBuf, 0, 8, 0) : 0;
    const len = headerLength(lenBuf, got, size);
    const buf = Buffer.alloc(len);
    if (fs.readSync(fd, buf, 0, len, 8) !== len) throw new SafetensorsError('truncated header');
    return parseHeader(buf, size);
  } finally {
    fs.closeSync(fd);
  }
}

/** safetensors dtype name → the dtype names the rest of the app uses (float tensors only). */
export const FLOAT_DTYPE_NAMES: Readonly<Record<string, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export interface WeightStats {
  /** Logical parameter count (quantized weights counted unpacked; scales/biases excluded). */
  parameters: number;
  /** Most common floating dtype among stored tensors (F32/F16/BF16), or null. */
  floatDtype: string | null;
  /** Whether packed-quantized weights (`.scales` companions) were seen. */
  quantized: boolean;
  /** Logical parameters stored packed (part of `parameters`). */
  quantizedParameters: number;
  /** Bytes of the packed (uint32) quantized weights as stored. */
  packedBytes: number;
  /** Elements of their scales + biases (their bytes depend on the dtype they are held in). */
  scaleElements: number;
}

/**
 * Counts parameters over all tensors. An MLX-quantized linear stores `W` packed in uint32 plus
 * `scales`/`biases` per group: its logical size is rows × (groups × group_size).
 */
export function weightStats(tensors: Map<string, TensorHeader>, groupSize: number | null): WeightStats {
  let params = 0;
  let quantized = false;
  let quantizedParameters = 0;
  let packedBytes = 0;
  let scaleElements = 0;
  const floatCounts = new Map<string, number>();
  for (const [name, t] of tensors) {
    const numel = t.shape.reduce((a, d) => a * d, 1);
    if (t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16') {
      floatCounts.set(t.dtype, (floatCounts.get(t.dtype) ?? 0) + numel);
    }
    const prefix = name.replace(/\.(weight|scales|biases)$/, '');
    const scales = tensors.get(`${prefix}.scales`);
    if (scales && (name.endsWith('.scales') || name.endsWith('.biases'))) {
      scaleElements += numel;
      continue; // quantization metadata
    }
    if (scales && name.endsWith('.weight') && groupSize) {
      quantized = true;
      const groups = scales.shape.reduce((a, d) => a * d, 1);
      params += groups * groupSize;
      quantizedParameters += groups * groupSize;
      packedBytes += numel * 4;
      continue;
    }
    params += numel;
  }
  let floatDtype: string | null = null;
  let best = -1;
  for (const [d, c] of floatCounts) if (c > best) (best = c), (floatDtype = d);
  return { parameters: params, floatDtype, quantized, quantizedParameters, packedBytes, scaleElements };
}
