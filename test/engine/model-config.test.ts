// config.json parsing against the field sets of real mlx-community checkpoints (values as
// published on the Hugging Face hub), so real downloads map to the right architecture switches.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../main/engine/model/config.ts';
import { llama3InvFreq } from '../../main/engine/model/base.ts';

const llama32_1b_4bit = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], head_dim: 64, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02,
  intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 32,
  num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, quantization: { group_size: 64, bits: 4 }, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 128256,
};
const qwen25_05b_4bit = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu',
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 21,
  model_type: 'qwen2', num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, quantization: { group_size: 64, bits: 4 },
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: 'bfloat16',
  use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const qwen3_06b_4bit = {
  architectures: ['Qwen3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  head_dim: 128, hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960,
  max_window_layers: 28, model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8,
  quantization: { group_size: 64, bits: 4 }, quantization_config: { group_size: 64, bits: 4 }, rms_norm_eps: 1e-6, rope_scaling: null,
  rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false,
  vocab_size: 151936,
};
const mistral7b_v03_4bit = {
  architectures: ['MistralForCausalLM'], attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096,
  initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, quantization: { group_size: 64, bits: 4 }, rms_norm_eps: 1e-5, rope_theta: 1000000.0,
  sliding_window: null, tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 32768,
};

describe('real-world config.json', () => {
  it('Llama 3.2 1B Instruct 4-bit', () => {
    const c = parseModelConfig(llama32_1b_4bit);
    assert.equal(c.headDim, 64);
    assert.equal(c.numKvHeads, 8);
    assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.qkvBias, false);
    assert.deepEqual(c.quantization, { bits: 4, groupSize: 64 });
    // llama3 scaling: high frequencies untouched, low frequencies divided by the factor.
    const f = llama3InvFreq(64, 500000, c.ropeScaling as any);
    assert.equal(f[0], 1);
    assert.ok(Math.abs(f[31] - 1 / 500000 ** (62 / 64) / 32) < 1e-15);
  });

  it('Qwen2.5 0.5B Instruct 4-bit: implicit q/k/v bias, tied', () => {
    const c = parseModelConfig(qwen25_05b_4bit);
    assert.equal(c.qkvBias, true);
    assert.equal(c.oBias, false);
    assert.equal(c.qkNorm, false);
    assert.equal(c.headDim, 64);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.maxPositionEmbeddings, 32768);
  });

  it('Qwen3 0.6B 4-bit: q/k norm, explicit head_dim larger than hidden/heads', () => {
    const c = parseModelConfig(qwen3_06b_4bit);
    assert.equal(c.qkNorm, true);
    assert.equal(c.headDim, 128);
    assert.equal(c.numHeads * c.headDim, 2048);
    assert.equal(c.ropeScaling, null);
    assert.deepEqual(c.eosTokenIds, [151645]);
  });

  it('Mistral 7B Instruct v0.3 4-bit: untied, GQA 32/8', () => {
    const c = parseModelConfig(mistral7b_v03_4bit);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.headDim, 128);
    assert.equal(c.numHeads / c.numKvHeads, 4);
    assert.equal(c.ropeTheta, 1000000);
    assert.equal(c.qkvBias, false);
  });
});
