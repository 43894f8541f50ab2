// Preflight of the model folder: the model-folder inspector's findings (main/engine/model-folder, the
// same rules the library and the engine use) as report checks, and the memory fit of what it found.
import fs from 'node:fs';
import path from 'node:path';
import type { Settings } from '../settings/schema.ts';
import { inspectModelFolder, quoteFileName, type FolderCheck } from '../engine/model-folder/index.ts';
import { supportedModelTypes } from '../engine/model/registry.ts';
import type { PolicyChoice } from '../engine/probe/index.ts';
import { estimateFit, type ModelShape } from '../library/fit.ts';
import { modelsDirOf } from '../library/paths.ts';
import { isValidRepoId, modelDirName, parseRepoSpec } from '../library/validate.ts';
import { readSystemMemory } from '../hardening/memory.ts';
import { fmtBytes, type PreflightCheck } from './preflight-report.ts';

/** Resolves settings.model (a folder, or a library id such as owner/name) to a folder. */
export function resolveModelDir(model: string, dataDir: string): string | null {
  if (!model) return null;
  const asPath = path.resolve(model);
  if (fs.existsSync(asPath)) return asPath;
  try {
    if (isValidRepoId(model.split('@')[0])) return path.join(modelsDirOf(dataDir), modelDirName(parseRepoSpec(model)));
  } catch {
    // not an id either
  }
  return asPath;
}

/** What the report's `model` field and the memory fit need. */
export interface ModelFacts {
  architecture: string | null;
  weightFiles: number;
  shape: ModelShape;
}

/** Order of the model checks in the report (one section per concern, as a user reads it). */
const SECTIONS: FolderCheck[] = ['model-folder', 'model-files', 'model-config', 'model-architecture', 'model-tokenizer', 'model-index', 'model-weights'];

/** Inspects `dir` and appends its checks; null when the folder itself is unusable. */
export async function checkModel(dir: string, out: PreflightCheck[]): Promise<ModelFacts | null> {
  const ins = await inspectModelFolder(dir);
  const errors = (check: FolderCheck) => ins.problems.filter((p) => p.check === check);
  for (const check of SECTIONS) {
    for (const p of errors(check)) out.push({ id: check, status: 'error', message: p.message, hint: p.hint });
    if (check === 'model-folder' && errors(check).length) return null;
    const ok = (message: string) => out.push({ id: check, status: 'ok', message, hint: null });
    if (check === 'model-files' && !errors(check).length) ok('config.json, tokenizer.json, tokenizer_config.json and weights are present');
    if (check === 'model-architecture' && ins.architecture !== null) {
      if (ins.supported) ok(`Architecture ${ins.architecture}`);
      else out.push({ id: check, status: 'error', message: `model_type ${quoteFileName(ins.architecture)} is not supported`, hint: `Supported: ${supportedModelTypes().join(', ')}` });
    }
    if (check === 'model-index' && ins.indexConsistent) ok(`Index consistent with ${ins.shards.length} shard${ins.shards.length > 1 ? 's' : ''}`);
    if (check === 'model-weights' && ins.shape.parameters && !errors(check).length) {
      const kind = ins.shape.quantized ? ' (quantized checkpoint)' : ins.shape.floatDtype ? ` (${ins.shape.floatDtype})` : '';
      ok(`${ins.tensors} tensors, ${(ins.shape.parameters / 1e6).toFixed(1)}M parameters${kind}`);
    }
  }
  return { architecture: ins.supported ? ins.architecture : null, weightFiles: ins.shards.length, shape: ins.shape };
}

export function checkMemoryFit(shape: ModelShape, s: Settings, out: PreflightCheck[], policy: PolicyChoice): void {
  const sys = readSystemMemory();
  // "auto": the server caps the context to what fits in its memory budget (the hard watermark, 90 % of
  // RAM by default) next to the weights; the same sizing here, and no "not available right now" warning.
  const auto = s.contextLength === 'auto';
  const ctx = s.contextLength === 'auto' ? 'auto' : s.contextLength > 0 ? s.contextLength : (shape.maxContext ?? 4096);
  const vsTotal = estimateFit(shape, { contextTokens: ctx, availableBytes: Math.floor(sys.totalBytes * 0.9), policy });
  if (!Number.isFinite(vsTotal.needBytes)) {
    out.push({ id: 'memory-fit', status: 'error', message: 'The memory this model needs could not be estimated', hint: 'Check config.json and the weights' });
    return;
  }
  const avail = sys.availableBytes;
  const held = vsTotal.packed ? `packed, ${vsTotal.computeDtype} compute` : `in ${vsTotal.computeDtype}`;
  const explain = `weights ${fmtBytes(vsTotal.weightsBytes)} ${held} + KV cache ${fmtBytes(vsTotal.kvBytes)} for ${vsTotal.contextTokens} tokens + ${fmtBytes(vsTotal.overheadBytes)} runtime = ${fmtBytes(vsTotal.needBytes)}`;
  if (!vsTotal.fits) {
    out.push({ id: 'memory-fit', status: 'error', message: `The model does not fit in this machine's memory: ${explain}, RAM ${fmtBytes(sys.totalBytes)}`, hint: 'Use a smaller model or a smaller --context-length' });
  } else if (!auto && avail !== null && vsTotal.needBytes > avail) {
    out.push({ id: 'memory-fit', status: 'warn', message: `The model needs ${fmtBytes(vsTotal.needBytes)} but only ${fmtBytes(avail)} is available now (${explain})`, hint: 'Close other programs or lower --context-length' });
  } else {
    out.push({ id: 'memory-fit', status: 'ok', message: `Fits: ${explain}; ${avail !== null ? `${fmtBytes(avail)} available` : `RAM ${fmtBytes(sys.totalBytes)}`}`, hint: null });
  }
}

