#include "model_shapes.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit::cli {

ModelConfig model_shape(const std::string& name) {
  struct Shape {
    const char* name;
    std::int64_t d_model, n_layer, vocab_size;
    const char* mixer;  // with its defaults: mixer/s6 d_state 16, d_conv 4, expand 2; mixer/mamba2
                        // d_state 128, head_dim 64, one group, d_conv 4, expand 2
  };
  static constexpr Shape kShapes[] = {
      {"tiny", 64, 2, 50280, "s6"},           {"kjv", 256, 6, 257, "s6"},
      {"130m", 768, 24, 50280, "s6"},         {"370m", 1024, 48, 50280, "s6"},
      {"790m", 1536, 48, 50280, "s6"},        {"1.4b", 2048, 48, 50280, "s6"},
      {"2.8b", 2560, 64, 50280, "s6"},        {"mamba2-130m", 768, 24, 50288, "mamba2"},
      {"mamba2-370m", 1024, 48, 50288, "mamba2"}, {"mamba2-1.3b", 2048, 48, 50288, "mamba2"},
  };
  if (name == "hybrid-130m") {
    // The mamba2-130m shape with attention at layers 5, 11, 17 and 23 (12 heads of 64, rotary
    // on all 64 dimensions), as hybrids built with mamba_ssm's attn_layer_idx are.
    ModelConfig config = model_shape("mamba2-130m");
    for (const std::int64_t layer : {5, 11, 17, 23}) {
      config.layer_mixers[layer] = {"attention", R"({"num_heads": 12, "rotary_emb_dim": 64, "causal": true})"};
    }
    return config;
  }
  for (const auto& shape : kShapes) {
    if (name == shape.name) {
      ModelConfig config;  // tied, as the published checkpoints
      config.mixer = {shape.mixer, "{}"};
      config.head = {"lm", "{}"};
      config.d_model = shape.d_model;
      config.n_layer = shape.n_layer;
      config.vocab_size = shape.vocab_size;
      config.pad_vocab_size_multiple = 8;
      return config;
    }
  }
  throw Error(fmt::format("unknown model shape '{}'; known: tiny, kjv, 130m, 370m, 790m, 1.4b, 2.8b, mamba2-130m, mamba2-370m, "
                          "mamba2-1.3b, hybrid-130m",
                          name));
}

}  // namespace mambakit::cli
