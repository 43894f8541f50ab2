// model_type → family. Adding an architecture that fits the shared decoder (base.ts) is adding
// one small file that exports a FamilySpec and listing it here.
import { parseModelConfig, type ModelConfig } from './config.ts';
import type { FamilySpec } from './family.ts';
import { gemma3 } from './gemma3.ts';
import { llama } from './llama.ts';
import { mistral } from './mistral.ts';
import { phi3 } from './phi3.ts';
import { qwen2 } from './qwen2.ts';
import { qwen3 } from './qwen3.ts';
import { qwen3Moe } from './qwen3-moe.ts';

const FAMILIES: readonly FamilySpec[] = [llama, mistral, qwen2, qwen3, qwen3Moe, gemma3, phi3];

export class UnsupportedArchitectureError extends Error {
  override name = 'UnsupportedArchitectureError';
}

export function supportedModelTypes(): string[] {
  return FAMILIES.flatMap((f) => f.modelTypes);
}

export function getFamily(modelType: string): FamilySpec {
  const f = FAMILIES.find((x) => x.modelTypes.includes(modelType));
  if (!f) {
    throw new UnsupportedArchitectureError(
      `unsupported model_type "${modelType}" (supported: ${supportedModelTypes().join(', ')})`,
    );
  }
  return f;
}

/**
 * What the library shows without loading a model: the family that runs `raw` (config.json), its
 * parsed config (null when unsupported or invalid) and, for MoE, the parameters active per token.
 */
export function describeModel(
  raw: Record<string, unknown>,
  totalParameters: number | null,
): { family: string | null; config: ModelConfig | null; activeParameters: number | null } {
  const mt = raw.model_type;
  const family = typeof mt === 'string' ? FAMILIES.find((x) => x.modelTypes.includes(mt)) : undefined;
  if (!family) return { family: null, config: null, activeParameters: null };
  let config: ModelConfig | null = null;
  try {
    config = parseModelConfig(raw);
  } catch {
    return { family: family.name, config: null, activeParameters: null };
  }
  let activeParameters: number | null = null;
  if (config.moe && totalParameters !== null) {
    // Every sparse layer runs top-k of its experts (gate, up and down projections each).
    const m = config.moe;
    const perExpert = 3 * config.hiddenSize * m.moeIntermediateSize;
    const sparse = m.sparseLayers.filter(Boolean).length;
    activeParameters = totalParameters - sparse * (m.numExperts - m.topK) * perExpert;
  }
  return { family: family.name, config, activeParameters };
}
