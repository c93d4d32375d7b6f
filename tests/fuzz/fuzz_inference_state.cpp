// Fuzz target: inference state files (InferenceState::save/load), read into the states of a
// Mamba-1, a Mamba-2 and a hybrid test model (whose KV caches grow along a token axis); a state
// that loads must then run a decode step.

#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"

namespace {

struct Models {
  mambakit::PluginHost host;
  std::vector<std::unique_ptr<mambakit::Model>> models;
};

Models& models() {
  static auto* loaded = [] {
    auto* result = new Models();
    result->host.load_directory(mambakit::fuzz::built_plugin_dir());
    for (const char* fixture : {"models/tiny_tied", "models/mamba2_official", "hybrid/hybrid_mamba2_attn"}) {
      result->models.push_back(std::make_unique<mambakit::Model>(
          mambakit::Model::load(mambakit::fuzz::test_data_dir() / fixture, result->host)));
    }
    return result;
  }();
  return *loaded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mambakit::fuzz::ScratchFile scratch("state.safetensors");
  const auto& path = scratch.write(mambakit::fuzz::as_text(data, size));
  for (auto& model : models().models) {
    mambakit::fuzz::expect_clean_errors([&] {
      auto state = model->make_state(2);
      state.load(path);
      (void)model->step({1, 2}, state);
    });
  }
  return 0;
}
