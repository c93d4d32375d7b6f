#include "model_shapes.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit::cli {

ModelConfig model_shape(const std::string& name) {
  struct Shape {
    const char* name;
    std::int64_t d_model, n_layer, vocab_size;
  };
  static constexpr Shape kShapes[] = {
      {"tiny", 64, 2, 50280},     {"kjv", 256, 6, 257},       {"130m", 768, 24, 50280},
      {"370m", 1024, 48, 50280},  {"790m", 1536, 48, 50280},  {"1.4b", 2048, 48, 50280},
      {"2.8b", 2560, 64, 50280},
  };
  for (const auto& shape : kShapes) {
    if (name == shape.name) {
      ModelConfig config;  // tied, as the HF checkpoints; mixer/s6's defaults: d_state 16, d_conv 4, expand 2
      config.mixer = {"s6", "{}"};
      config.head = {"lm", "{}"};
      config.d_model = shape.d_model;
      config.n_layer = shape.n_layer;
      config.vocab_size = shape.vocab_size;
      config.pad_vocab_size_multiple = 8;
      return config;
    }
  }
  throw Error(fmt::format("unknown model shape '{}'; known: tiny, kjv, 130m, 370m, 790m, 1.4b, 2.8b", name));
}

}  // namespace mambakit::cli
