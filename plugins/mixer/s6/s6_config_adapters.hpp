#pragma once
// The config formats whose models are Mamba-1 stacks, read into mambakit's native format
// (sdk/config_adapter.hpp) by the plugin that implements their mixer:
//   - mamba-hf:   Hugging Face config.json of model_type "mamba" (MambaConfig's keys);
//   - mambakit-1: mambakit's first format, with the Mamba-1 keys at the top level, "mixer" a
//                 name or a list of names, and a "task" whose keys went to its head, as the
//                 bundled model still ships.

#include "mambakit/sdk/config_adapter.hpp"

namespace mambakit::mixer_s6 {

class HfMambaConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit HfMambaConfigAdapter(const char* /*config_json*/) {}
  /// 100 for model_type "mamba", else 0.
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

class MambakitV1ConfigAdapter final : public sdk::ConfigAdapter {
 public:
  explicit MambakitV1ConfigAdapter(const char* /*config_json*/) {}
  /// 10 for a JSON object without "format" or "model_type", else 0.
  std::int32_t score(const char* config_json) const noexcept override;
  sdk::Status translate(const char* config_json, sdk::TextSink* out) const noexcept override;
};

}  // namespace mambakit::mixer_s6
