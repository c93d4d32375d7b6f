// The out-of-tree example mixer (sdk/examples/ema_mixer), built against the installed SDK,
// driven through the host: forward against the formula, backward against finite differences,
// step against forward.

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "mambakit/plugin_host.hpp"

namespace sdk = mambakit::sdk;

namespace {

struct EmaFixture {
  static constexpr std::int64_t kBatch = 2, kLength = 5, kModel = 3;
  mambakit::PluginHost host;
  mambakit::MixerPtr mixer;
  std::vector<float> decay_logit{0.3f, -1.0f, 2.0f}, gain{1.5f, -0.5f, 0.8f};
  std::vector<float> x, initial, y, final_state;

  EmaFixture() {
    REQUIRE(host.load_directory(MAMBAKIT_EXAMPLE_PLUGIN_DIR) == 1);
    mixer = host.create_mixer("ema", R"({"d_model": 3, "n_layer": 1, "layer_index": 0})");
    for (int i = 0; i < kBatch * kLength * kModel; ++i) x.push_back(std::sin(0.7f * i));
    for (int i = 0; i < kBatch * kModel; ++i) initial.push_back(0.1f * i - 0.2f);
    y.resize(x.size());
    final_state.resize(initial.size());
  }

  std::vector<sdk::TensorView> params() {
    return {sdk::make_view(decay_logit.data(), {kModel}), sdk::make_view(gain.data(), {kModel})};
  }

  double loss() {  // sum(y) + 2 sum(final_state)
    auto views = params();
    const sdk::TensorView init = sdk::make_view(initial.data(), {kBatch, kModel});
    const sdk::TensorView final_view = sdk::make_view(final_state.data(), {kBatch, kModel});
    sdk::MixerForwardArgs args;
    args.params = views.data();
    args.x = sdk::make_view(x.data(), {kBatch, kLength, kModel});
    args.y = sdk::make_view(y.data(), {kBatch, kLength, kModel});
    args.initial_state = &init;
    args.final_state = &final_view;
    REQUIRE(mixer->forward(sdk::Context{}, args).ok());
    double total = 0;
    for (float v : y) total += v;
    for (float v : final_state) total += 2 * v;
    return total;
  }
};

}  // namespace

TEST_CASE("the out-of-tree ema mixer computes the moving average") {
  EmaFixture fixture;
  fixture.loss();
  for (std::int64_t b = 0; b < EmaFixture::kBatch; ++b) {
    for (std::int64_t d = 0; d < EmaFixture::kModel; ++d) {
      const double a = 1.0 / (1.0 + std::exp(-fixture.decay_logit[d]));
      double h = fixture.initial[b * EmaFixture::kModel + d];
      for (std::int64_t t = 0; t < EmaFixture::kLength; ++t) {
        const std::size_t i = (b * EmaFixture::kLength + t) * EmaFixture::kModel + d;
        h = a * h + (1 - a) * fixture.x[i];
        CHECK(fixture.y[i] == Approx(fixture.gain[d] * h).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("the out-of-tree ema mixer's gradients match finite differences") {
  EmaFixture fixture;
  std::vector<float> grad_y(fixture.x.size(), 1.0f), grad_final(fixture.initial.size(), 2.0f);
  std::vector<float> grad_x(fixture.x.size()), grad_decay(3), grad_gain(3), grad_initial(fixture.initial.size());
  auto views = fixture.params();
  const sdk::TensorView grads[2] = {sdk::make_view(grad_decay.data(), {3}), sdk::make_view(grad_gain.data(), {3})};
  const sdk::TensorView init = sdk::make_view(fixture.initial.data(), {2, 3});
  const sdk::TensorView grad_final_view = sdk::make_view(grad_final.data(), {2, 3});
  const sdk::TensorView grad_initial_view = sdk::make_view(grad_initial.data(), {2, 3});
  sdk::MixerBackwardArgs args;
  args.params = views.data();
  args.x = sdk::make_view(fixture.x.data(), {2, 5, 3});
  args.initial_state = &init;
  args.grad_y = sdk::make_view(grad_y.data(), {2, 5, 3});
  args.grad_final_state = &grad_final_view;
  args.grad_x = sdk::make_view(grad_x.data(), {2, 5, 3});
  args.grad_params = grads;
  args.grad_initial_state = &grad_initial_view;
  REQUIRE(fixture.mixer->backward(sdk::Context{}, args).ok());

  auto numeric = [&](float& value) {
    const float saved = value, step = 1e-2f;
    value = saved + step;
    const double plus = fixture.loss();
    value = saved - step;
    const double minus = fixture.loss();
    value = saved;
    return (plus - minus) / (2 * step);
  };
  for (int d = 0; d < 3; ++d) {
    CHECK(grad_decay[d] == Approx(numeric(fixture.decay_logit[d])).epsilon(2e-3));
    CHECK(grad_gain[d] == Approx(numeric(fixture.gain[d])).epsilon(2e-3));
  }
  for (std::size_t i = 0; i < fixture.x.size(); i += 4) CHECK(grad_x[i] == Approx(numeric(fixture.x[i])).epsilon(2e-3));
  for (std::size_t i = 0; i < fixture.initial.size(); ++i) {
    CHECK(grad_initial[i] == Approx(numeric(fixture.initial[i])).epsilon(2e-3));
  }
}

TEST_CASE("the out-of-tree ema mixer's steps equal its forward pass") {
  EmaFixture fixture;
  fixture.loss();
  std::vector<float> state = fixture.initial, x_t(2 * 3), y_t(2 * 3);
  auto views = fixture.params();
  const sdk::TensorView state_view = sdk::make_view(state.data(), {2, 3});
  for (std::int64_t t = 0; t < EmaFixture::kLength; ++t) {
    for (int b = 0; b < 2; ++b) {
      for (int d = 0; d < 3; ++d) x_t[b * 3 + d] = fixture.x[(b * 5 + t) * 3 + d];
    }
    sdk::MixerStepArgs step;
    step.params = views.data();
    step.x = sdk::make_view(x_t.data(), {2, 3});
    step.y = sdk::make_view(y_t.data(), {2, 3});
    step.state = &state_view;
    REQUIRE(fixture.mixer->step(sdk::Context{}, step).ok());
    for (int b = 0; b < 2; ++b) {
      for (int d = 0; d < 3; ++d) CHECK(y_t[b * 3 + d] == Approx(fixture.y[(b * 5 + t) * 3 + d]).epsilon(1e-5));
    }
  }
  for (std::size_t i = 0; i < state.size(); ++i) CHECK(state[i] == Approx(fixture.final_state[i]).epsilon(1e-5));
}
