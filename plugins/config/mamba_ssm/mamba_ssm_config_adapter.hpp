#pragma once
// config/mamba-ssm: the config.json of state-spaces/mamba's MambaLMHeadModel (MambaConfig of
// mamba_ssm/models/config_mamba.py, with that dataclass's defaults), read into mambakit's
// native format (sdk/config_adapter.hpp, docs/CONFIG.md):
//
//   ssm_cfg (layer "Mamba1", the default, or "Mamba2")   -> "mixer": s6 or mamba2 with its options
//   ssm_cfg_per_layer {"i": ssm_cfg} (our extension)      -> "layers": {"i": s6 or mamba2}
//   attn_layer_idx, attn_cfg                              -> "layers": {"i": attention, attn_cfg}
//   d_intermediate > 0                                    -> "mlp": gated_mlp
//   rms_norm                                              -> "norm": "rms" or "layer"
//   d_model, n_layer, vocab_size, pad_vocab_size_multiple,
//   tie_embeddings, residual_in_fp32                      -> the same native keys
//   head "lm", norm_eps 1e-5 (MixerModel's norm_epsilon); fused_add_norm is a kernel choice.
//
// Every key is translated, or known to change nothing, or refused with its name and value.

#include "mambakit/sdk/config_adapter.hpp"

namespace mambakit::config_mamba_ssm {

class MambaSsmConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit MambaSsmConfigAdapter(const char* /*config_json*/) {}
  /// 50 for a JSON object without "format" and "model_type" (Hugging Face's adapters score 100
  /// by model_type) that has a key only MambaConfig has (ssm_cfg, d_intermediate,
  /// attn_layer_idx, attn_cfg, rms_norm, fused_add_norm, ssm_cfg_per_layer) or both d_model
  /// and n_layer, and no key of mambakit's first format that MambaConfig lacks (task, mixer,
  /// mixer_options, norm_eps, the head's and the Mamba-1 keys at the top level: those files stay
  /// config/mambakit-1's, which scores 10). 0 otherwise.
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

}  // namespace mambakit::config_mamba_ssm
