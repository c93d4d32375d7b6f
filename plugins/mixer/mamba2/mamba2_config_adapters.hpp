#pragma once
// The config formats whose models are Mamba-2 stacks, read into mambakit's native format
// (sdk/config_adapter.hpp):
//   - mamba2-hf:       Hugging Face config.json of model_type "mamba2" (Mamba2Config's keys);
//   - mamba2-official: the config.json of state-spaces/mamba's MambaLMHeadModel with
//                      ssm_cfg.layer "Mamba2" and no attention or MLP layers, as
//                      state-spaces/mamba2-130m ships.
// Every key is translated, or known to change nothing, or refused with its name and value.

#include "mambakit/sdk/config_adapter.hpp"

namespace mambakit::mixer_mamba2 {

class HfMamba2ConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit HfMamba2ConfigAdapter(const char* /*config_json*/) {}
  /// 100 for model_type "mamba2", else 0.
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

class OfficialMamba2ConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit OfficialMamba2ConfigAdapter(const char* /*config_json*/) {}
  /// 50 for an object without "format" or "model_type" whose ssm_cfg.layer is "Mamba2", else 0
  /// (above mambakit-1's 10, which takes other objects without them).
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

}  // namespace mambakit::mixer_mamba2
