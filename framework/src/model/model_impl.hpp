#pragma once
// Model's private state, shared by the files that implement it (assembly and inference in
// model.cpp, training in model_training.cpp).

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "backbone_kernels.hpp"
#include "cpu_ops.hpp"
#include "device_ops.hpp"
#include "heap_workspace.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "parameter_store.hpp"
#include "../plugins/kernel_registry.hpp"
#include "views.hpp"

namespace mambakit {

namespace model {

inline sdk::TensorView view_of(FloatTensor& tensor) { return model::contiguous_view(tensor.values.data(), tensor.shape); }

inline void check(const sdk::Status& status, const std::string& what) {
  if (!status.ok()) throw Error(fmt::format("{}: {}", what, status.message));
}

}  // namespace model

using model::check;
using model::view_of;

namespace model {

/// A norm's parameters: its weight, and its bias for LayerNorm (-1 for RMSNorm).
struct NormParams {
  int weight = -1;
  int bias = -1;
};

/// A residual sub-block of a layer, h += component(norm(h)): the layer's mixer, then its MLP
/// when the config has one (any component of the mixer interface; an MLP declares no state).
struct SubBlock {
  std::size_t layer = 0;
  bool is_mixer = true;  ///< the layer's mixer, whose state is the layer's; else its MLP
  std::string owner;     ///< "layer 3 mixer/s6", "layer 3 mlp/gated_mlp": how messages name it
  MixerPtr component;
  NormParams norm;
  std::vector<int> params;  ///< store index of each declared parameter
};

}  // namespace model

using model::NormParams;
using model::SubBlock;

struct Model::Impl {
  ModelConfig config;
  ModelOptions options;
  std::vector<NonfiniteParameter> nonfinite;  // see Model::nonfinite_parameters()
  int n_threads = 1;
  std::vector<SubBlock> blocks;  ///< in order: per layer its mixer, then its MLP
  std::size_t n_layers = 0;
  HeadPtr head;
  sdk::HeadCapabilities head_capabilities;  ///< what the head declared at creation
  std::unique_ptr<plugins::KernelRegistry> kernels = std::make_unique<plugins::KernelRegistry>();
  std::uint64_t kernel_selection = 0;  ///< counts select_kernels() calls
  model::ParameterStore store;
  int embedding = -1;
  NormParams norm_f;
  std::vector<int> head_params;
  model::HeapWorkspace workspace;
  std::size_t last_activation_bytes = 0;
  /// The device copy of the parameters is older than the host values: set by
  /// parameter_slices() (writable pointers go out), parameters_changed() and load_weights(),
  /// cleared by device_ops().
  bool device_parameters_stale = false;
  /// Where the backbone passes run (backbone_passes.hpp): the CPU, or the accelerator of
  /// options.device. Last: destroyed first, before the components and parameters it refers to.
  std::unique_ptr<model::DeviceOps> ops = std::make_unique<model::CpuOps>(*this);


  std::vector<sdk::TensorView> views(const std::vector<int>& indices) const {
    std::vector<sdk::TensorView> result;
    result.reserve(indices.size());
    for (int index : indices) result.push_back(store.view(index));
    return result;
  }

  /// The context of a CPU call: the model's threads, workspace and kernel choice.
  sdk::Context context() {
    sdk::Context ctx;
    ctx.n_threads = n_threads;
    ctx.workspace = &workspace;
    ctx.kernels = kernels.get();
    return ctx;
  }

  /// The model's DeviceOps, its parameter copy first made current (uploaded when the host
  /// values are newer: device_parameters_stale).
  model::DeviceOps& device_ops() {
    if (device_parameters_stale) {
      ops->sync_parameters();
      device_parameters_stale = false;
    }
    return *ops;
  }

  /// Throws naming the head, or else the first mixer, whose capabilities do not include `device`.
  void check_device_support(sdk::Device device) const {
    const std::uint32_t bit = sdk::device_bit(device.type);
    const char* hint = device.type == sdk::DeviceType::kCpu ? "" : "; use device cpu";
    sdk::HeadCapabilities head_capabilities;
    head->capabilities(&head_capabilities);
    if ((head_capabilities.devices & bit) == 0) {
      throw Error(fmt::format("head/{} does not run on {} (its plugin declares no {} support){}", config.head.name,
                              device_name(device), sdk::device_type_name(device.type), hint));
    }
    for (const SubBlock& block : blocks) {
      sdk::MixerCapabilities capabilities;
      block.component->capabilities(&capabilities);
      if ((capabilities.devices & bit) == 0) {
        throw Error(fmt::format("{} does not run on {} (its plugin declares no {} support){}", block.owner,
                                device_name(device), sdk::device_type_name(device.type), hint));
      }
    }
    if (config.norm == NormKind::kLayer && device.type != sdk::DeviceType::kCpu) {
      throw Error(fmt::format("{}: LayerNorm blocks (\"norm\": \"layer\") run on the CPU only in this version{}",
                              config.source, hint));
    }
  }

  /// Moves the model to `device` (the CPU: nothing to do), once its parameters are final.
  void attach_device(sdk::Device device) {
    options.device = device;
    if (device.type == sdk::DeviceType::kCpu) return;
    if (store.weights_dtype() == sdk::DType::kQ8) {
      throw Error(fmt::format("int8 weights run on the CPU only, not on {} (this version has no int8 CUDA kernels); "
                              "use --dtype f16 or bf16 there",
                              device_name(device)));
    }
    if (device.type != sdk::DeviceType::kCuda) {
      throw Error(fmt::format("device {} is not supported", device_name(device)));
    }
    ops = model::make_cuda_ops(*this, device);
  }

  /// Runs each component's initialize() over its parameters (seeded per component from `seed`),
  /// for those it declared InitKind::kComponent. A plugin built for ABI minor 0 has no
  /// initialize(): declaring such a parameter is then an error naming it.
  void initialize_components(std::uint64_t seed) {
    auto run = [&](auto& component, const std::vector<int>& indices, const std::string& owner, std::uint64_t stream) {
      const bool wanted = std::any_of(indices.begin(), indices.end(), [&](int index) {
        return store.entries()[static_cast<std::size_t>(index)].init.kind == sdk::InitKind::kComponent;
      });
      if (!wanted) return;
      if (abi_minor(component) < 1) {
        throw Error(fmt::format("{} declares parameters it initialises itself, but its plugin is built for ABI minor "
                                "{}, which has no initialize(); rebuild it against this SDK",
                                owner, abi_minor(component)));
      }
      const auto params = views(indices);
      sdk::InitArgs args;
      args.params = params.data();
      args.seed = model::component_seed(seed, stream);
      check(component->initialize(args), owner + " initialize");
    };
    const std::uint64_t first_stream = store.entries().size();  // after the parameters' own streams
    for (std::size_t b = 0; b < blocks.size(); ++b) run(blocks[b].component, blocks[b].params, blocks[b].owner, first_stream + b);
    run(head, head_params, fmt::format("head/{}", config.head.name), first_stream + blocks.size());
  }

  /// Holds the parameters as `dtype` from now on (f32 leaves them as they are; the norms stay
  /// f32 either way). Throws unless every mixer and the head can take parameters of `dtype`.
  void hold_weights_as(sdk::DType dtype) {
    if (dtype == sdk::DType::kF32) return;
    if (dtype == sdk::DType::kQ8) {
      quantize_linear_weights(linear_weights_to_quantize());
      return;
    }
    check_param_dtype(dtype);
    store.hold_as(dtype, norm_parameters());
    options.weights_dtype = dtype;
  }

  /// The parameters of every norm (block norms and the final norm), which stay f32.
  [[nodiscard]] std::vector<int> norm_parameters() const {
    std::vector<int> indices;
    auto add = [&](const NormParams& norm) {
      indices.push_back(norm.weight);
      if (norm.bias >= 0) indices.push_back(norm.bias);
    };
    for (const SubBlock& block : blocks) add(block.norm);
    add(norm_f);
    return indices;
  }

  /// The parameters an int8 model holds as int8: those declared linear weights, less the
  /// head's unless options.int8_head.
  [[nodiscard]] std::vector<int> linear_weights_to_quantize() const {
    std::vector<int> indices;
    for (std::size_t i = 0; i < store.entries().size(); ++i) {
      const int index = static_cast<int>(i);
      const bool head = std::find(head_params.begin(), head_params.end(), index) != head_params.end();
      if (store.entries()[i].linear_weight && (options.int8_head || !head)) indices.push_back(index);
    }
    return indices;
  }

  /// Holds the parameters in `indices` as int8 (the group size from the options, else the
  /// config, else the default), the rest f32; the config then records the scheme.
  void quantize_linear_weights(const std::vector<int>& indices,
                               const std::function<void(std::int64_t, std::int64_t)>& progress = {}) {
    auto owns_one = [&](const std::vector<int>& params) {
      return std::any_of(params.begin(), params.end(),
                         [&](int p) { return std::find(indices.begin(), indices.end(), p) != indices.end(); });
    };
    for (const SubBlock& block : blocks) {
      sdk::MixerCapabilities capabilities;
      block.component->capabilities(&capabilities);
      if (owns_one(block.params) && (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kQ8)) == 0) {
        throw Error(fmt::format("{} declares linear weights but cannot run them as int8", block.owner));
      }
    }
    sdk::HeadCapabilities capabilities;
    head->capabilities(&capabilities);
    if (owns_one(head_params) && (capabilities.param_dtypes & sdk::dtype_bit(sdk::DType::kQ8)) == 0) {
      throw Error(fmt::format("head/{} declares a linear weight but cannot run it as int8", config.head.name));
    }
    std::int64_t group_size = options.int8_group_size;
    if (group_size == 0) group_size = config.quantization.group_size;
    if (group_size == 0) group_size = kDefaultInt8GroupSize;
    store.quantize(indices, group_size, progress);
    options.weights_dtype = sdk::DType::kQ8;
    config.quantization = {"int8", group_size};
  }

  /// The parameters `checkpoint` stores as int8 (I8 with an F32 `<name>_scale`); throws
  /// naming the file when it stores some but config.json declares no int8 quantization, or
  /// when one of them is not a linear weight.
  [[nodiscard]] std::vector<int> parameters_stored_int8(const SafetensorsFile& checkpoint,
                                                        const std::filesystem::path& file) const;
  /// The scales of int8 tensor `values`: `<name>_scale`, F32, (rows, groups). Throws naming the
  /// file and the tensor otherwise.
  [[nodiscard]] const SafetensorsEntry& stored_scales(const SafetensorsFile& checkpoint,
                                                      const SafetensorsEntry& values,
                                                      const std::filesystem::path& file) const;
  /// Sets parameter `index` from int8 `values` and their `scales` (checked: values in
  /// [-127, 127], scales finite and >= 0), as int8 when it is held so, dequantized otherwise;
  /// returns its f32 values (for the caller's checks).
  std::vector<float> read_int8(const SafetensorsFile& checkpoint, const SafetensorsEntry& values,
                               const SafetensorsEntry& scales, int index, const std::filesystem::path& file);

  /// Throws unless every mixer and the head can take parameters of `dtype`.
  void check_param_dtype(sdk::DType dtype) const {
    const char* hint = dtype == sdk::DType::kF32 ? " (its plugin declares no f32 support)" : "; use --dtype f32";
    for (const SubBlock& block : blocks) {
      sdk::MixerCapabilities capabilities;
      block.component->capabilities(&capabilities);
      if ((capabilities.param_dtypes & sdk::dtype_bit(dtype)) == 0) {
        throw Error(fmt::format("{} cannot hold its parameters as {}{}", block.owner, sdk::dtype_name(dtype), hint));
      }
    }
    sdk::HeadCapabilities capabilities;
    head->capabilities(&capabilities);
    if ((capabilities.param_dtypes & sdk::dtype_bit(dtype)) == 0) {
      throw Error(fmt::format("head/{} cannot hold its parameters as {}{}", config.head.name, sdk::dtype_name(dtype),
                              hint));
    }
  }

  /// Throws unless the head declares an objective the host can train (next-token, labels).
  void check_trainable_objective() const {
    const auto objective = head_capabilities.objective;
    if (objective != sdk::HeadObjective::kNextToken && objective != sdk::HeadObjective::kClassLabels) {
      throw Error(fmt::format("head/{} declares no training objective (its output is features); train a model whose "
                              "head predicts next tokens or class labels",
                              config.head.name));
    }
  }

  /// Throws unless `ids` holds one valid token per row of a decode step over `batch` rows.
  void check_step_ids(const std::vector<std::int32_t>& ids, std::int64_t batch) const {
    if (static_cast<std::int64_t>(ids.size()) != batch) {
      throw Error(fmt::format("a decode step needs one token per row: {} rows, {} tokens", batch, ids.size()));
    }
    check_tokens(TokenBatch{batch, 1, ids});
  }

  void check_tokens(const TokenBatch& tokens) const {
    if (!tokens.lengths.empty()) {
      if (static_cast<std::int64_t>(tokens.lengths.size()) != tokens.batch) {
        throw Error(fmt::format("{} lengths given for {} rows", tokens.lengths.size(), tokens.batch));
      }
      for (std::size_t b = 0; b < tokens.lengths.size(); ++b) {
        if (tokens.lengths[b] < 1 || tokens.lengths[b] > tokens.length) {
          throw Error(fmt::format("row {} has length {}, outside [1, {}]", b, tokens.lengths[b], tokens.length));
        }
      }
    }
    if (tokens.batch < 1 || tokens.length < 1) {
      throw Error(fmt::format("the input is empty: {} rows of {} tokens", tokens.batch, tokens.length));
    }
    if (static_cast<std::int64_t>(tokens.ids.size()) != tokens.batch * tokens.length) {
      throw Error(fmt::format("the input holds {} ids, but {} rows of {} tokens need {}", tokens.ids.size(),
                              tokens.batch, tokens.length, tokens.batch * tokens.length));
    }
    const std::int64_t vocab = config.vocab_size;
    for (std::size_t i = 0; i < tokens.ids.size(); ++i) {
      if (tokens.ids[i] < 0 || tokens.ids[i] >= vocab) {
        throw Error(fmt::format("token id {} at row {}, position {} is outside the vocabulary [0, {})", tokens.ids[i],
                                static_cast<std::int64_t>(i) / tokens.length,
                                static_cast<std::int64_t>(i) % tokens.length, vocab));
      }
    }
  }
};

}  // namespace mambakit
