// mixer/attention through the SDK, with each attention kernel:
//   - forward against the official MHA written out in double (attention_reference.hpp), from no
//     state and from a held state with a different position per row, for plain MHA, GQA with
//     rotary (both conventions, full and partial), the conv (d_conv 1, 2, 4) and the gated MLP;
//   - decode token by token equals forward (outputs and final state), rows at different positions;
//   - forward in two chunks carrying the state equals one forward;
//   - every gradient (parameters, x, the held caches and conv state) against central finite
//     differences of the f64 forward, with and without an initial state;
//   - f16 and bf16 weights equal f32 weights of the same (rounded) values;
//   - option errors name the key.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "attention_mixer_harness.hpp"
#include "attention_reference.hpp"
#include "gradient_check.hpp"
#include "mambakit/sdk/half.hpp"

namespace {

namespace sdk = mambakit::sdk;
using mambakit::test::attention::MixerHarness;
using mambakit::test::attention::MixerOptions;
using mambakit::test::attention::random_values;
using mambakit::test::attention::relative_error;
using mambakit::test::Tensor;

/// The variants under test, each a different mix of the options.
std::vector<std::pair<std::string, MixerOptions>> variants() {
  MixerOptions plain;
  plain.heads_kv = 4;
  plain.head_dim = 2;
  MixerOptions gqa;
  gqa.rotary_dim = 4;
  gqa.d_conv = 4;
  gqa.mlp_dim = 8;
  MixerOptions mqa;
  mqa.heads_kv = 1;
  mqa.rotary_dim = 2;
  mqa.interleaved = true;
  mqa.d_conv = 2;
  mqa.qkv_bias = false;
  mqa.out_bias = false;
  mqa.softmax_scale = 0.3;
  mqa.rotary_base = 100.0;
  MixerOptions pointwise;
  pointwise.heads = 2;
  pointwise.heads_kv = 2;
  pointwise.head_dim = 6;
  pointwise.d_conv = 1;
  pointwise.mlp_dim = 300;
  pointwise.rotary_dim = 6;
  return {{"MHA", plain},
          {"GQA, rotary, conv 4, MLP", gqa},
          {"MQA, interleaved partial rotary, conv 2, no biases, scale", mqa},
          {"conv 1, MLP 300, full rotary", pointwise}};
}

const char* const kKernels[] = {"blocked", "naive"};

/// The held keys, values and conv inputs of a state (empty vectors for a zero state).
template <class T>
struct Held {
  std::vector<T> k, v, conv;
  std::int64_t capacity = 1;
  explicit Held(std::vector<Tensor<T>>* state) {
    if (state == nullptr) return;
    k = (*state)[0].values;
    v = (*state)[1].values;
    capacity = (*state)[0].shape[1];
    if (state->size() > 2) conv = (*state)[2].values;
  }
};

}  // namespace

TEST_CASE("mixer/attention matches the official MHA written out, from no state and from ragged held states") {
  for (const auto& [label, options] : variants()) {
    for (const char* kernel : kKernels) {
      INFO(label << ", attention/" << kernel);
      MixerHarness<double> twice(options, kernel, 3);
      MixerHarness<float> single(options, kernel, 3);
      for (std::size_t i = 0; i < twice.params.size(); ++i) {
        std::copy(twice.params[i].values.begin(), twice.params[i].values.end(), single.params[i].values.begin());
      }
      const std::int64_t B = 2, L = 6;
      auto x = random_values<double>(B * L * options.d_model, 7);
      std::vector<float> x32(x.begin(), x.end());

      // No state.
      auto y = twice.forward(x, B, nullptr, nullptr, {0, 0});
      auto expected = mambakit::test::attention::reference_forward(options, twice.params, x, {0, 0}, {}, {}, 1, {});
      CHECK(relative_error(y, expected) < 1e-12);
      CHECK(relative_error(single.forward(x32, B, nullptr, nullptr, {0, 0}), expected) < 2e-5);

      // Held states at different positions, the final state written.
      const std::vector<std::int64_t> positions = {5, 2};
      const std::int64_t capacity = 5 + L + 2;
      auto initial = twice.random_state(positions, capacity, 9);
      auto final_state = twice.make_state(B, capacity);
      y = twice.forward(x, B, &initial, &final_state, positions);
      const Held<double> held(&initial);
      expected = mambakit::test::attention::reference_forward(options, twice.params, x, positions, held.k, held.v,
                                                              capacity, held.conv);
      CHECK(relative_error(y, expected) < 1e-12);
      // Without a final state the mixer attends over a scratch cache: the same outputs.
      CHECK(relative_error(twice.forward(x, B, &initial, nullptr, positions), y) < 1e-15);
      CHECK(twice.workspace_live() == 0);
    }
  }
}

TEST_CASE("mixer/attention decodes token by token as its forward does, rows at different positions") {
  for (const auto& [label, options] : variants()) {
    for (const char* kernel : kKernels) {
      INFO(label << ", attention/" << kernel);
      MixerHarness<float> mixer(options, kernel, 5);
      const std::int64_t B = 3, L = 7, D = options.d_model;
      const std::vector<std::int64_t> positions = {3, 0, 9};
      const std::int64_t capacity = 9 + L + 1;
      auto x = random_values<float>(B * L * D, 11);
      auto initial = mixer.random_state(positions, capacity, 13);
      auto forward_final = mixer.make_state(B, capacity);
      const auto y = mixer.forward(x, B, &initial, &forward_final, positions);

      auto state = initial;
      std::vector<float> stepped(y.size());
      for (std::int64_t t = 0; t < L; ++t) {
        std::vector<float> token(static_cast<std::size_t>(B * D));
        for (std::int64_t b = 0; b < B; ++b) {
          std::copy_n(x.begin() + (b * L + t) * D, D, token.begin() + b * D);
        }
        std::vector<std::int64_t> now = positions;
        for (auto& p : now) p += t;
        const auto out = mixer.step(token, state, now);
        for (std::int64_t b = 0; b < B; ++b) std::copy_n(out.begin() + b * D, D, stepped.begin() + (b * L + t) * D);
      }
      CHECK(relative_error(stepped, y) < 2e-5);
      // The caches' held parts and the conv state.
      for (std::size_t i = 0; i < state.size(); ++i) {
        std::vector<float> a, b;
        const std::int64_t width = i < 2 ? state[i].shape[2] * state[i].shape[3] : 0;
        for (std::int64_t row = 0; row < B; ++row) {
          const std::int64_t count = i < 2 ? (positions[static_cast<std::size_t>(row)] + L) * width
                                           : static_cast<std::int64_t>(state[i].values.size()) / B;
          const std::int64_t start = i < 2 ? row * capacity * width : row * count;
          a.insert(a.end(), state[i].values.begin() + start, state[i].values.begin() + start + count);
          b.insert(b.end(), forward_final[i].values.begin() + start, forward_final[i].values.begin() + start + count);
        }
        INFO("state " << state[i].name);
        CHECK(relative_error(a, b) < 2e-5);
      }
    }
  }
}

TEST_CASE("mixer/attention forward in two chunks carrying the state equals one forward") {
  for (const auto& [label, options] : variants()) {
    INFO(label);
    MixerHarness<double> mixer(options, "blocked", 17);
    const std::int64_t B = 2, L = 9, first = 5, D = options.d_model;
    const std::vector<std::int64_t> positions = {4, 1};
    const std::int64_t capacity = 4 + L;
    auto x = random_values<double>(B * L * D, 19);
    auto initial = mixer.random_state(positions, capacity, 23);
    auto whole_final = mixer.make_state(B, capacity);
    const auto whole = mixer.forward(x, B, &initial, &whole_final, positions);

    std::vector<double> x1, x2;
    for (std::int64_t b = 0; b < B; ++b) {
      x1.insert(x1.end(), x.begin() + b * L * D, x.begin() + (b * L + first) * D);
      x2.insert(x2.end(), x.begin() + (b * L + first) * D, x.begin() + (b + 1) * L * D);
    }
    auto middle = mixer.make_state(B, capacity);
    const auto y1 = mixer.forward(x1, B, &initial, &middle, positions);
    auto last = mixer.make_state(B, capacity);
    const auto y2 = mixer.forward(x2, B, &middle, &last, {positions[0] + first, positions[1] + first});
    std::vector<double> joined;
    for (std::int64_t b = 0; b < B; ++b) {
      joined.insert(joined.end(), y1.begin() + b * first * D, y1.begin() + (b + 1) * first * D);
      joined.insert(joined.end(), y2.begin() + b * (L - first) * D, y2.begin() + (b + 1) * (L - first) * D);
    }
    CHECK(relative_error(joined, whole) < 1e-13);
    for (std::size_t i = 0; i < last.size(); ++i) {
      // Compare the held parts (the rest of the caches is unspecified).
      std::vector<double> a = last[i].values, b = whole_final[i].values;
      for (std::size_t e = 0; e < a.size(); ++e) {
        if (std::isnan(b[e])) a[e] = b[e] = 0;
      }
      INFO("state " << last[i].name);
      CHECK(relative_error(a, b) < 1e-13);
    }
  }
}

namespace {

/// The f64 mixer's gradients of loss = sum(y * w_y) + sum over the held part of every final
/// state tensor of final * w, against finite differences, for every parameter, x and (with an
/// initial state) every held initial state entry.
void check_gradients(const MixerOptions& options, const char* kernel, bool with_state) {
  using mambakit::test::views;
  MixerHarness<double> mixer(options, kernel, 29, 1);
  const std::int64_t B = 2, L = 5, D = options.d_model;
  const std::vector<std::int64_t> positions = with_state ? std::vector<std::int64_t>{3, 1} : std::vector<std::int64_t>{0, 0};
  const std::int64_t capacity = 3 + L + 1;
  auto x = random_values<double>(B * L * D, 31);
  auto initial = mixer.random_state(positions, capacity, 37);
  auto y_weights = random_values<double>(B * L * D, 41);
  // Weights of the final state: random on its held part, NaN elsewhere (backward must not read it).
  auto final_weights = mixer.random_state(positions, capacity, 43);
  for (std::size_t i = 0; i < 2; ++i) {
    auto& tensor = final_weights[i];
    const std::int64_t width = tensor.shape[2] * tensor.shape[3];
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t t = 0; t < capacity; ++t) {
        for (std::int64_t e = 0; e < width; ++e) {
          tensor.values[static_cast<std::size_t>((b * capacity + t) * width + e)] =
              t < positions[static_cast<std::size_t>(b)] + L ? std::sin(double(3 * t + e + b)) : NAN;
        }
      }
    }
  }
  auto loss = [&] {
    auto final_state = mixer.make_state(B, capacity);
    const auto y = mixer.forward(x, B, with_state ? &initial : nullptr, &final_state, positions);
    double total = mambakit::test::weighted_sum(y, y_weights);
    for (std::size_t i = 0; i < final_state.size(); ++i) {
      for (std::size_t e = 0; e < final_state[i].values.size(); ++e) {
        if (!std::isnan(final_weights[i].values[e])) total += final_state[i].values[e] * final_weights[i].values[e];
      }
    }
    return total;
  };

  // Analytic gradients.
  std::vector<Tensor<double>> saved;
  auto final_state = mixer.make_state(B, capacity);
  mixer.forward(x, B, with_state ? &initial : nullptr, &final_state, positions, &saved);
  auto grad_params = mixer.params;
  for (auto& tensor : grad_params) std::fill(tensor.values.begin(), tensor.values.end(), 0.0);
  auto grad_initial = mixer.make_state(B, capacity);
  std::vector<double> grad_x(x.size(), 0.0);
  auto param_views = views(mixer.params);
  auto initial_views = views(initial);
  auto saved_views = views(saved);
  auto grad_param_views = views(grad_params);
  auto grad_initial_views = views(grad_initial);
  auto grad_final_views = views(final_weights);
  std::vector<std::int64_t> rows = positions;
  sdk::MixerBackwardArgs args;
  args.params = param_views.data();
  args.x = sdk::make_view(x.data(), {B, L, D});
  args.initial_state = with_state ? initial_views.data() : nullptr;
  args.saved = saved_views.data();
  args.grad_y = sdk::make_view(y_weights.data(), {B, L, D});
  args.grad_final_state = grad_final_views.data();
  args.grad_x = sdk::make_view(grad_x.data(), {B, L, D});
  args.grad_params = grad_param_views.data();
  args.grad_initial_state = grad_initial_views.data();
  args.positions = sdk::make_view(rows.data(), sdk::DType::kI64, sdk::Device{}, {B});
  const sdk::Status status = mixer.mixer().backward(mixer.context(), args);
  INFO(status.message);
  REQUIRE(status.ok());
  CHECK(mixer.workspace_live() == 0);

  auto check = [&](const std::string& name, std::vector<double>& values, const std::vector<double>& analytic) {
    // Only finite entries (a cache's unheld entries are NaN and take no part).
    std::vector<double> numeric(values.size(), 0.0), wanted(values.size(), 0.0);
    std::vector<double> one(1);
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (std::isnan(values[i])) continue;
      one[0] = values[i];
      auto element_loss = [&] {
        values[i] = one[0];
        return loss();
      };
      numeric[i] = mambakit::test::finite_differences(one, element_loss)[0];
      values[i] = one[0];
      wanted[i] = analytic[i];
    }
    const auto comparison = mambakit::test::compare_gradient(wanted, numeric);
    INFO(name << ": max error " << comparison.max_error << " of " << comparison.max_gradient);
    CHECK(comparison.passes());
    CHECK(comparison.max_gradient > 0);
  };
  for (std::size_t i = 0; i < mixer.params.size(); ++i) check(mixer.params[i].name, mixer.params[i].values, grad_params[i].values);
  check("x", x, grad_x);
  if (with_state) {
    for (std::size_t i = 0; i < initial.size(); ++i) check(initial[i].name, initial[i].values, grad_initial[i].values);
  }
}

}  // namespace

TEST_CASE("mixer/attention gradients match finite differences of its f64 forward") {
  const auto all = variants();
  for (const auto& [label, options] : all) {
    for (bool with_state : {true, false}) {
      INFO(label << (with_state ? ", from a held state" : ", from no state"));
      check_gradients(options, "blocked", with_state);
    }
  }
  INFO("attention/naive");
  check_gradients(all[1].second, "naive", true);
}

TEST_CASE("mixer/attention with f16 and bf16 weights equals f32 weights of the same values") {
  const MixerOptions options = variants()[1].second;
  for (const sdk::DType dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
    INFO(sdk::dtype_name(dtype));
    MixerHarness<float> mixer(options, "blocked", 47);
    // Round the parameters to the 16-bit type, keeping them as f32 for the comparison.
    std::vector<std::vector<std::uint16_t>> halves;
    for (auto& tensor : mixer.params) {
      halves.emplace_back();
      for (auto& value : tensor.values) {
        const std::uint16_t bits = dtype == sdk::DType::kF16 ? sdk::f32_to_f16(value) : sdk::f32_to_bf16(value);
        halves.back().push_back(bits);
        value = dtype == sdk::DType::kF16 ? sdk::f16_to_f32(bits) : sdk::bf16_to_f32(bits);
      }
    }
    const std::int64_t B = 2, L = 4, D = options.d_model, capacity = L + 1;
    auto x = random_values<float>(B * L * D, 53);
    auto state_f32 = mixer.make_state(B, capacity);
    const auto expected = mixer.forward(x, B, nullptr, &state_f32, {0, 0});

    auto half_views = mambakit::test::views(mixer.params);
    for (std::size_t i = 0; i < half_views.size(); ++i) {
      half_views[i].data = halves[i].data();
      half_views[i].dtype = dtype;
    }
    auto state = mixer.make_state(B, capacity);
    auto state_views = mambakit::test::views(state);
    std::vector<float> y(x.size());
    sdk::MixerForwardArgs args;
    args.params = half_views.data();
    args.x = sdk::make_view(x.data(), {B, L, D});
    args.y = sdk::make_view(y.data(), {B, L, D});
    args.final_state = state_views.data();
    REQUIRE(mixer.mixer().forward(mixer.context(), args).ok());
    CHECK(relative_error(y, expected) < 1e-6);

    // One more token through step with the 16-bit weights, against the f32 weights' step.
    auto token = random_values<float>(B * D, 59);
    std::vector<std::int64_t> positions = {L, L};
    const auto expected_step = mixer.step(token, state_f32, positions);
    std::vector<float> stepped(token.size());
    sdk::MixerStepArgs step;
    step.params = half_views.data();
    step.x = sdk::make_view(token.data(), {B, D});
    step.y = sdk::make_view(stepped.data(), {B, D});
    step.state = state_views.data();
    step.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {B});
    REQUIRE(mixer.mixer().step(mixer.context(), step).ok());
    CHECK(relative_error(stepped, expected_step) < 1e-5);
  }
}

TEST_CASE("mixer/attention refuses bad options, naming the key, and declares its layout") {
  const auto& host = mambakit::test::in_tree_plugins();
  auto refused = [&](const std::string& options, const std::string& words) {
    std::string message;
    try {
      (void)host.create_mixer("attention", options);
    } catch (const std::exception& error) {
      message = error.what();
    }
    INFO(options << " -> " << message);
    CHECK(message.find(words) != std::string::npos);
  };
  refused(R"({"d_model": 8})", "num_heads");
  refused(R"({"d_model": 8, "num_heads": 4, "causal": false})", "\"causal\"");
  refused(R"({"d_model": 8, "num_heads": 3})", "\"num_heads\" = 3");
  refused(R"({"d_model": 8, "num_heads": 4, "num_heads_kv": 3})", "\"num_heads_kv\"");
  refused(R"({"d_model": 8, "num_heads": 4, "rotary_emb_dim": 3})", "\"rotary_emb_dim\"");
  refused(R"({"d_model": 8, "num_heads": 4, "rotary_emb_dim": 4})", "\"rotary_emb_dim\"");
  refused(R"({"d_model": 8, "num_heads": 4, "softmax_scale": -1})", "\"softmax_scale\"");
  refused(R"({"d_model": 8, "num_heads": 4, "window_size": 4})", "unknown option \"window_size\"");

  // softmax_scale null is the default; mlp_dim rounds up to 256; head_dim may be given.
  auto mixer = host.create_mixer(
      "attention", R"({"d_model": 8, "num_heads": 3, "head_dim": 5, "num_heads_kv": 1, "softmax_scale": null,
                       "mlp_dim": 10, "d_conv": 3, "qkv_proj_bias": false})");
  std::vector<std::string> names;
  std::vector<std::vector<std::int64_t>> shapes;
  for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
    sdk::ParamSpec spec;
    REQUIRE(mixer->param_spec(i, &spec).ok());
    names.emplace_back(spec.tensor.name);
    shapes.emplace_back(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
  }
  CHECK(names == std::vector<std::string>{"in_proj.weight", "conv1d.weight", "conv1d.bias", "out_proj.weight",
                                          "out_proj.bias"});
  CHECK(shapes[0] == std::vector<std::int64_t>{5 * (3 + 2) + 256, 8});
  CHECK(shapes[1] == std::vector<std::int64_t>{25, 1, 3});
  CHECK(shapes[3] == std::vector<std::int64_t>{8, 15 + 128});
  REQUIRE(mixer->state_count() == 3);
  sdk::TensorSpec spec;
  REQUIRE(mixer->state_spec(0, 2, &spec).ok());
  CHECK(std::string(spec.name) == "k_cache");
  CHECK(std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank) == std::vector<std::int64_t>{2, 1, 1, 5});
  CHECK(mixer->state_token_axis(0) == 1);
  CHECK(mixer->state_token_axis(1) == 1);
  CHECK(mixer->state_token_axis(2) == -1);
  REQUIRE(mixer->state_spec(2, 2, &spec).ok());
  CHECK(std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank) == std::vector<std::int64_t>{2, 25, 2});
  sdk::MixerCapabilities capabilities;
  mixer->capabilities(&capabilities);
  CHECK(capabilities.devices == sdk::device_bit(sdk::DeviceType::kCpu));
}

TEST_CASE("mixer/attention's step needs positions, and its calls refuse a cache too small") {
  MixerOptions options;
  MixerHarness<float> mixer(options, "blocked", 61);
  const std::int64_t B = 1, D = options.d_model;
  auto state = mixer.make_state(B, 2);
  auto token = random_values<float>(B * D, 67);
  std::vector<float> y(token.size());
  auto param_views = mambakit::test::views(mixer.params);
  auto state_views = mambakit::test::views(state);
  sdk::MixerStepArgs step;
  step.params = param_views.data();
  step.x = sdk::make_view(token.data(), {B, D});
  step.y = sdk::make_view(y.data(), {B, D});
  step.state = state_views.data();
  sdk::Status status = mixer.mixer().step(mixer.context(), step);
  CHECK_FALSE(status.ok());
  CHECK(std::string(status.message).find("positions") != std::string::npos);
  std::vector<std::int64_t> positions = {2};  // the cache holds 2 tokens: no room for a third
  step.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {B});
  status = mixer.mixer().step(mixer.context(), step);
  CHECK_FALSE(status.ok());
  CHECK(std::string(status.message).find("has room for 2") != std::string::npos);
}
