// What distinguishes one decoder family from another. The shared decoder in base.ts reads the
// ModelConfig switches; a family sets the ones that differ from the Llama block in `configure`
// (and, for a multimodal checkpoint, picks its text model in `textConfig`).
import type { ModelConfig } from './config.ts';

export interface FamilySpec {
  /** Display name of the family. */
  name: string;
  /** config.json model_type values handled by this family. */
  modelTypes: string[];
  /** rope_theta when config.json omits it. */
  defaultRopeTheta: number;
  /** tie_word_embeddings when config.json omits it (HF's PretrainedConfig default is true). */
  defaultTied: boolean;
  /** Whether q/k/v projections carry biases, given the raw config. */
  qkvBias: (raw: Record<string, unknown>) => boolean;
  /** Whether o_proj carries a bias, given the raw config. */
  oBias: (raw: Record<string, unknown>) => boolean;
  /** Per-head RMSNorm of q and k before rope (q_norm / k_norm weights). */
  qkNorm: boolean;
  /**
   * The text model's config fields and tensor prefix, when config.json wraps it (multimodal
   * checkpoints: `text_config`, tensors under `language_model.`).
   */
  textConfig?: (raw: Record<string, unknown>) => { raw: Record<string, unknown>; weightPrefix: string };
  /** Sets the family's switches on the parsed config (throws ModelConfigError on bad values). */
  configure?: (raw: Record<string, unknown>, cfg: ModelConfig) => void;
}
