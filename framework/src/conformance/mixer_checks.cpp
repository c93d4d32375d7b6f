// Conformance of a mixer: gradients against finite differences, accumulation, step against
// forward, chunked prefill and a restored state against one pass, thread-count determinism, and
// refusal of an unknown option. Dimensions: B batch, L length, D d_model.
//
// A state that grows with the sequence (Mixer::state_token_axis()) is made with room for
// kHeldTokens + L tokens; calls from an initial state pass the rows' positions, and the gradient
// check starts from a state that holds kHeldTokens random tokens.

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "conformance_support.hpp"
#include "mambakit/sdk/mixer.hpp"

namespace mambakit::conformance {

namespace {

using MixerMaker = std::function<MixerPtr()>;

/// Tokens an initial state holds in the gradient check.
constexpr std::int64_t kHeldTokens = 2;

/// A mixer with random parameters of dtype T, called on host-owned tensors.
template <class T>
class MixerHarness {
 public:
  MixerHarness(const PluginHost& host, const MixerMaker& make, const ConformanceSetup& setup, int threads)
      : host_(host), make_(make), setup_(setup), mixer_(make()), context_(host, threads) {
    sdk::Generator generator(setup.seed);
    for (std::int32_t i = 0; i < mixer_->param_count(); ++i) {
      sdk::ParamSpec spec;
      require_ok(mixer_->param_spec(i, &spec), "param_spec");
      params_.add(spec.tensor);
    }
    params_.fill_normal(generator, 0.5);
    for (std::int32_t i = 0; i < mixer_->state_count(); ++i) {
      sdk::TensorSpec spec;
      require_ok(mixer_->state_spec(i, setup.batch, &spec), "state_spec");
      token_axes_.push_back(model::checked_token_axis(mixer_, i, spec, "the mixer", spec.name));
    }
  }

  sdk::Mixer& mixer() { return *mixer_; }
  Tensors<T>& params() { return params_; }
  sdk::Context& context() { return context_.context; }
  [[nodiscard]] std::int64_t width() const { return setup_.d_model; }

  /// A zero state; a tensor with a token axis has room for kHeldTokens + L tokens.
  Tensors<T> make_state() const {
    Tensors<T> state;
    for (std::int32_t i = 0; i < mixer_->state_count(); ++i) {
      sdk::TensorSpec spec;
      require_ok(mixer_->state_spec(i, setup_.batch, &spec), "state_spec");
      std::vector<std::int64_t> shape(spec.shape, spec.shape + spec.rank);
      const std::int32_t axis = token_axes_[static_cast<std::size_t>(i)];
      if (axis >= 0) shape[static_cast<std::size_t>(axis)] = kHeldTokens + setup_.length;
      state.add(shape);
    }
    return state;
  }

  /// Whether state tensor `i` grows with the sequence.
  [[nodiscard]] bool grows(std::size_t i) const { return token_axes_[i] >= 0; }
  /// Whether a state tensor grows with the sequence.
  [[nodiscard]] bool state_grows() const {
    return std::any_of(token_axes_.begin(), token_axes_.end(), [](std::int32_t axis) { return axis >= 0; });
  }

  /// A (B) positions view of `held` tokens per row, kept in `buffer`.
  sdk::TensorView positions(std::vector<std::int64_t>& buffer, std::int64_t held) const {
    buffer.assign(static_cast<std::size_t>(setup_.batch), held);
    return sdk::make_view(buffer.data(), sdk::DType::kI64, sdk::Device{}, {setup_.batch});
  }

  Tensors<T> make_saved(std::int64_t length) const {
    Tensors<T> saved;
    for (std::int32_t i = 0; i < mixer_->saved_count(); ++i) {
      sdk::TensorSpec spec;
      require_ok(mixer_->saved_spec(i, setup_.batch, length, &spec), "saved_spec");
      saved.add(spec);
    }
    return saved;
  }

  /// y for x (B, length, D), from `initial` holding `held` tokens per row (or zeros), writing
  /// `final` and `saved` when given. `other` runs it on a new instance of the mixer. With
  /// `in_place`, as the host calls it: a tensor with a token axis is passed as both initial and
  /// final (its result is then in `initial`).
  std::vector<T> forward(const std::vector<T>& x, std::int64_t length, Tensors<T>* initial, Tensors<T>* final,
                         Tensors<T>* saved = nullptr, sdk::Mixer* other = nullptr, std::int64_t held = 0,
                         bool in_place = false) {
    const std::int64_t B = setup_.batch, D = setup_.d_model;
    std::vector<T> y(static_cast<std::size_t>(B * length * D));
    const auto param_views = params_.views();
    std::vector<sdk::TensorView> initial_views, final_views, saved_views;
    sdk::MixerForwardArgs args;
    args.params = param_views.data();
    args.x = sdk::make_view(const_cast<T*>(x.data()), dtype_of<T>, sdk::Device{}, {B, length, D});
    args.y = sdk::make_view(y.data(), dtype_of<T>, sdk::Device{}, {B, length, D});
    std::vector<std::int64_t> positions_buffer;
    if (initial != nullptr && !initial->empty()) {
      initial_views = initial->views();
      args.initial_state = initial_views.data();
      args.positions = positions(positions_buffer, held);
    }
    if (final != nullptr && !final->empty()) {
      final_views = final->views();
      for (std::size_t i = 0; in_place && i < final_views.size(); ++i) {
        if (token_axes_[i] >= 0) final_views[i] = initial_views[i];
      }
      args.final_state = final_views.data();
    }
    if (saved != nullptr) {
      saved_views = saved->views();
      args.saved = saved_views.data();
    }
    require_ok((other != nullptr ? *other : *mixer_).forward(context(), args), "forward");
    return y;
  }

  /// Gradients of sum(y * grad_y) + sum(final * grad_final) added into the given buffers.
  void backward(const std::vector<T>& x, std::int64_t length, const Tensors<T>* initial, const Tensors<T>& saved,
                const std::vector<T>& grad_y, const Tensors<T>* grad_final, std::vector<T>& grad_x,
                Tensors<T>& grad_params, Tensors<T>* grad_initial, std::int64_t held = 0) {
    const std::int64_t B = setup_.batch, D = setup_.d_model;
    const auto param_views = params_.views(), saved_views = saved.views(), grad_param_views = grad_params.views();
    std::vector<sdk::TensorView> initial_views, grad_final_views, grad_initial_views;
    sdk::MixerBackwardArgs args;
    args.params = param_views.data();
    args.x = sdk::make_view(const_cast<T*>(x.data()), dtype_of<T>, sdk::Device{}, {B, length, D});
    args.saved = saved_views.data();
    args.grad_y = sdk::make_view(const_cast<T*>(grad_y.data()), dtype_of<T>, sdk::Device{}, {B, length, D});
    args.grad_x = sdk::make_view(grad_x.data(), dtype_of<T>, sdk::Device{}, {B, length, D});
    args.grad_params = grad_param_views.data();
    std::vector<std::int64_t> positions_buffer;
    if (initial != nullptr && !initial->empty()) {
      initial_views = initial->views();
      args.initial_state = initial_views.data();
      args.positions = positions(positions_buffer, held);
      if (grad_initial != nullptr) {
        grad_initial_views = grad_initial->views();
        args.grad_initial_state = grad_initial_views.data();
      }
    }
    if (grad_final != nullptr && !grad_final->empty()) {
      grad_final_views = grad_final->views();
      args.grad_final_state = grad_final_views.data();
    }
    require_ok(mixer_->backward(context(), args), "backward");
  }

  /// y of one step per position, from a zero state.
  std::vector<T> steps(const std::vector<T>& x, std::int64_t length, Tensors<T>& state) {
    const std::int64_t B = setup_.batch, D = setup_.d_model;
    std::vector<T> y(static_cast<std::size_t>(B * length * D)), x_t(static_cast<std::size_t>(B * D)),
        y_t(static_cast<std::size_t>(B * D));
    const auto param_views = params_.views();
    const auto state_views = state.views();
    std::vector<std::int64_t> positions_buffer;
    for (std::int64_t t = 0; t < length; ++t) {
      for (std::int64_t b = 0; b < B; ++b) {
        std::copy_n(x.begin() + (b * length + t) * D, D, x_t.begin() + b * D);
      }
      sdk::MixerStepArgs args;
      args.params = param_views.data();
      args.x = sdk::make_view(x_t.data(), dtype_of<T>, sdk::Device{}, {B, D});
      args.y = sdk::make_view(y_t.data(), dtype_of<T>, sdk::Device{}, {B, D});
      args.state = state_views.data();
      args.positions = positions(positions_buffer, t);
      require_ok(mixer_->step(context(), args), fmt::format("step at position {}", t));
      for (std::int64_t b = 0; b < B; ++b) std::copy_n(y_t.begin() + b * D, D, y.begin() + (b * length + t) * D);
    }
    return y;
  }

  MixerPtr fresh_instance() const { return make_(); }

 private:
  const PluginHost& host_;
  MixerMaker make_;
  ConformanceSetup setup_;
  MixerPtr mixer_;
  std::vector<std::int32_t> token_axes_;  ///< per state tensor, its token axis or -1
  Tensors<T> params_;
  HostContext context_;
};

template <class T>
ConformanceCheck gradient_check(MixerHarness<T>& harness, const ConformanceSetup& setup) {
  const std::int64_t B = setup.batch, L = setup.length, D = setup.d_model;
  sdk::Generator generator(setup.seed + 11);
  std::vector<T> x = normal_values<T>(generator, B * L * D, 1.0);
  const std::vector<T> grad_y = normal_values<T>(generator, B * L * D, 1.0);
  Tensors<T> initial = harness.make_state(), final = harness.make_state(), grad_final = harness.make_state();
  initial.fill_normal(generator, 0.5);
  grad_final.fill_normal(generator, 1.0);
  // A growing state holds kHeldTokens tokens (the rest of its room, unread, stays random).
  const std::int64_t held = harness.state_grows() ? kHeldTokens : 0;
  auto loss = [&]() {
    Tensors<T> out = harness.make_state();
    const std::vector<T> y = harness.forward(x, L, &initial, &out, nullptr, nullptr, held);
    return dot(y, grad_y) + dot(out, grad_final);
  };
  Tensors<T> saved = harness.make_saved(L);
  harness.forward(x, L, &initial, &final, &saved, nullptr, held);
  std::vector<T> grad_x(x.size(), T(0));
  Tensors<T> grad_params = harness.params(), grad_initial = harness.make_state();
  grad_params.zero();
  harness.backward(x, L, &initial, saved, grad_y, &grad_final, grad_x, grad_params, &grad_initial, held);

  FiniteDifferences<T> differences;
  differences.compare(x, grad_x, loss);
  for (std::size_t p = 0; p < harness.params().data.size(); ++p) {
    differences.compare(harness.params().data[p], grad_params.data[p], loss);
  }
  for (std::size_t s = 0; s < initial.data.size(); ++s) differences.compare(initial.data[s], grad_initial.data[s], loss);
  return differences.check("x, parameters, initial state");
}

template <class T>
ConformanceCheck mixer_accumulation_check(MixerHarness<T>& harness, const ConformanceSetup& setup) {
  const std::int64_t B = setup.batch, L = setup.length, D = setup.d_model;
  sdk::Generator generator(setup.seed + 12);
  const std::vector<T> x = normal_values<T>(generator, B * L * D, 1.0), grad_y = normal_values<T>(generator, B * L * D, 1.0);
  Tensors<T> saved = harness.make_saved(L);
  harness.forward(x, L, nullptr, nullptr, &saved);
  std::vector<T> once(x.size(), T(0));
  Tensors<T> params_once = harness.params();
  params_once.zero();
  harness.backward(x, L, nullptr, saved, grad_y, nullptr, once, params_once, nullptr);
  std::vector<T> twice = once;
  Tensors<T> params_twice = params_once;
  harness.backward(x, L, nullptr, saved, grad_y, nullptr, twice, params_twice, nullptr);
  return accumulation_check(once, params_once, twice, params_twice);
}

template <class T>
ConformanceCheck step_check(MixerHarness<T>& harness, const ConformanceSetup& setup) {
  const std::int64_t B = setup.batch, L = setup.length, D = setup.d_model;
  sdk::Generator generator(setup.seed + 13);
  const std::vector<T> x = normal_values<T>(generator, B * L * D, 1.0);
  const std::vector<T> whole = harness.forward(x, L, nullptr, nullptr);
  Tensors<T> state = harness.make_state();
  const std::vector<T> stepped = harness.steps(x, L, state);
  return measured("step equals forward, position by position", max_relative_error(stepped, whole),
                  Precision<T>::kSame, fmt::format("{} steps from a zero state", L));
}

/// Slices positions [begin, end) of x (B, L, D).
template <class T>
std::vector<T> positions(const std::vector<T>& x, std::int64_t B, std::int64_t L, std::int64_t D, std::int64_t begin,
                         std::int64_t end) {
  std::vector<T> out;
  for (std::int64_t b = 0; b < B; ++b) out.insert(out.end(), x.begin() + (b * L + begin) * D, x.begin() + (b * L + end) * D);
  return out;
}

/// Forward over two chunks carrying the state (the second on `second_instance` when given, from
/// a copy of the state: save and restore), against one pass.
template <class T>
ConformanceCheck chunked_check(MixerHarness<T>& harness, const ConformanceSetup& setup, bool restored) {
  const std::int64_t B = setup.batch, L = setup.length, D = setup.d_model, first = L / 2 + 1;
  sdk::Generator generator(setup.seed + 14);
  const std::vector<T> x = normal_values<T>(generator, B * L * D, 1.0);
  Tensors<T> whole_final = harness.make_state(), middle = harness.make_state(), chunk_final = harness.make_state();
  const std::vector<T> whole = harness.forward(x, L, nullptr, &whole_final);
  const std::vector<T> head = harness.forward(positions(x, B, L, D, 0, first), first, nullptr, &middle);
  MixerPtr other = restored ? harness.fresh_instance() : nullptr;
  Tensors<T> copy = middle;  // what a saved state file holds
  // As the host calls it: a tensor that holds tokens is both the initial and the final state.
  const std::vector<T> tail = harness.forward(positions(x, B, L, D, first, L), L - first, &copy, &chunk_final, nullptr,
                                              other.get(), first, true);
  for (std::size_t s = 0; s < copy.data.size(); ++s) {
    if (harness.grows(s)) chunk_final.data[s] = copy.data[s];
  }
  std::vector<T> got, expected;
  for (std::int64_t b = 0; b < B; ++b) {
    got.insert(got.end(), head.begin() + b * first * D, head.begin() + (b + 1) * first * D);
    got.insert(got.end(), tail.begin() + b * (L - first) * D, tail.begin() + (b + 1) * (L - first) * D);
  }
  expected = whole;
  for (std::size_t s = 0; s < whole_final.data.size(); ++s) {
    got.insert(got.end(), chunk_final.data[s].begin(), chunk_final.data[s].end());
    expected.insert(expected.end(), whole_final.data[s].begin(), whole_final.data[s].end());
  }
  return restored ? measured("a state restored into a new instance continues the sequence",
                             max_relative_error(got, expected), Precision<T>::kSame,
                             fmt::format("positions {}.. on a second instance from a copied state", first))
                  : measured("chunked prefill carrying the state equals one pass", max_relative_error(got, expected),
                             Precision<T>::kSame, fmt::format("chunks of {} and {}, outputs and final state", first,
                                                              L - first));
}

/// Forward, backward and step outputs with `threads` threads, as raw bytes.
template <class T>
std::vector<unsigned char> outputs_with_threads(const PluginHost& host, const MixerMaker& make,
                                                const ConformanceSetup& setup, int threads, bool backward, bool step) {
  MixerHarness<T> harness(host, make, setup, threads);
  const std::int64_t B = setup.batch, L = setup.length, D = setup.d_model;
  sdk::Generator generator(setup.seed + 15);
  const std::vector<T> x = normal_values<T>(generator, B * L * D, 1.0), grad_y = normal_values<T>(generator, B * L * D, 1.0);
  std::vector<T> all;
  Tensors<T> saved = harness.make_saved(L), final = harness.make_state();
  const std::vector<T> y = harness.forward(x, L, nullptr, &final, backward ? &saved : nullptr);
  all.insert(all.end(), y.begin(), y.end());
  for (const auto& tensor : final.data) all.insert(all.end(), tensor.begin(), tensor.end());
  if (backward) {
    std::vector<T> grad_x(x.size(), T(0));
    Tensors<T> grad_params = harness.params();
    grad_params.zero();
    harness.backward(x, L, nullptr, saved, grad_y, nullptr, grad_x, grad_params, nullptr);
    all.insert(all.end(), grad_x.begin(), grad_x.end());
    for (const auto& tensor : grad_params.data) all.insert(all.end(), tensor.begin(), tensor.end());
  }
  if (step) {
    Tensors<T> state = harness.make_state();
    const std::vector<T> stepped = harness.steps(x, L, state);
    all.insert(all.end(), stepped.begin(), stepped.end());
  }
  std::vector<unsigned char> bytes(all.size() * sizeof(T));
  std::memcpy(bytes.data(), all.data(), bytes.size());
  return bytes;
}

/// The gradient checks, in T (f64 when the mixer takes f64 parameters).
template <class T>
void run_gradient_checks(const PluginHost& host, const MixerMaker& make, const ConformanceSetup& setup,
                         std::vector<ConformanceCheck>& checks) {
  MixerHarness<T> harness(host, make, setup, 2);
  checks.push_back(attempt("gradients", [&] { return gradient_check(harness, setup); }));
  checks.push_back(attempt("accumulation", [&] { return mixer_accumulation_check(harness, setup); }));
}

/// The inference checks, in T (f32, the dtype decode runs in, when the mixer takes it).
template <class T>
void run_inference_checks(const PluginHost& host, const MixerMaker& make, const ConformanceSetup& setup,
                          const sdk::MixerCapabilities& capabilities, std::vector<ConformanceCheck>& checks) {
  MixerHarness<T> harness(host, make, setup, 2);
  if (capabilities.step) {
    checks.push_back(attempt("step equals forward", [&] { return step_check(harness, setup); }));
  } else {
    checks.push_back(skipped("step equals forward", "no step (capabilities.step is false)"));
  }
  checks.push_back(attempt("chunked prefill", [&] { return chunked_check(harness, setup, false); }));
  checks.push_back(attempt("state restore", [&] { return chunked_check(harness, setup, true); }));
}

}  // namespace

std::vector<ConformanceCheck> check_mixer(const PluginHost& host, const std::string& name, const ConformanceSetup& setup) {
  std::vector<ConformanceCheck> checks;
  nlohmann::json config = nlohmann::json::parse(setup.options, nullptr, false);
  if (!config.is_object()) throw Error(fmt::format("the options {} are not a JSON object", setup.options));
  config["d_model"] = setup.d_model;
  config["n_layer"] = 2;
  config["layer_index"] = 0;
  const MixerMaker make = [&host, &name, text = config.dump()] { return host.create_mixer(name, text); };
  const MixerPtr probe =
      created_with_checks([&](const std::string& text) { return host.create_mixer(name, text); }, config, checks);
  if (probe == nullptr) return checks;
  const std::string owner = "mixer/" + name;
  const bool declared = declarations_checked(checks, [&] {
    check_param_declarations(*probe, owner);
    const std::int32_t states = model::checked_count(probe->state_count(), owner, "state tensors");
    for (std::int32_t i = 0; i < states; ++i) {
      sdk::TensorSpec spec;
      require_ok(probe->state_spec(i, setup.batch, &spec), owner + " state_spec");
      check_shape(spec, 0, owner, "state tensor " + model::checked_name(spec, owner, "state tensor", i));
      if (spec.rank < 1 || spec.shape[0] != setup.batch) {
        throw Error(fmt::format("{} declares state tensor {} for {} rows with a first extent of {}: it must be the "
                                "number of rows",
                                owner, i, setup.batch, spec.rank < 1 ? 0 : spec.shape[0]));
      }
      model::checked_token_axis(probe, i, spec, owner, model::checked_name(spec, owner, "state tensor", i));
    }
    const std::int32_t saved = model::checked_count(probe->saved_count(), owner, "saved activations");
    for (std::int32_t i = 0; i < saved; ++i) {
      sdk::TensorSpec spec;
      require_ok(probe->saved_spec(i, setup.batch, setup.length, &spec), owner + " saved_spec");
      check_shape(spec, 0, owner, fmt::format("saved activation {}", i));
    }
  });
  if (!declared) return checks;

  sdk::MixerCapabilities capabilities;
  probe->capabilities(&capabilities);
  const bool f64 = (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kF64)) != 0;
  const bool f32 = (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kF32)) != 0;
  if (!f64 && !f32) {
    checks.push_back({"f32 or f64 parameters", false, false, "the mixer declares neither f32 nor f64 parameters"});
    return checks;
  }
  if (!capabilities.backward) {
    checks.push_back(skipped("gradients", "no backward (capabilities.backward is false)"));
  } else if (f64) {
    run_gradient_checks<double>(host, make, setup, checks);
  } else {
    run_gradient_checks<float>(host, make, setup, checks);
  }
  if (f32) {
    run_inference_checks<float>(host, make, setup, capabilities, checks);
  } else {
    run_inference_checks<double>(host, make, setup, capabilities, checks);
  }
  if (f32) {
    checks.push_back(attempt("the same bits with 1 and 2 threads", [&] {
      const bool same = outputs_with_threads<float>(host, make, setup, 1, capabilities.backward, capabilities.step) ==
                        outputs_with_threads<float>(host, make, setup, 2, capabilities.backward, capabilities.step);
      return ConformanceCheck{"the same bits with 1 and 2 threads", same, false,
                              same ? "f32 forward, final state, backward and steps are bit-identical"
                                   : "f32 outputs differ between 1 and 2 threads"};
    }));
  }
  return checks;
}

}  // namespace mambakit::conformance
