// Model assembly, weights, and inference over the backbone passes (backbone_passes.hpp).

#include "mambakit/model.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "mambakit/error.hpp"
#include "mambakit/safetensors.hpp"
#include "backbone_passes.hpp"
#include "declaration_checks.hpp"
#include "model_impl.hpp"
#include "state_storage.hpp"

namespace mambakit {


namespace {

constexpr const char* kEmbeddingName = "backbone.embeddings.weight";
constexpr const char* kOldEmbeddingName = "backbone.embedding.weight";

/// A component's full parameter name: its prefix + the declared name, or the declared name
/// without its leading '/' when absolute.
std::string full_name(const std::string& prefix, const char* declared) {
  return declared[0] == '/' ? std::string(declared + 1) : prefix + declared;
}

sdk::ParamSpec framework_param(const char* name, std::initializer_list<std::int64_t> shape, sdk::Init init,
                               bool weight_decay) {
  sdk::ParamSpec spec;
  sdk::set_tensor_spec(spec.tensor, name, sdk::DType::kF32, shape);
  spec.init = init;
  spec.weight_decay = weight_decay;
  return spec;
}

/// Declares a norm's parameters, `name`.weight (ones) and for LayerNorm `name`.bias (zeros).
model::NormParams declare_norm(model::ParameterStore& store, NormKind kind, const std::string& name, std::int64_t d_model,
                               const char* owner) {
  model::NormParams norm;
  const std::string weight = name + ".weight";
  norm.weight = store.declare(weight, framework_param(weight.c_str(), {d_model}, {sdk::InitKind::kOnes}, false), owner);
  if (kind == NormKind::kLayer) {
    const std::string bias = name + ".bias";
    norm.bias = store.declare(bias, framework_param(bias.c_str(), {d_model}, {sdk::InitKind::kZeros}, false), owner);
  }
  return norm;
}

/// The dtype a checkpoint's weights are stored in when all its floating-point tensors share
/// f16 or bf16; f32 otherwise.
sdk::DType stored_dtype(const SafetensorsFile& checkpoint) {
  std::optional<sdk::DType> common;
  for (const auto& entry : checkpoint.entries()) {
    if (common && *common != entry.dtype) return sdk::DType::kF32;
    common = entry.dtype;
  }
  return common && (*common == sdk::DType::kF16 || *common == sdk::DType::kBF16) ? *common : sdk::DType::kF32;
}

/// Declares the parameters of `component` (a mixer or the head) in `store`, its declared names
/// after `prefix`; returns their indices. Throws naming `owner` for a failed param_spec() and
/// for a count, a name or a shape the host cannot hold.
template <class Component>
std::vector<int> declare_parameters(model::ParameterStore& store, const Component& component,
                                    const std::string& prefix, const std::string& owner) {
  const std::int32_t count = model::checked_count(component.param_count(), owner, "parameters");
  std::vector<int> indices;
  for (std::int32_t i = 0; i < count; ++i) {
    sdk::ParamSpec spec;
    check(component.param_spec(i, &spec), owner);
    const std::string name = full_name(prefix, model::checked_name(spec.tensor, owner, "parameter", i).c_str());
    const int index = store.declare(name, spec, owner);
    if (std::find(indices.begin(), indices.end(), index) != indices.end()) {
      throw Error(fmt::format("{} declares parameter {} twice", owner, name));
    }
    indices.push_back(index);
  }
  return indices;
}

}  // namespace

sdk::Device parse_device(const std::string& text) {
  if (text == "cpu") return {};
  if (text == "cuda") return {sdk::DeviceType::kCuda, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.size() <= 9 &&
      std::all_of(text.begin() + 5, text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return {sdk::DeviceType::kCuda, std::stoi(text.substr(5))};
  }
  throw Error(fmt::format("device '{}' is invalid: use cpu, cuda or cuda:INDEX", text));
}

std::string device_name(sdk::Device device) {
  if (device.type == sdk::DeviceType::kCpu) return "cpu";
  return fmt::format("{}:{}", sdk::device_type_name(device.type), device.index);
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::create(const ModelConfig& config, const PluginHost& host, const ModelOptions& options) {
  validate(config);
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->options = options;
  const ModelConfig& backbone = impl->config;
  const std::int64_t D = backbone.d_model;

  impl->embedding = impl->store.declare(
      kEmbeddingName,
      framework_param(kEmbeddingName, {backbone.padded_vocab_size(), D}, {sdk::InitKind::kNormal, 0.0, 0.02}, true),
      "the embedding");
  // Layer i: h += mixer(norm(h)), then with an MLP h += mlp(norm2(h)).
  auto add_block = [&](std::int64_t layer, bool is_mixer) {
    const std::string prefix = fmt::format("backbone.layers.{}.", layer);
    const ComponentChoice& choice = is_mixer ? backbone.mixer_of_layer(layer) : backbone.mlp;
    model::SubBlock block;
    block.layer = static_cast<std::size_t>(layer);
    block.is_mixer = is_mixer;
    block.owner = fmt::format("layer {} {}/{}", layer, is_mixer ? "mixer" : "mlp", choice.name);
    block.norm = declare_norm(impl->store, backbone.norm, prefix + (is_mixer ? "norm" : "norm2"), D, "a block norm");
    try {
      block.component = host.create_mixer(choice.name, is_mixer ? mixer_config_json(config, layer)
                                                                 : mlp_config_json(config, layer));
    } catch (const Error& error) {
      throw Error(fmt::format("layer {}: {}", layer, error.what()));
    }
    const sdk::Mixer& component = *block.component;
    const std::int32_t states = model::checked_count(component.state_count(), block.owner, "state tensors");
    if (!is_mixer && states != 0) {
      throw Error(fmt::format("{} declares {} state tensors; the MLP of a block must declare none", block.owner, states));
    }
    model::checked_count(component.saved_count(), block.owner, "saved activations");
    block.params = declare_parameters(impl->store, component, prefix + (is_mixer ? "mixer." : "mlp."), block.owner);
    impl->blocks.push_back(std::move(block));
  };
  for (std::int64_t layer = 0; layer < backbone.n_layer; ++layer) {
    add_block(layer, true);
    if (!backbone.mlp.name.empty()) add_block(layer, false);
  }
  impl->n_layers = static_cast<std::size_t>(backbone.n_layer);
  impl->norm_f = declare_norm(impl->store, backbone.norm, "backbone.norm_f", D, "the final norm");
  impl->head = host.create_head(config.head.name, head_config_json(config));
  impl->head->capabilities(&impl->head_capabilities);
  const std::string head_owner = fmt::format("head/{}", config.head.name);
  const double dropout = impl->head_capabilities.input_dropout;
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    throw Error(fmt::format("{} declares an input dropout of {}, outside [0, 1)", head_owner, dropout));
  }
  impl->head_params = declare_parameters(impl->store, *impl->head, "", head_owner);
  impl->check_param_dtype(sdk::DType::kF32);  // the host creates and trains them as f32
  // A CUDA model's components are checked against its device where the device is set up
  // (make_cuda_ops), after the build and the driver are known to offer one.
  if (options.device.type == sdk::DeviceType::kCpu) impl->check_device_support(options.device);
  impl->store.allocate();
  impl->store.initialize(options.seed);
  impl->initialize_components(options.seed);
  impl->hold_weights_as(options.weights_dtype.value_or(sdk::DType::kF32));
  Model model(std::move(impl));
  model.select_kernels(host, options.kernels);
  model.set_threads(options.n_threads);
  model.impl_->attach_device(options.device);
  return model;
}

Model Model::load(const std::filesystem::path& dir, const PluginHost& host, const ModelOptions& options) {
  if (!std::filesystem::is_directory(dir)) {
    throw Error(fmt::format("{}: the model folder does not exist or is not a folder", dir.string()));
  }
  // Loaded as f32, then converted once when the weights are to be held in 16 bits.
  ModelOptions as_f32 = options;
  as_f32.weights_dtype = sdk::DType::kF32;
  as_f32.device = sdk::Device{};  // moved once the weights are final
  Model model = create(load_model_config(dir / "config.json", host), host, as_f32);
  const std::filesystem::path file = dir / "model.safetensors";
  const SafetensorsFile checkpoint = SafetensorsFile::open(file);
  Impl& impl = *model.impl_;
  const std::vector<int> stored_int8 = impl.parameters_stored_int8(checkpoint, file);
  const sdk::DType dtype = options.weights_dtype.value_or(stored_int8.empty() ? stored_dtype(checkpoint) : sdk::DType::kQ8);
  impl.options.weights_dtype = options.weights_dtype;
  impl.options.int8_group_size = options.int8_group_size;
  if (dtype == sdk::DType::kQ8 && !stored_int8.empty()) {
    impl.options.int8_group_size = impl.config.quantization.group_size;  // the stored scales' groups
    impl.quantize_linear_weights(stored_int8);
    model.load_weights(checkpoint, file);
  } else {
    model.load_weights(checkpoint, file);
    impl.config.quantization = {};
    impl.hold_weights_as(dtype);
  }
  impl.attach_device(options.device);
  return model;
}

void Model::load_weights(const std::filesystem::path& file) {
  load_weights(SafetensorsFile::open(file), file);
  impl_->device_parameters_stale = true;
}

bool Model::is_tied_copy(const SafetensorsFile& checkpoint, const SafetensorsEntry& entry) const {
  // A tied checkpoint may still carry the tied head's own tensor, a copy of the embedding.
  if (!impl_->config.tie_embeddings) return false;
  const auto& embedding = impl_->store.entries()[static_cast<std::size_t>(impl_->embedding)];
  if (entry.shape != embedding.shape) return false;
  std::vector<float> values(static_cast<std::size_t>(embedding.numel));
  checkpoint.read_f32(entry, values.data());
  return values == impl_->store.values_f32(impl_->embedding);
}

void Model::load_weights(const SafetensorsFile& checkpoint, const std::filesystem::path& file) {
  std::vector<bool> used(checkpoint.entries().size(), false);
  std::vector<NonfiniteParameter> nonfinite;
  auto mark_used = [&](const SafetensorsEntry* entry) {
    used[static_cast<std::size_t>(entry - checkpoint.entries().data())] = true;
  };
  const auto& entries = impl_->store.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& parameter = entries[i];
    const SafetensorsEntry* stored = checkpoint.find(parameter.name);
    if (stored == nullptr && parameter.name == kEmbeddingName) stored = checkpoint.find(kOldEmbeddingName);
    if (stored == nullptr) {
      throw Error(fmt::format("{}: missing tensor {} (the model expects shape {})", file.string(), parameter.name,
                              model::format_shape(parameter.shape)));
    }
    if (stored->shape != parameter.shape) {
      throw Error(fmt::format("{}: tensor {} has shape {} but the model expects {}", file.string(), stored->name,
                              model::format_shape(stored->shape), model::format_shape(parameter.shape)));
    }
    const float* read = nullptr;
    std::vector<float> values;
    if (stored->dtype == sdk::DType::kI8) {
      const SafetensorsEntry& scales = impl_->stored_scales(checkpoint, *stored, file);
      mark_used(&scales);
      values = impl_->read_int8(checkpoint, *stored, scales, static_cast<int>(i), file);
      read = values.data();
    } else if (parameter.dtype == sdk::DType::kF32) {
      checkpoint.read_f32(*stored, impl_->store.data(static_cast<int>(i)));
      read = impl_->store.data(static_cast<int>(i));
    } else {
      values.resize(static_cast<std::size_t>(parameter.numel));
      checkpoint.read_f32(*stored, values.data());
      impl_->store.assign(static_cast<int>(i), values.data());
      read = values.data();
    }
    const auto finite = std::count_if(read, read + parameter.numel, [](float v) { return std::isfinite(v); });
    if (finite != parameter.numel) nonfinite.push_back({stored->name, parameter.numel - finite});
    mark_used(stored);
  }
  for (std::size_t i = 0; i < used.size(); ++i) {
    const auto& entry = checkpoint.entries()[i];
    if (used[i] || is_tied_copy(checkpoint, entry)) continue;
    throw Error(fmt::format("{}: unexpected tensor {} with shape {}: the model has no such parameter", file.string(),
                            entry.name, model::format_shape(entry.shape)));
  }
  if (!nonfinite.empty() && !impl_->options.allow_nonfinite) {
    std::vector<std::string> named;
    for (const auto& parameter : nonfinite) named.push_back(fmt::format("{} ({} values)", parameter.name, parameter.count));
    throw Error(fmt::format("{}: NaN or Inf in {}; a model with them computes NaN (load it anyway with "
                            "--allow-nonfinite)",
                            file.string(), fmt::join(named, ", ")));
  }
  impl_->nonfinite = std::move(nonfinite);
}

const std::vector<NonfiniteParameter>& Model::nonfinite_parameters() const { return impl_->nonfinite; }

const ModelConfig& Model::config() const { return impl_->config; }

sdk::HeadObjective Model::objective() const { return impl_->head_capabilities.objective; }

std::vector<std::string> Model::class_names() const {
  std::vector<std::string> names;
  if (objective() != sdk::HeadObjective::kClassLabels) return names;
  const std::string owner = fmt::format("head/{}", impl_->config.head.name);
  sdk::TensorSpec output;
  check(impl_->head->output_spec(1, 1, &output), owner);
  model::checked_numel(output, 0, owner, "its output");
  const std::int64_t classes = output.rank == 2 ? output.shape[1] : 0;
  for (std::int32_t c = 0; c < classes; ++c) {
    char name[sdk::kMaxNameLength] = {};
    if (abi_minor(impl_->head) >= 1) {
      check(impl_->head->class_name(c, name, sdk::kMaxNameLength), owner);
    }
    names.emplace_back(name, strnlen(name, sdk::kMaxNameLength));
  }
  return names;
}

Model Model::with_head(const PluginHost& host, const ComponentChoice& head, std::uint64_t seed) const {
  ModelConfig config = impl_->config;
  config.head = head;
  ModelOptions options = impl_->options;
  options.seed = seed;
  options.weights_dtype = sdk::DType::kF32;
  options.device = sdk::Device{};  // moved once the weights are final
  Model model = create(config, host, options);
  const auto& own_head = model.impl_->head_params;
  for (std::size_t i = 0; i < model.impl_->store.entries().size(); ++i) {
    const int index = static_cast<int>(i);
    const bool head_only = index != model.impl_->embedding &&
                           std::find(own_head.begin(), own_head.end(), index) != own_head.end();
    if (head_only) continue;
    const std::string& name = model.impl_->store.entries()[i].name;
    const std::vector<float> values = parameter_values(name);
    model.impl_->store.assign(index, values.data());
  }
  model.impl_->hold_weights_as(impl_->store.weights_dtype());
  model.impl_->attach_device(impl_->options.device);
  return model;
}
void Model::quantize(std::int64_t group_size, bool head, const std::function<void(std::int64_t, std::int64_t)>& progress) {
  if (impl_->options.device.type != sdk::DeviceType::kCpu) {
    throw Error(fmt::format("int8 weights run on the CPU only, not on {}", device_name(impl_->options.device)));
  }
  if (impl_->store.weights_dtype() != sdk::DType::kF32) {
    throw Error(fmt::format("quantize needs a model that holds f32 weights, not {} (load it with dtype f32)",
                            sdk::dtype_name(impl_->store.weights_dtype())));
  }
  impl_->options.int8_group_size = group_size;
  impl_->options.int8_head = head;
  impl_->quantize_linear_weights(impl_->linear_weights_to_quantize(), progress);
}

const ModelOptions& Model::options() const { return impl_->options; }
std::int64_t Model::parameter_count() const {
  std::int64_t total = 0;
  for (const auto& entry : impl_->store.entries()) total += entry.numel;
  return total;
}
std::size_t Model::parameter_bytes() const { return impl_->store.bytes(); }
sdk::DType Model::weights_dtype() const { return impl_->store.weights_dtype(); }

std::vector<ParameterInfo> Model::parameters() const {
  std::vector<ParameterInfo> list;
  for (const auto& entry : impl_->store.entries()) list.push_back({entry.name, entry.shape, entry.weight_decay});
  return list;
}

std::vector<float> Model::parameter_values(const std::string& name) const {
  const auto* entry = impl_->store.find(name);
  if (entry == nullptr) throw Error(fmt::format("the model has no parameter {}", name));
  return impl_->store.values_f32(static_cast<int>(entry - impl_->store.entries().data()));
}

void Model::select_kernels(const PluginHost& host, const std::map<std::string, std::string>& kernels) {
  impl_->kernels = std::make_unique<plugins::KernelRegistry>(host, kernels);
  ++impl_->kernel_selection;
  impl_->options.kernels = kernels;
}

void Model::set_threads(int n_threads) {
  impl_->options.n_threads = n_threads;
  impl_->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
}

std::vector<Model::KernelChoice> Model::kernel_choices() const {
  std::vector<KernelChoice> list;
  for (const auto& record : impl_->kernels->choices()) list.push_back({record.kind, record.name, record.problem});
  return list;
}

InferenceState Model::make_state(std::int64_t batch) const {
  if (batch < 1) throw Error(fmt::format("an inference state needs at least one row, not {}", batch));
  std::vector<std::vector<FloatTensor>> tensors(impl_->n_layers);
  std::vector<std::vector<std::string>> names(impl_->n_layers);
  std::vector<std::vector<std::int32_t>> token_axes(impl_->n_layers);
  for (const model::SubBlock& block : impl_->blocks) {
    if (!block.is_mixer) continue;
    const sdk::Mixer& mixer = *block.component;
    const std::string& owner = block.owner;
    for (std::int32_t i = 0; i < mixer.state_count(); ++i) {
      sdk::TensorSpec spec;
      check(mixer.state_spec(i, batch, &spec), owner);
      const std::string name = model::checked_name(spec, owner, "state tensor", i);
      model::checked_numel(spec, 0, owner, "state tensor " + name);
      std::vector<std::int64_t> shape(spec.shape, spec.shape + spec.rank);
      if (shape.empty() || shape[0] != batch) {
        throw Error(fmt::format("{} declares state tensor {} for {} rows with shape {}: its first extent must be the "
                                "number of rows",
                                owner, name, batch, model::format_shape(shape)));
      }
      const std::int32_t axis = model::checked_token_axis(block.component, i, spec, owner, name);
      tensors[block.layer].emplace_back(std::move(shape));
      names[block.layer].emplace_back(name);
      token_axes[block.layer].push_back(axis);
    }
  }
  return model::StateAccess::make(batch, std::move(tensors), std::move(names), std::move(token_axes));
}

FloatTensor Model::forward(const TokenBatch& tokens, InferenceState* state, bool last_position_only) {
  Impl& impl = *impl_;
  impl.check_tokens(tokens);
  if (state != nullptr && state->batch() != tokens.batch) {
    throw Error(fmt::format("the inference state is for {} rows but the input has {}", state->batch(), tokens.batch));
  }
  return model::forward_pass(impl, impl.device_ops(), tokens, state, last_position_only);
}

FloatTensor Model::step(const std::vector<std::int32_t>& ids, InferenceState& state) {
  Impl& impl = *impl_;
  impl.check_step_ids(ids, state.batch());
  return model::step_pass(impl, impl.device_ops(), ids, state);
}

std::vector<std::int32_t> Model::step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state) {
  Impl& impl = *impl_;
  impl.check_step_ids(ids, state.batch());
  std::vector<std::int32_t> result;
  model::step_pass(impl, impl.device_ops(), ids, state, &result);
  return result;
}

}  // namespace mambakit
