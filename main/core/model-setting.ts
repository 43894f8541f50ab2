// The `model` setting checked as what it is (#11 item 4): a model folder that exists and holds a
// model this app runs, or the id of a model the library holds (or the demo model's id). Passed to
// the settings service (main/settings, which must not import the library or the engine) as its
// `checkModel` hook by the composition root: `mlx-bar serve` (PUT /v1/settings, and a config.json
// read at launch) and the desktop shell.
//
// No new inspector: a folder is judged by the library's own (inspectFolder: config.json, tokenizer,
// every safetensors header, the shard index) plus the engine registry's list of architectures, the
// same list the preflight uses. Reasons name no path: the user sees the value they typed next to it.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ModelValueCheck } from '../settings/service.ts';
import { findModel, inspectFolder, type ListOptions } from '../library/library.ts';
import { isValidRepoId } from '../library/validate.ts';
import { supportedModelTypes } from '../engine/model/registry.ts';
import { isDemoModelId } from './demo-model.ts';

const printable = (s: string, max = 40) => s.replace(/[^\x20-\x7e]/g, '?').slice(0, max);

/** Absolute or home-relative paths are folders; `./x`, `../x` are relative folders; the rest are ids. */
function pathKind(v: string): 'absolute' | 'relative' | null {
  if (path.isAbsolute(v) || v.startsWith('~/') || /^[A-Za-z]:[\\/]/.test(v)) return 'absolute';
  if (v === '.' || v === '..' || v.startsWith('./') || v.startsWith('../') || v.includes('\\')) return 'relative';
  return null;
}

/** Why `dir` (an absolute folder) is not a model this app can serve, or null. */
export async function folderProblem(dir: string, opts: ListOptions = {}): Promise<string | null> {
  let st;
  try {
    st = await fsp.stat(dir);
  } catch {
    return 'is not an existing folder';
  }
  if (!st.isDirectory()) return 'is not a folder';
  const entry = await inspectFolder(dir, opts);
  if (!entry) return 'is not a model folder (it has no readable config.json)';
  if (!entry.architecture) return 'is not a model folder (its config.json has no model_type)';
  if (!supportedModelTypes().includes(entry.architecture)) {
    return `holds a "${printable(entry.architecture)}" model, which MLX Bar does not run (supported: ${supportedModelTypes().join(', ')})`;
  }
  if (!entry.ready) return `is not a complete model folder: ${printable(entry.problem ?? 'unreadable', 160)}`;
  return null;
}

/** The check for `<dataDir>`'s settings: null when `value` is acceptable, else the reason. */
export function modelSettingCheck(dataDir: string, library: ListOptions | (() => ListOptions) = {}): ModelValueCheck {
  const lib = () => (typeof library === 'function' ? library() : library);
  return async (value) => {
    if (value === '') return null; // none selected
    if (value.length > 4096) return 'is too long';
    if (/[\u0000-\u001f\u007f]/.test(value)) return 'contains control characters';
    if (value !== value.trim()) return 'must not start or end with spaces';
    if (isDemoModelId(value)) return null;
    // file:///etc, http://…: a URL is neither a folder nor an id (a drive letter "C:\" is a path).
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) && !/^[A-Za-z]:[\\/]/.test(value)) {
      return 'must be a model folder (an absolute path) or the id of a downloaded model, not a URL';
    }
    const kind = pathKind(value);
    if (kind === 'relative') return 'must be an absolute folder path (a relative one depends on where the app was started) or the id of a downloaded model';
    if (kind === 'absolute') {
      const dir = value.startsWith('~/') ? path.join(os.homedir(), value.slice(2)) : value;
      return folderProblem(path.resolve(dir), lib());
    }
    if (await findModel(value, dataDir, lib())) return null;
    if (isValidRepoId(value.split('@')[0])) {
      return 'is not a downloaded model: download it first (Models page, or `mlx-bar pull <owner/name>`)';
    }
    return 'is neither a model folder (an absolute path) nor the id of a downloaded model';
  };
}
