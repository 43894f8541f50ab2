// What distinguishes one decoder family from another. The shared decoder in base.ts reads these
// switches; families with genuinely different blocks would add a hook here.

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
}
