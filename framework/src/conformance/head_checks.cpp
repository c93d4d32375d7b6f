// Conformance of a head: gradients against finite differences, accumulation, thread-count
// determinism, and refusal of an unknown option. Dimensions: B batch, L length, D d_model.

#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "conformance_support.hpp"
#include "mambakit/sdk/head.hpp"

namespace mambakit::conformance {

namespace {

/// A head with random parameters of dtype T, called on host-owned tensors.
template <class T>
class HeadHarness {
 public:
  HeadHarness(const PluginHost& host, const std::string& name, const std::string& config,
              const ConformanceSetup& setup, int threads)
      : setup_(setup), head_(host.create_head(name, config)), context_(host, threads) {
    sdk::Generator generator(setup.seed);
    for (std::int32_t i = 0; i < head_->param_count(); ++i) {
      sdk::ParamSpec spec;
      require_ok(head_->param_spec(i, &spec), "param_spec");
      params_.add(spec.tensor);
    }
    params_.fill_normal(generator, 0.5);
    require_ok(head_->output_spec(setup.batch, setup.length, &output_spec_), "output_spec");
  }

  Tensors<T>& params() { return params_; }
  [[nodiscard]] std::int64_t output_size() const { return output_spec_.numel(); }

  std::vector<T> forward(const std::vector<T>& hidden) {
    std::vector<T> output(static_cast<std::size_t>(output_spec_.numel()));
    const auto param_views = params_.views();
    sdk::HeadForwardArgs args;
    args.params = param_views.data();
    args.hidden = hidden_view(hidden);
    args.output = sdk::make_view(output.data(), dtype_of<T>, sdk::Device{}, output_spec_.shape, output_spec_.rank);
    require_ok(head_->forward(context_.context, args), "forward");
    return output;
  }

  void backward(const std::vector<T>& hidden, const std::vector<T>& grad_output, std::vector<T>& grad_hidden,
                Tensors<T>& grad_params) {
    const auto param_views = params_.views(), grad_views = grad_params.views();
    sdk::HeadBackwardArgs args;
    args.params = param_views.data();
    args.hidden = hidden_view(hidden);
    args.grad_output = sdk::make_view(const_cast<T*>(grad_output.data()), dtype_of<T>, sdk::Device{},
                                      output_spec_.shape, output_spec_.rank);
    args.grad_hidden = hidden_view(grad_hidden);
    args.grad_params = grad_views.data();
    require_ok(head_->backward(context_.context, args), "backward");
  }

 private:
  sdk::TensorView hidden_view(const std::vector<T>& hidden) const {
    return sdk::make_view(const_cast<T*>(hidden.data()), dtype_of<T>, sdk::Device{},
                          {setup_.batch, setup_.length, setup_.d_model});
  }

  ConformanceSetup setup_;
  HeadPtr head_;
  Tensors<T> params_;
  sdk::TensorSpec output_spec_;
  HostContext context_;
};

template <class T>
std::vector<ConformanceCheck> gradient_checks(const PluginHost& host, const std::string& name, const std::string& config,
                                              const ConformanceSetup& setup) {
  HeadHarness<T> harness(host, name, config, setup, 2);
  sdk::Generator generator(setup.seed + 21);
  std::vector<T> hidden = normal_values<T>(generator, setup.batch * setup.length * setup.d_model, 1.0);
  const std::vector<T> grad_output = normal_values<T>(generator, harness.output_size(), 1.0);
  std::vector<T> grad_hidden(hidden.size(), T(0));
  Tensors<T> grad_params = harness.params();
  grad_params.zero();
  harness.backward(hidden, grad_output, grad_hidden, grad_params);

  auto loss = [&] { return dot(harness.forward(hidden), grad_output); };
  FiniteDifferences<T> differences;
  differences.compare(hidden, grad_hidden, loss);
  for (std::size_t p = 0; p < harness.params().data.size(); ++p) {
    differences.compare(harness.params().data[p], grad_params.data[p], loss);
  }
  std::vector<T> twice = grad_hidden;
  Tensors<T> params_twice = grad_params;
  harness.backward(hidden, grad_output, twice, params_twice);
  return {differences.check("hidden states, parameters"),
          accumulation_check(grad_hidden, grad_params, twice, params_twice)};
}

std::vector<unsigned char> outputs_with_threads(const PluginHost& host, const std::string& name,
                                                const std::string& config, const ConformanceSetup& setup, int threads,
                                                bool backward) {
  HeadHarness<float> harness(host, name, config, setup, threads);
  sdk::Generator generator(setup.seed + 22);
  const std::vector<float> hidden = normal_values<float>(generator, setup.batch * setup.length * setup.d_model, 1.0);
  std::vector<float> all = harness.forward(hidden);
  if (backward) {
    const std::vector<float> grad_output = normal_values<float>(generator, harness.output_size(), 1.0);
    std::vector<float> grad_hidden(hidden.size(), 0.0f);
    Tensors<float> grad_params = harness.params();
    grad_params.zero();
    harness.backward(hidden, grad_output, grad_hidden, grad_params);
    all.insert(all.end(), grad_hidden.begin(), grad_hidden.end());
    for (const auto& tensor : grad_params.data) all.insert(all.end(), tensor.begin(), tensor.end());
  }
  std::vector<unsigned char> bytes(all.size() * sizeof(float));
  std::memcpy(bytes.data(), all.data(), bytes.size());
  return bytes;
}

}  // namespace

std::vector<ConformanceCheck> check_head(const PluginHost& host, const std::string& name, const ConformanceSetup& setup) {
  std::vector<ConformanceCheck> checks;
  const nlohmann::json options = nlohmann::json::parse(setup.options, nullptr, false);
  if (!options.is_object()) throw Error(fmt::format("the options {} are not a JSON object", setup.options));
  // The host keys (head_config_json), then the given options.
  nlohmann::json config = {{"d_model", setup.d_model}, {"vocab_size", 16}, {"tie_embeddings", false}};
  config.update(options);
  const HeadPtr probe =
      created_with_checks([&](const std::string& text) { return host.create_head(name, text); }, config, checks);
  if (probe == nullptr) return checks;
  const std::string owner = "head/" + name;
  const bool declared = declarations_checked(checks, [&] {
    check_param_declarations(*probe, owner);
    sdk::TensorSpec output;
    require_ok(probe->output_spec(setup.batch, setup.length, &output), owner + " output_spec");
    check_shape(output, 0, owner, "its output");
  });
  if (!declared) return checks;

  sdk::HeadCapabilities capabilities;
  probe->capabilities(&capabilities);
  const bool f64 = (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kF64)) != 0;
  const bool f32 = (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kF32)) != 0;
  const std::string text = config.dump();
  if (!capabilities.backward) {
    checks.push_back(skipped("gradients", "no backward (capabilities.backward is false)"));
  } else {
    auto run = [&]() -> std::vector<ConformanceCheck> {
      try {
        return f64 ? gradient_checks<double>(host, name, text, setup) : gradient_checks<float>(host, name, text, setup);
      } catch (const std::exception& error) {
        return {{"gradients", false, false, error.what()}};
      }
    };
    for (auto& check : run()) checks.push_back(std::move(check));
  }
  if (f32) {
    checks.push_back(attempt("the same bits with 1 and 2 threads", [&] {
      const bool same = outputs_with_threads(host, name, text, setup, 1, capabilities.backward) ==
                        outputs_with_threads(host, name, text, setup, 2, capabilities.backward);
      return ConformanceCheck{"the same bits with 1 and 2 threads", same, false,
                              same ? "f32 forward and backward are bit-identical"
                                   : "f32 outputs differ between 1 and 2 threads"};
    }));
  }
  return checks;
}

}  // namespace mambakit::conformance
