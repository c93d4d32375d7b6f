#pragma once
// The attention mixer (mixer/attention) under test, called directly through the SDK: its
// options, random parameters, caches allocated here with room for the test's tokens, and
// forward / step / backward calls with a chosen attention kernel. Shared by the mixer tests.
//
// Dimensions: B batch, L length, D d_model, H heads, Hkv kv heads, hd head_dim, C capacity.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/attention_kernel.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "test_tensors.hpp"
#include "test_workspace.hpp"

namespace mambakit::test::attention {

namespace sdk = mambakit::sdk;

/// The mixer's options (the official attn_cfg names) and the sizes they imply.
struct MixerOptions {
  std::int64_t d_model = 8, heads = 4, heads_kv = 2, head_dim = 4, d_conv = 0, rotary_dim = 0, mlp_dim = 0;
  bool interleaved = false, qkv_bias = true, out_bias = true;
  double softmax_scale = 0;  ///< 0: the default 1 / sqrt(hd)
  double rotary_base = 10000.0;

  [[nodiscard]] std::string json() const {
    std::string text = "{\"d_model\": " + std::to_string(d_model) + ", \"n_layer\": 2, \"num_heads\": " +
                       std::to_string(heads) + ", \"num_heads_kv\": " + std::to_string(heads_kv) +
                       ", \"head_dim\": " + std::to_string(head_dim) + ", \"d_conv\": " + std::to_string(d_conv) +
                       ", \"rotary_emb_dim\": " + std::to_string(rotary_dim) +
                       ", \"rotary_emb_interleaved\": " + (interleaved ? "true" : "false") +
                       ", \"rotary_emb_base\": " + std::to_string(rotary_base) +
                       ", \"mlp_dim\": " + std::to_string(mlp_dim) + ", \"qkv_proj_bias\": " +
                       (qkv_bias ? "true" : "false") + ", \"out_proj_bias\": " + (out_bias ? "true" : "false");
    if (softmax_scale > 0) text += ", \"softmax_scale\": " + std::to_string(softmax_scale);
    return text + "}";
  }
  [[nodiscard]] std::int64_t qkv_dim() const { return head_dim * (heads + 2 * heads_kv); }
  [[nodiscard]] std::int64_t mlp_columns() const { return (mlp_dim + 255) / 256 * 256; }
  [[nodiscard]] double scale() const {
    return softmax_scale > 0 ? softmax_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
  }
};

/// One mixer instance with parameters of element type T and a context that runs `kernel`.
template <class T>
class MixerHarness {
 public:
  MixerHarness(const MixerOptions& options, const std::string& kernel, std::uint32_t seed, int threads = 2)
      : options_(options),
        mixer_(in_tree_plugins().create_mixer("attention", options.json())),
        kernel_(in_tree_plugins().create_kernel(sdk::kAttentionKind, kernel, "{}")) {
    context_ = kernel_context(*kernel_, workspace_, threads);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    for (std::int32_t i = 0; i < mixer_->param_count(); ++i) {
      sdk::ParamSpec spec;
      REQUIRE(mixer_->param_spec(i, &spec).ok());
      params.push_back(make_tensor<T>(spec.tensor));
      // Twice nn.Linear's scale for in_proj, so that the scores spread and the softmax is far
      // from uniform; biases and the conv at their initial scales.
      const std::string& name = params.back().name;
      const double fan_in = static_cast<double>(params.back().shape.back());
      double bound = 1.0 / std::sqrt(fan_in);
      if (name == "in_proj.weight") bound *= 2.5;
      if (name == "in_proj.bias" || name == "out_proj.bias") bound = 0.2;
      for (auto& value : params.back().values) value = static_cast<T>(bound * unit(rng));
    }
  }

  sdk::Mixer& mixer() { return *mixer_; }
  sdk::Context& context() { return context_; }
  const MixerOptions& options() const { return options_; }
  std::ptrdiff_t workspace_live() const { return workspace_.live(); }

  /// Zero state for `batch` rows with room for `capacity` tokens.
  std::vector<Tensor<T>> make_state(std::int64_t batch, std::int64_t capacity) {
    std::vector<Tensor<T>> state;
    for (std::int32_t i = 0; i < mixer_->state_count(); ++i) {
      sdk::TensorSpec spec;
      REQUIRE(mixer_->state_spec(i, batch, &spec).ok());
      const std::int32_t axis = mixer_->state_token_axis(i);
      if (axis > 0) spec.shape[axis] = capacity;
      state.push_back(make_tensor<T>(spec));
    }
    return state;
  }

  /// A state whose rows hold positions[b] random tokens (caches) and a random conv window; the
  /// caches' unheld entries are NaN.
  std::vector<Tensor<T>> random_state(const std::vector<std::int64_t>& positions, std::int64_t capacity,
                                      std::uint32_t seed) {
    auto state = make_state(static_cast<std::int64_t>(positions.size()), capacity);
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    for (std::int32_t i = 0; i < mixer_->state_count(); ++i) {
      auto& tensor = state[static_cast<std::size_t>(i)];
      if (mixer_->state_token_axis(i) > 0) {
        const std::int64_t width = tensor.shape[2] * tensor.shape[3];
        for (std::size_t b = 0; b < positions.size(); ++b) {
          for (std::int64_t t = 0; t < capacity; ++t) {
            for (std::int64_t e = 0; e < width; ++e) {
              tensor.values[static_cast<std::size_t>((static_cast<std::int64_t>(b) * capacity + t) * width + e)] =
                  t < positions[b] ? static_cast<T>(normal(rng)) : T(NAN);
            }
          }
        }
      } else {
        for (auto& value : tensor.values) value = static_cast<T>(normal(rng));
      }
    }
    return state;
  }

  /// Forward of x (B, L, D) from `initial` (or none) at `positions`, writing `final_state`
  /// when given and the saved activations when `saved` is given.
  std::vector<T> forward(std::vector<T>& x, std::int64_t batch, std::vector<Tensor<T>>* initial,
                         std::vector<Tensor<T>>* final_state, std::vector<std::int64_t> positions,
                         std::vector<Tensor<T>>* saved = nullptr) {
    const std::int64_t length = static_cast<std::int64_t>(x.size()) / (batch * options_.d_model);
    std::vector<T> y(x.size(), T(NAN));
    auto param_views = views(params);
    std::vector<sdk::TensorView> initial_views, final_views, saved_views;
    if (initial != nullptr) initial_views = views(*initial);
    if (final_state != nullptr) final_views = views(*final_state);
    if (saved != nullptr) {
      saved->clear();
      for (std::int32_t i = 0; i < mixer_->saved_count(); ++i) {
        sdk::TensorSpec spec;
        REQUIRE(mixer_->saved_spec(i, batch, length, &spec).ok());
        saved->push_back(make_tensor<T>(spec));
      }
      saved_views = views(*saved);
    }
    sdk::MixerForwardArgs args;
    args.params = param_views.data();
    args.x = sdk::make_view(x.data(), dtype_of<T>(), sdk::Device{}, {batch, length, options_.d_model});
    args.y = sdk::make_view(y.data(), dtype_of<T>(), sdk::Device{}, {batch, length, options_.d_model});
    args.initial_state = initial != nullptr ? initial_views.data() : nullptr;
    args.final_state = final_state != nullptr ? final_views.data() : nullptr;
    args.saved = saved != nullptr ? saved_views.data() : nullptr;
    args.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {batch});
    const sdk::Status status = mixer_->forward(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
    return y;
  }

  /// One token per row, x (B, D), the state in place, at `positions`.
  std::vector<T> step(std::vector<T>& x, std::vector<Tensor<T>>& state, std::vector<std::int64_t> positions) {
    const std::int64_t batch = static_cast<std::int64_t>(positions.size());
    std::vector<T> y(x.size(), T(NAN));
    auto param_views = views(params);
    auto state_views = views(state);
    sdk::MixerStepArgs args;
    args.params = param_views.data();
    args.x = sdk::make_view(x.data(), dtype_of<T>(), sdk::Device{}, {batch, options_.d_model});
    args.y = sdk::make_view(y.data(), dtype_of<T>(), sdk::Device{}, {batch, options_.d_model});
    args.state = state_views.data();
    args.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {batch});
    const sdk::Status status = mixer_->step(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
    return y;
  }

  std::vector<Tensor<T>> params;

 private:
  MixerOptions options_;
  MixerPtr mixer_;
  KernelPtr kernel_;
  TestWorkspace workspace_;
  sdk::Context context_;
};

/// Random values of unit scale.
template <class T>
std::vector<T> random_values(std::int64_t count, std::uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<T> values(static_cast<std::size_t>(count));
  for (auto& value : values) value = static_cast<T>(scale * normal(rng));
  return values;
}

/// max |a - b| / max(max |b|, 1e-3).
template <class A, class B>
double relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0, scale = 1e-3;
  for (const auto& value : b) scale = std::max(scale, std::abs(static_cast<double>(value)));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    worst = std::isnan(difference) ? INFINITY : std::max(worst, difference);
  }
  return worst / scale;
}

}  // namespace mambakit::test::attention
