// Ollama's model listings (`/api/tags`, `/api/ps`, `/api/show`, `/api/version`) from what the server
// knows about its models (the library's public entries, or the one started model). Names are our
// model ids (what `model` takes everywhere); `<id>:latest` is accepted on the way in (request.ts).
// Shapes after the `ollama` package's ListResponse / ModelResponse / ShowResponse.
import { createHash } from 'node:crypto';

type Obj = Record<string, unknown>;

/** The facts a listing needs, from a library entry or the loaded ModelInfo. */
export interface OllamaModelFacts {
  id: string;
  sizeBytes: number;
  architecture: string | null;
  parameters: number | null;
  quantization: { bits: number } | null;
  /** Checkpoint dtype (float16, bfloat16, float32, q4 …). */
  dtype: string | null;
  contextLength: number | null;
  /** Unix ms the model was last changed/started, for `modified_at`. */
  modifiedAt: number;
  /** Loaded model only: what a chat with it can do (from its chat template). */
  capabilities?: { tools: boolean; thinking: boolean };
  numLayers?: number | null;
  numKvHeads?: number | null;
  headDim?: number | null;
  /** A remote engine (settings `remotes`): served by an upstream, never its URL or key here. */
  remote?: boolean;
}

/**
 * The version `/api/version` reports. Clients gate features on it (VS Code's Ollama provider
 * requires ≥ 0.6.4; tool calling and `think` need recent Ollama), so we report the Ollama
 * release whose API this server follows, not MLX Bar's own version.
 */
export const OLLAMA_COMPAT_VERSION = '0.12.6';

/** "596.05M", "8.0B": Ollama's parameter_size style. */
export function parameterSize(n: number | null): string {
  if (!n || n <= 0) return '';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  return `${(n / 1e3).toFixed(2)}K`;
}

/** Q4_0-style quantization level from our checkpoint facts. */
export function quantizationLevel(f: Pick<OllamaModelFacts, 'quantization' | 'dtype'>): string {
  if (f.quantization) return `Q${f.quantization.bits}`;
  switch (f.dtype) {
    case 'float16':
      return 'F16';
    case 'bfloat16':
      return 'BF16';
    case 'float32':
      return 'F32';
    default:
      return f.dtype ? f.dtype.toUpperCase() : '';
  }
}

/** A stable 64-hex digest per model (Ollama shows the manifest's sha256; we hash the public facts). */
function digestOf(f: OllamaModelFacts): string {
  return createHash('sha256').update(JSON.stringify([f.id, f.sizeBytes, f.architecture, f.parameters, f.dtype])).digest('hex');
}

function details(f: OllamaModelFacts): Obj {
  const family = f.architecture ?? '';
  return {
    parent_model: '',
    // Remote engines: the upstream's weights are not ours to describe.
    format: f.remote ? 'remote' : 'mlx',
    family,
    families: family ? [family] : [],
    parameter_size: parameterSize(f.parameters),
    quantization_level: quantizationLevel(f),
  };
}

/** One `/api/tags` entry. */
export function tagsEntry(f: OllamaModelFacts): Obj {
  return {
    name: f.id,
    model: f.id,
    modified_at: new Date(f.modifiedAt).toISOString(),
    size: f.sizeBytes,
    digest: digestOf(f),
    details: details(f),
  };
}

/** One `/api/ps` entry (the loaded model); `expiresAt` = when idle unload would free it (null: never). */
export function psEntry(f: OllamaModelFacts, expiresAt: number | null, memoryBytes: number): Obj {
  return {
    name: f.id,
    model: f.id,
    size: memoryBytes,
    digest: digestOf(f),
    details: details(f),
    // Ollama reports a far-future time for "never"; keep the field a valid date either way.
    expires_at: new Date(expiresAt ?? Date.UTC(2318, 0, 1)).toISOString(),
    // Unified memory / CPU: nothing is in a separate VRAM.
    size_vram: 0,
    context_length: f.contextLength ?? 0,
  };
}

/** `/api/show`: details, GGUF-style `model_info` keys clients read (context length!), capabilities. */
export function showBody(f: OllamaModelFacts): Obj {
  const arch = f.architecture ?? 'unknown';
  const info: Obj = { 'general.architecture': arch, 'general.basename': f.id };
  if (f.parameters) info['general.parameter_count'] = f.parameters;
  if (f.contextLength) info[`${arch}.context_length`] = f.contextLength;
  if (f.numLayers) info[`${arch}.block_count`] = f.numLayers;
  if (f.numKvHeads) info[`${arch}.attention.head_count_kv`] = f.numKvHeads;
  if (f.headDim) info[`${arch}.attention.key_length`] = f.headDim;
  const capabilities = ['completion'];
  if (f.capabilities?.tools) capabilities.push('tools');
  if (f.capabilities?.thinking) capabilities.push('thinking');
  return {
    license: '',
    modelfile: '',
    parameters: '',
    template: '',
    details: details(f),
    model_info: info,
    capabilities,
    modified_at: new Date(f.modifiedAt).toISOString(),
  };
}
