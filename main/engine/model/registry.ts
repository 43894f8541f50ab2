// model_type → family. Adding an architecture that fits the shared decoder (base.ts) is adding
// one small file that exports a FamilySpec and listing it here.
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

/** The family that runs `modelType`, or undefined. */
export function findFamily(modelType: string): FamilySpec | undefined {
  return FAMILIES.find((x) => x.modelTypes.includes(modelType));
}

export function getFamily(modelType: string): FamilySpec {
  const f = findFamily(modelType);
  if (!f) {
    throw new UnsupportedArchitectureError(
      `unsupported model_type "${modelType}" (supported: ${supportedModelTypes().join(', ')})`,
    );
  }
  return f;
}
