// Which layers use sliding-window attention, for the families whose config.json says so without a
// `layer_types` list (that list, when present, is read generically in config.ts and wins).
import { configInt } from './config-fields.ts';
import type { ModelConfig } from './config.ts';

/** Mistral (and Phi-3): `sliding_window` on every layer when set below the context length. */
export function everyLayerWindow(raw: Record<string, unknown>, cfg: ModelConfig): void {
  if (Array.isArray(raw.layer_types) || raw.sliding_window === null || raw.sliding_window === undefined) return;
  const w = configInt(raw, 'sliding_window');
  if (w < cfg.maxPositionEmbeddings) cfg.layerWindows = cfg.layerWindows.map(() => w);
}

/** Qwen2/Qwen3: with `use_sliding_window`, layers from `max_window_layers` on slide (HF Qwen2). */
export function qwenLayerWindows(raw: Record<string, unknown>, cfg: ModelConfig): void {
  if (Array.isArray(raw.layer_types) || raw.use_sliding_window !== true) return;
  const w = configInt(raw, 'sliding_window');
  const from = typeof raw.max_window_layers === 'number' ? raw.max_window_layers : 0;
  cfg.layerWindows = cfg.layerWindows.map((_, i) => (i >= from ? w : null));
}
