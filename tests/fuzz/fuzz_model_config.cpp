// Fuzz target: model configs in every format the host reads (mambakit's native format and,
// through the in-tree config adapters, Hugging Face and state-spaces config.json), then what a
// model's creation does with them before allocating: validation, each layer's mixer and the
// head created from their options, and the parameter shapes they declare.

#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/config.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/sdk.hpp"

namespace {

const mambakit::PluginHost& plugin_host() {
  static const auto* host = [] {
    auto* loaded = new mambakit::PluginHost();
    loaded->load_directory(mambakit::fuzz::built_plugin_dir());
    return loaded;
  }();
  return *host;
}

// The declared parameters of a created component must be well-formed specs.
template <class Component>
void check_param_specs(const Component& component) {
  const auto count = component.param_count();
  mambakit::fuzz::require(count >= 0 && count < 4096, "a component declares a sane number of parameters");
  for (std::int32_t i = 0; i < count; ++i) {
    mambakit::sdk::ParamSpec spec;
    if (!component.param_spec(i, &spec).ok()) continue;
    mambakit::fuzz::require(spec.tensor.rank >= 0 && spec.tensor.rank <= mambakit::sdk::kMaxRank,
                            "a parameter's rank is within kMaxRank");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(mambakit::fuzz::as_text(data, size));
  const auto& host = plugin_host();
  mambakit::fuzz::expect_clean_errors([&] {
    const auto config = mambakit::parse_model_config(text, "fuzz config.json", host);
    const auto round_trip = mambakit::parse_model_config(mambakit::to_json(config), "fuzz round trip", host);
    mambakit::fuzz::require(mambakit::to_json(round_trip) == mambakit::to_json(config),
                            "the native JSON of a parsed config parses back to the same config");
    mambakit::validate(config);
    // The default mixer (its options are shared by every layer that uses it) and each override.
    std::vector<std::int64_t> layers = {0};
    for (const auto& [layer, choice] : config.layer_mixers) layers.push_back(layer);
    for (const auto layer : layers) {
      if (layer < 0 || layer >= config.n_layer) continue;
      const auto& mixer = config.mixer_of_layer(layer);
      check_param_specs(*host.create_mixer(mixer.name, mambakit::mixer_config_json(config, layer)));
    }
    check_param_specs(*host.create_head(config.head.name, mambakit::head_config_json(config)));
  });
  return 0;
}
