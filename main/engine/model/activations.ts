// The MLP's gated activations, shared by the dense MLP (base.ts) and the MoE experts (moe.ts).
import { core as mx } from '@frost-beta/mlx';
import type { ModelConfig } from './config.ts';

/** GELU with the tanh approximation (Gemma's gelu_pytorch_tanh). */
export function geluTanh(x: mx.array): mx.array {
  const inner = mx.multiply(mx.add(x, mx.multiply(mx.multiply(mx.multiply(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return mx.multiply(mx.multiply(x, 0.5), mx.add(mx.tanh(inner), 1));
}

/** silu(gate) * up (SwiGLU) or gelu_tanh(gate) * up (GeGLU), per the config's hidden_act. */
export function gatedAct(c: ModelConfig, g: mx.array, u: mx.array): mx.array {
  const a = c.hiddenAct === 'gelu_tanh' ? geluTanh(g) : mx.multiply(g, mx.sigmoid(g));
  return mx.multiply(a, u);
}
