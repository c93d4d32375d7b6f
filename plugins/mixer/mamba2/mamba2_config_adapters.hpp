#pragma once
// The Hugging Face config format whose models are Mamba-2 stacks, read into mambakit's native
// format (sdk/config_adapter.hpp):
//   - mamba2-hf: Hugging Face config.json of model_type "mamba2" (Mamba2Config's keys).
// Every key is translated, or known to change nothing, or refused with its name and value.
// (state-spaces/mamba's own config.json, Mamba2 layers included, is config/mamba-ssm's:
// plugins/config/mamba_ssm.)

#include "mambakit/sdk/config_adapter.hpp"

namespace mambakit::mixer_mamba2 {

class HfMamba2ConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit HfMamba2ConfigAdapter(const char* /*config_json*/) {}
  /// 100 for model_type "mamba2", else 0.
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

}  // namespace mambakit::mixer_mamba2
