// mixer/gated_mlp (the official GatedMLP) called directly through the plugin host:
//   - forward against the formula written out as plain loops in long double
//     (h = W1 x + b1; y = W2 (h[:F] * h[F:] * sigmoid(h[F:])) + b2), with and without biases,
//     with the hidden width rounded up to multiple_of;
//   - the decode step equals the forward row; forward with saved activations equals forward
//     without them;
//   - backward against fourth-order central finite differences in f64 (every parameter and the
//     input, loss sum(y * w) with random w), and accumulation (+=) into what the caller passes;
//   - f16, bf16 and int8 weights against the f32 forward and step;
//   - the declared parameters and their initialisation; option errors;
//   - the PyTorch fixture tests/data/hybrid/gated_mlp_block (tools/make_hybrid_fixtures.py,
//     the official GatedMLP in f64): y and every gradient.
// Tolerances: see gradient_check.hpp for the gradients; the others are stated where used.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "gradient_check.hpp"
#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/safetensors.hpp"
#include "mambakit/sdk/quantized.hpp"
#include "test_workspace.hpp"

namespace sdk = mambakit::sdk;
using Catch::Matchers::Contains;
using mambakit::test::TestWorkspace;

namespace {

mambakit::MixerPtr create(const std::string& config) {
  return mambakit::test::in_tree_plugins().create_mixer("gated_mlp", config);
}

std::string config(std::int64_t d_model, std::int64_t d_intermediate, std::int64_t multiple_of, bool bias,
                   std::int64_t n_layer = 2) {
  return R"({"d_model": )" + std::to_string(d_model) + R"(, "n_layer": )" + std::to_string(n_layer) +
         R"(, "layer_index": 0, "d_intermediate": )" + std::to_string(d_intermediate) + R"(, "multiple_of": )" +
         std::to_string(multiple_of) + R"(, "bias": )" + (bias ? "true" : "false") + "}";
}

sdk::ParamSpec spec_of(sdk::Mixer& mixer, std::int32_t i) {
  sdk::ParamSpec spec;
  REQUIRE(mixer.param_spec(i, &spec).ok());
  return spec;
}

/// A mixer's parameters in T, filled with U(-scale, scale).
template <class T>
struct Params {
  std::vector<std::vector<T>> values;
  std::vector<std::vector<std::int64_t>> shapes;

  Params(sdk::Mixer& mixer, std::mt19937& rng, double scale) {
    std::uniform_real_distribution<double> unit(-scale, scale);
    for (std::int32_t i = 0; i < mixer.param_count(); ++i) {
      const sdk::ParamSpec spec = spec_of(mixer, i);
      shapes.emplace_back(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
      values.emplace_back(static_cast<std::size_t>(spec.tensor.numel()));
      for (auto& value : values.back()) value = static_cast<T>(unit(rng));
    }
  }

  std::vector<sdk::TensorView> views() {
    std::vector<sdk::TensorView> result;
    for (std::size_t i = 0; i < values.size(); ++i) {
      result.push_back(sdk::make_view(values[i].data(), sizeof(T) == 8 ? sdk::DType::kF64 : sdk::DType::kF32,
                                      sdk::Device{}, shapes[i].data(), static_cast<std::int32_t>(shapes[i].size())));
    }
    return result;
  }
};

template <class T>
std::vector<T> random_vector(std::int64_t count, std::mt19937& rng, double scale = 1.0) {
  std::uniform_real_distribution<double> unit(-scale, scale);
  std::vector<T> values(static_cast<std::size_t>(count));
  for (auto& value : values) value = static_cast<T>(unit(rng));
  return values;
}

sdk::Context cpu_context(TestWorkspace& workspace, int threads = 1) {
  sdk::Context context;
  context.workspace = &workspace;
  context.n_threads = threads;
  return context;
}

/// y (B, L, D) of mixer.forward on x, in T; `saved` receives the saved activations when given.
template <class T>
std::vector<T> forward(sdk::Mixer& mixer, const std::vector<sdk::TensorView>& params, std::vector<T>& x,
                       std::int64_t batch, std::int64_t length, std::int64_t d_model, std::vector<T>* saved = nullptr,
                       int threads = 1) {
  TestWorkspace workspace;
  std::vector<T> y(x.size(), T(-7));
  sdk::MixerForwardArgs args;
  args.params = params.data();
  args.x = sdk::make_view(x.data(), {batch, length, d_model});
  args.y = sdk::make_view(y.data(), {batch, length, d_model});
  sdk::TensorView saved_view;
  if (saved != nullptr) {
    sdk::TensorSpec spec;
    REQUIRE(mixer.saved_count() == 1);
    REQUIRE(mixer.saved_spec(0, batch, length, &spec).ok());
    saved->assign(static_cast<std::size_t>(spec.numel()), T(0));
    saved_view = sdk::make_view(saved->data(), {spec.shape[0], spec.shape[1], spec.shape[2]});
    args.saved = &saved_view;
  }
  const sdk::Status status = mixer.forward(cpu_context(workspace, threads), args);
  REQUIRE(status.ok());
  CHECK(workspace.live() == 0);
  return y;
}

/// mixer.backward on x (B, L, D) from `saved` (what forward saved, B * L rows) and grad_y (B, L, D):
/// adds into grad_x (B, L, D) and the views of `grad_params` (null: every parameter frozen).
template <class T>
sdk::Status backward(sdk::Mixer& mixer, const std::vector<sdk::TensorView>& params, std::vector<T>& x,
                     std::vector<T>& saved, std::vector<T>& grad_y, std::vector<T>& grad_x,
                     const sdk::TensorView* grad_params, std::int64_t batch, std::int64_t length, std::int64_t d_model,
                     int threads = 1) {
  const std::int64_t saved_width = static_cast<std::int64_t>(saved.size()) / (batch * length);
  sdk::TensorView saved_view = sdk::make_view(saved.data(), {batch, length, saved_width});
  sdk::MixerBackwardArgs args;
  args.params = params.data();
  args.x = sdk::make_view(x.data(), {batch, length, d_model});
  args.saved = &saved_view;
  args.grad_y = sdk::make_view(grad_y.data(), {batch, length, d_model});
  args.grad_x = sdk::make_view(grad_x.data(), {batch, length, d_model});
  args.grad_params = grad_params;
  TestWorkspace workspace;
  const sdk::Status status = mixer.backward(cpu_context(workspace, threads), args);
  CHECK(workspace.live() == 0);
  return status;
}

/// y (B, D) of mixer.step on x (B, D) in f32.
std::vector<float> step(sdk::Mixer& mixer, const std::vector<sdk::TensorView>& params, std::vector<float>& x,
                        std::int64_t batch, std::int64_t d_model) {
  TestWorkspace workspace;
  std::vector<float> y(x.size(), -7.0f);
  sdk::MixerStepArgs args;
  args.params = params.data();
  args.x = sdk::make_view(x.data(), {batch, d_model});
  args.y = sdk::make_view(y.data(), {batch, d_model});
  const sdk::Status status = mixer.step(cpu_context(workspace, 2), args);
  REQUIRE(status.ok());
  CHECK(workspace.live() == 0);
  return y;
}

/// The GatedMLP formula on `rows` rows of x, in long double, from the parameters in declared
/// order: fc1.weight, [fc1.bias], fc2.weight, [fc2.bias].
template <class T>
std::vector<long double> reference(const Params<T>& p, bool bias, const std::vector<T>& x, std::int64_t rows) {
  const std::vector<T>& w1 = p.values[0];
  const std::vector<T>* b1 = bias ? &p.values[1] : nullptr;
  const std::vector<T>& w2 = p.values[bias ? 2 : 1];
  const std::vector<T>* b2 = bias ? &p.values[3] : nullptr;
  const std::int64_t two_f = p.shapes[0][0], d = p.shapes[0][1], f = two_f / 2;
  std::vector<long double> y(static_cast<std::size_t>(rows * d));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<long double> h(static_cast<std::size_t>(two_f));
    for (std::int64_t i = 0; i < two_f; ++i) {
      long double sum = b1 ? (*b1)[i] : 0.0L;
      for (std::int64_t k = 0; k < d; ++k) sum += static_cast<long double>(w1[i * d + k]) * x[r * d + k];
      h[i] = sum;
    }
    for (std::int64_t o = 0; o < d; ++o) {
      long double sum = b2 ? (*b2)[o] : 0.0L;
      for (std::int64_t j = 0; j < f; ++j) {
        const long double gate = h[f + j] / (1.0L + std::exp(-h[f + j]));
        sum += static_cast<long double>(w2[o * f + j]) * h[j] * gate;
      }
      y[r * d + o] = sum;
    }
  }
  return y;
}

/// max |a - b| / max |b|.
template <class A, class B>
double relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  REQUIRE(a.size() == b.size());
  double error = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    error = std::max(error, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    largest = std::max(largest, std::fabs(static_cast<double>(b[i])));
  }
  return error / std::max(largest, 1e-30);
}

}  // namespace

TEST_CASE("gated_mlp declares fc1 and fc2 in the official layout, initialised as nn.Linear") {
  // d_intermediate 100 rounds up to the default multiple of 128.
  const auto mixer = create(R"({"d_model": 16, "n_layer": 3, "layer_index": 1, "d_intermediate": 100})");
  REQUIRE(mixer->param_count() == 2);
  CHECK(mixer->state_count() == 0);
  const sdk::ParamSpec fc1 = spec_of(*mixer, 0), fc2 = spec_of(*mixer, 1);
  CHECK(std::string(fc1.tensor.name) == "fc1.weight");
  CHECK(fc1.tensor.rank == 2);
  CHECK(fc1.tensor.shape[0] == 256);
  CHECK(fc1.tensor.shape[1] == 16);
  CHECK(std::string(fc2.tensor.name) == "fc2.weight");
  CHECK(fc2.tensor.shape[0] == 16);
  CHECK(fc2.tensor.shape[1] == 128);
  CHECK(fc1.linear_weight);
  CHECK(fc2.linear_weight);
  CHECK(fc1.weight_decay);
  // kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)); fc2 divided by sqrt(n_layer), as
  // MambaLMHeadModel's final _init_weights pass leaves it.
  CHECK(fc1.init.kind == sdk::InitKind::kUniform);
  CHECK(fc1.init.b == Approx(1.0 / 4.0));
  CHECK(fc1.init.a == Approx(-1.0 / 4.0));
  CHECK(fc2.init.kind == sdk::InitKind::kUniform);
  CHECK(fc2.init.b == Approx(1.0 / std::sqrt(128.0 * 3.0)));

  const auto with_bias = create(config(16, 100, 32, true));
  REQUIRE(with_bias->param_count() == 4);
  const std::vector<std::string> names = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (std::int32_t i = 0; i < 4; ++i) CHECK(std::string(spec_of(*with_bias, i).tensor.name) == names[i]);
  CHECK(spec_of(*with_bias, 0).tensor.shape[0] == 256);  // 100 -> 128 with multiple_of 32
  CHECK(spec_of(*with_bias, 1).init.kind == sdk::InitKind::kZeros);
  CHECK_FALSE(spec_of(*with_bias, 1).weight_decay);
  CHECK(spec_of(*with_bias, 3).tensor.shape[0] == 16);
  CHECK(spec_of(*with_bias, 3).init.kind == sdk::InitKind::kZeros);
}

TEST_CASE("gated_mlp forward equals the GatedMLP formula, and the step equals the forward row") {
  const std::int64_t B = 2, L = 3, D = 6;
  for (const bool bias : {false, true}) {
    for (const std::int64_t multiple_of : {1, 4}) {
      DYNAMIC_SECTION((bias ? "bias" : "no bias") << ", multiple_of " << multiple_of) {
        const auto mixer = create(config(D, 5, multiple_of, bias));  // F = 5 or 8
        std::mt19937 rng(11);
        Params<double> p64(*mixer, rng, 0.5);
        std::vector<double> x64 = random_vector<double>(B * L * D, rng, 1.5);
        const auto y64 = forward(*mixer, p64.views(), x64, B, L, D);
        // f64 against the long double loops: rounding of sums of ~10 terms.
        CHECK(relative_error(y64, reference(p64, bias, x64, B * L)) < 1e-13);

        Params<float> p32(*mixer, rng, 0.5);
        std::vector<float> x32 = random_vector<float>(B * L * D, rng, 1.5);
        const auto y32 = forward(*mixer, p32.views(), x32, B, L, D);
        const auto expected = reference(p32, bias, x32, B * L);
        CHECK(relative_error(y32, expected) < 1e-5);

        // Saving the activations changes nothing, and the saved tensor is fc1's output.
        std::vector<float> saved;
        CHECK(forward(*mixer, p32.views(), x32, B, L, D, &saved, 2) == y32);
        const std::int64_t F = multiple_of == 1 ? 5 : 8;
        REQUIRE(saved.size() == static_cast<std::size_t>(B * L * 2 * F));
        double h0 = bias ? p32.values[1][0] : 0.0;
        for (std::int64_t k = 0; k < D; ++k) h0 += static_cast<double>(p32.values[0][k]) * x32[k];
        CHECK(saved[0] == Approx(h0).margin(1e-6));

        // Each position as one decode step (rows of the batch together).
        for (std::int64_t t = 0; t < L; ++t) {
          std::vector<float> x_t(static_cast<std::size_t>(B * D));
          for (std::int64_t b = 0; b < B; ++b) {
            std::copy_n(x32.begin() + (b * L + t) * D, D, x_t.begin() + b * D);
          }
          const auto y_t = step(*mixer, p32.views(), x_t, B, D);
          for (std::int64_t b = 0; b < B; ++b) {
            for (std::int64_t o = 0; o < D; ++o) {
              CHECK(y_t[b * D + o] == Approx(y32[(b * L + t) * D + o]).margin(1e-6));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("gated_mlp backward matches f64 finite differences and accumulates") {
  const std::int64_t B = 2, L = 3, D = 5;
  for (const bool bias : {false, true}) {
    DYNAMIC_SECTION((bias ? "bias" : "no bias")) {
      const auto mixer = create(config(D, 6, 4, bias));  // F = 8
      std::mt19937 rng(5);
      Params<double> p(*mixer, rng, 0.6);
      std::vector<double> x = random_vector<double>(B * L * D, rng, 1.5);
      const std::vector<double> w = random_vector<double>(B * L * D, rng);
      auto loss = [&] {
        auto params = p.views();
        return mambakit::test::weighted_sum(forward(*mixer, params, x, B, L, D), w);
      };

      // Analytic gradients, into buffers that already hold 1: backward must add.
      std::vector<double> saved;
      auto params = p.views();
      forward(*mixer, params, x, B, L, D, &saved);
      std::vector<std::vector<double>> grads;
      std::vector<sdk::TensorView> grad_views;
      for (std::size_t i = 0; i < p.values.size(); ++i) grads.emplace_back(p.values[i].size(), 1.0);
      for (std::size_t i = 0; i < p.values.size(); ++i) {
        grad_views.push_back(sdk::make_view(grads[i].data(), sdk::DType::kF64, sdk::Device{}, p.shapes[i].data(),
                                            static_cast<std::int32_t>(p.shapes[i].size())));
      }
      std::vector<double> grad_x(x.size(), 1.0), grad_y = w;
      const std::int64_t F = 8;
      REQUIRE(saved.size() == static_cast<std::size_t>(B * L * 2 * F));
      REQUIRE(backward(*mixer, params, x, saved, grad_y, grad_x, grad_views.data(), B, L, D, 2).ok());

      auto minus_one = [](std::vector<double> values) {
        for (auto& value : values) value -= 1.0;
        return values;
      };
      for (std::size_t i = 0; i < p.values.size(); ++i) {
        const auto numeric = mambakit::test::finite_differences(p.values[i], loss);
        const auto comparison = mambakit::test::compare_gradient(minus_one(grads[i]), numeric);
        INFO("parameter " << i << ": max error " << comparison.max_error << " of " << comparison.max_gradient);
        CHECK(comparison.max_gradient > 0.0);
        CHECK(comparison.passes());
      }
      const auto numeric_x = mambakit::test::finite_differences(x, loss);
      const auto comparison_x = mambakit::test::compare_gradient(minus_one(grad_x), numeric_x);
      INFO("x: max error " << comparison_x.max_error << " of " << comparison_x.max_gradient);
      CHECK(comparison_x.passes());

      // A frozen parameter (absent gradient view) changes neither the others nor grad_x.
      std::vector<double> grad_x2(x.size(), 1.0), grad_first(grads[0].size(), 1.0);
      std::vector<sdk::TensorView> frozen(grad_views.size());
      frozen[0] = sdk::make_view(grad_first.data(), sdk::DType::kF64, sdk::Device{}, p.shapes[0].data(), 2);
      REQUIRE(backward(*mixer, params, x, saved, grad_y, grad_x2, frozen.data(), B, L, D).ok());
      CHECK(grad_first == grads[0]);
      CHECK(grad_x2 == grad_x);
    }
  }
}

TEST_CASE("gated_mlp backward in f32 agrees with f64 and refuses 16-bit weights") {
  const std::int64_t B = 2, L = 4, D = 8;
  const auto mixer = create(config(D, 12, 8, true));  // F = 16
  std::mt19937 rng(9);
  Params<double> p64(*mixer, rng, 0.4);
  Params<float> p32(*mixer, rng, 1.0);
  for (std::size_t i = 0; i < p64.values.size(); ++i) {
    std::transform(p64.values[i].begin(), p64.values[i].end(), p32.values[i].begin(),
                   [](double v) { return static_cast<float>(v); });
  }
  std::vector<double> x64 = random_vector<double>(B * L * D, rng);
  std::vector<float> x32(x64.begin(), x64.end());
  auto run = [&]<class T>(Params<T>& p, std::vector<T>& x) {
    auto params = p.views();
    std::vector<T> saved;
    forward(*mixer, params, x, B, L, D, &saved);
    std::vector<T> grad_y(x.size(), T(1)), grad_x(x.size(), T(0)), grad_w1(p.values[0].size(), T(0));
    std::vector<sdk::TensorView> grads(p.values.size());
    grads[0] = sdk::make_view(grad_w1.data(), {p.shapes[0][0], p.shapes[0][1]});
    REQUIRE(backward(*mixer, params, x, saved, grad_y, grad_x, grads.data(), B, L, D, 2).ok());
    grad_x.insert(grad_x.end(), grad_w1.begin(), grad_w1.end());
    return grad_x;
  };
  const auto g64 = run(p64, x64);
  const auto g32 = run(p32, x32);
  CHECK(mambakit::test::precision_error(g32, g64) < mambakit::test::kPrecisionRtol);

  // 16-bit weights are for inference only.
  std::vector<std::uint16_t> half(p32.values[0].size(), 0);
  auto params = p32.views();
  params[0] = sdk::make_view(half.data(), sdk::DType::kF16, sdk::Device{}, p32.shapes[0].data(), 2);
  std::vector<float> saved(static_cast<std::size_t>(B * L * 32)), grad_y(x32.size(), 1.0f), grad_x(x32.size());
  const sdk::Status status = backward(*mixer, params, x32, saved, grad_y, grad_x, nullptr, B, L, D);
  CHECK_FALSE(status.ok());
  CHECK_THAT(std::string(status.message), Contains("f32 parameters"));
}

TEST_CASE("gated_mlp with f16, bf16 and int8 weights stays close to f32, in forward and step") {
  const std::int64_t B = 3, L = 2, D = 64;
  const auto mixer = create(config(D, 96, 32, true));  // F = 96
  std::mt19937 rng(3);
  Params<float> p(*mixer, rng, 1.0 / 8.0);
  std::vector<float> x = random_vector<float>(B * L * D, rng);
  const auto y32 = forward(*mixer, p.views(), x, B, L, D);
  std::vector<float> x_row(x.begin(), x.begin() + B * D);  // B rows of D as one step
  const auto step32 = step(*mixer, p.views(), x_row, B, D);

  // The 16-bit formats round each weight to 11 (f16) or 8 (bf16) significant bits: the outputs
  // move by about 2^-11 and 2^-8 of their size, summed over many terms with random signs.
  for (const sdk::DType dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
    DYNAMIC_SECTION(sdk::dtype_name(dtype)) {
      std::vector<std::vector<std::uint16_t>> storage;
      auto views = p.views();
      for (const int i : {0, 2}) {  // fc1.weight, fc2.weight
        storage.emplace_back();
        for (float value : p.values[static_cast<std::size_t>(i)]) {
          storage.back().push_back(dtype == sdk::DType::kF16 ? sdk::f32_to_f16(value) : sdk::f32_to_bf16(value));
        }
        views[static_cast<std::size_t>(i)] = sdk::make_view(storage.back().data(), dtype, sdk::Device{},
                                                            p.shapes[static_cast<std::size_t>(i)].data(), 2);
      }
      const double tolerance = dtype == sdk::DType::kF16 ? 2e-3 : 1.5e-2;
      const auto y = forward(*mixer, views, x, B, L, D);
      CHECK(relative_error(y, y32) < tolerance);
      CHECK(relative_error(step(*mixer, views, x_row, B, D), step32) < tolerance);
    }
  }

  SECTION("int8") {
    // Weights and input rows are quantized per group of 32 to 8 bits (scale max/127).
    struct Int8 {
      std::vector<std::int8_t> values;
      std::vector<float> scales;
      sdk::QuantizedMatrix matrix;
    };
    std::vector<Int8> storage(2);
    auto views = p.views();
    for (std::size_t s = 0; s < 2; ++s) {
      const std::size_t i = s == 0 ? 0 : 2;
      const std::int64_t rows = p.shapes[i][0], cols = p.shapes[i][1];
      sdk::QuantizedMatrix& m = storage[s].matrix;
      m.rows = rows;
      m.cols = cols;
      m.group_size = 32;
      m.groups = sdk::quant_groups(cols, 32);
      m.row_stride = sdk::quant_row_stride(cols);
      storage[s].values.assign(static_cast<std::size_t>(rows * m.row_stride), 0);
      storage[s].scales.assign(static_cast<std::size_t>(rows * m.groups), 0.0f);
      for (std::int64_t r = 0; r < rows; ++r) {
        sdk::quantize_row(p.values[i].data() + r * cols, cols, 32, storage[s].values.data() + r * m.row_stride,
                          storage[s].scales.data() + r * m.groups);
      }
      m.values = storage[s].values.data();
      m.scales = storage[s].scales.data();
      views[i] = sdk::make_view(&m, sdk::DType::kQ8, sdk::Device{}, {rows, cols});
    }
    const double tolerance = 3e-2;
    CHECK(relative_error(forward(*mixer, views, x, B, L, D), y32) < tolerance);
    CHECK(relative_error(step(*mixer, views, x_row, B, D), step32) < tolerance);
  }
}

TEST_CASE("gated_mlp refuses missing and invalid options by name") {
  const auto& host = mambakit::test::in_tree_plugins();
  auto error = [&](const std::string& options) {
    try {
      (void)host.create_mixer("gated_mlp", options);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(created)");
  };
  CHECK_THAT(error(R"({"d_model": 8, "n_layer": 1, "layer_index": 0})"),
             Contains("mixer/gated_mlp") && Contains("lacks \"d_intermediate\""));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 0})"), Contains("\"d_intermediate\" = 0 is invalid"));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 16, "multiple_of": 0})"),
             Contains("\"multiple_of\" = 0 is invalid"));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 16, "multiple_of": 2.5})"),
             Contains("\"multiple_of\" = 2.5 is invalid"));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 100000000})"),
             Contains("\"d_intermediate\" = 100000000 is invalid"));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 16, "bias": "no"})"), Contains("\"bias\" = \"no\" is invalid"));
  CHECK_THAT(error(R"({"d_model": 8, "d_intermediate": 16, "activation": "gelu"})"),
             Contains("unknown option \"activation\""));
}

TEST_CASE("gated_mlp matches the PyTorch fixture gated_mlp_block, output and gradients") {
  // The fixture's parameters and x are f32 values; run in f64, the only differences left are
  // the fixture's rounding of y and the gradients to f32 and of the loss weights grad_y to f32
  // (the fixture's gradients used the f64 weights): relative 1e-6 of each tensor's largest.
  const auto dir = mambakit::test::data_dir() / "hybrid" / "gated_mlp_block";
  const auto params_file = mambakit::SafetensorsFile::open(dir / "params.safetensors");
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  const auto& x_entry = expected.at("x");
  REQUIRE(x_entry.shape.size() == 3);
  const std::int64_t B = x_entry.shape[0], L = x_entry.shape[1], D = x_entry.shape[2];
  const auto mixer = create(R"({"d_model": )" + std::to_string(D) + R"(, "d_intermediate": 40})");
  REQUIRE(mixer->param_count() == 2);

  auto to_f64 = [](const std::vector<float>& values) { return std::vector<double>(values.begin(), values.end()); };
  std::vector<std::vector<double>> params;
  std::vector<std::vector<std::int64_t>> shapes;
  std::vector<sdk::TensorView> views;
  for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
    const sdk::ParamSpec spec = spec_of(*mixer, i);
    const auto& entry = params_file.at(spec.tensor.name);
    shapes.emplace_back(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
    REQUIRE(entry.shape == shapes.back());
    params.push_back(to_f64(params_file.read_f32(spec.tensor.name)));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    views.push_back(sdk::make_view(params[i].data(), sdk::DType::kF64, sdk::Device{}, shapes[i].data(), 2));
  }
  std::vector<double> x = to_f64(expected.read_f32("x"));
  std::vector<double> saved;
  const auto y = forward(*mixer, views, x, B, L, D, &saved);
  const auto y_expected = expected.read_f32("y");
  CHECK(relative_error(y, y_expected) < 1e-6);

  std::vector<double> grad_y = to_f64(expected.read_f32("grad_y")), grad_x(x.size(), 0.0);
  std::vector<std::vector<double>> grads;
  std::vector<sdk::TensorView> grad_views;
  for (const auto& values : params) grads.emplace_back(values.size(), 0.0);
  for (std::size_t i = 0; i < grads.size(); ++i) {
    grad_views.push_back(sdk::make_view(grads[i].data(), sdk::DType::kF64, sdk::Device{}, shapes[i].data(), 2));
  }
  REQUIRE(backward(*mixer, views, x, saved, grad_y, grad_x, grad_views.data(), B, L, D).ok());
  CHECK(relative_error(grad_x, expected.read_f32("grad_x")) < 1e-6);
  for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
    const std::string name = spec_of(*mixer, i).tensor.name;
    INFO(name);
    CHECK(relative_error(grads[static_cast<std::size_t>(i)], expected.read_f32("grad_" + name)) < 1e-6);
  }
}
