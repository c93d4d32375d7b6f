#pragma once
/// \file
/// Model: a task model assembled from a config, embedding -> blocks (RMSNorm, mixer,
/// residual) -> final RMSNorm -> head, with mixers, head and scan backend from plugins.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mambakit/config.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/tensor.hpp"

namespace mambakit {

class SafetensorsFile;
struct SafetensorsEntry;

namespace model {
struct StateAccess;
}

/// Inputs per scale of int8 weights unless a checkpoint or ModelOptions says otherwise
/// (docs/BENCHMARKS.md, "Int8 weights", has the measurements behind it).
inline constexpr std::int64_t kDefaultInt8GroupSize = 128;

/// How a model runs.
struct ModelOptions {
  /// The kernel of each kind by name (e.g. {"selective_scan", "fused"}); a kind not named, or
  /// named "auto", takes per problem the kernel with the highest score.
  std::map<std::string, std::string> kernels;
  int n_threads = 0;          ///< CPU threads; 0 = OpenMP's default
  std::uint64_t seed = 0;     ///< seed of the random initialisation (create() only)
  /// The dtype the weights are held in: f32, f16 or bf16 (arithmetic accumulates in f32
  /// either way; the norms stay f32), or kQ8: the linear weights (those components declare
  /// ParamSpec::linear_weight) as int8 with f32 scales, everything else f32. Unset: as stored
  /// in the checkpoint (load(): kQ8 for an int8 checkpoint, f32 when it stores f32 or mixed
  /// types) or f32 (create()). Training needs f32.
  std::optional<sdk::DType> weights_dtype;
  /// kQ8 only: inputs per scale (32, 64 or 128); 0 takes the checkpoint's (config.json
  /// "quantization") or else kDefaultInt8GroupSize.
  std::int64_t int8_group_size = 0;
  /// kQ8 only: whether the head's linear weight (the LM head; tied, also the embedding) is
  /// int8 too, or stays f32.
  bool int8_head = true;
  /// Where the model runs: the CPU, or a CUDA device (a copy of the parameters, the
  /// activations and the inference state in its memory; inference and training, whose
  /// gradients and optimizer stay on the host: see parameter_slices()). A CUDA model needs a
  /// build with CUDA, a device, and components and a scan backend that declare CUDA; Model
  /// creation throws otherwise, naming what is missing.
  sdk::Device device{};
  /// CUDA only: Model::step captures each batch size's decode step in a CUDA graph (after one
  /// uncaptured warm-up step) and replays it. false runs every step uncaptured.
  bool cuda_graphs = true;
  /// Loading weights that hold NaN or Inf: false (the default) throws naming each tensor and
  /// its count; true loads them, and Model::nonfinite_parameters() lists them.
  bool allow_nonfinite = false;
};

/// A parameter that holds non-finite values, and how many.
struct NonfiniteParameter {
  std::string name;
  std::int64_t count = 0;
};

/// Parses "cpu", "cuda" or "cuda:INDEX"; throws mambakit::Error naming the text otherwise.
sdk::Device parse_device(const std::string& text);
/// "cpu", "cuda:0", ...
std::string device_name(sdk::Device device);

/// A parameter as the model holds it.
struct ParameterInfo {
  std::string name;  ///< Hugging Face name, e.g. "backbone.layers.0.mixer.A_log"
  std::vector<std::int64_t> shape;
  bool weight_decay = true;
};

/// The recurrent state of every layer for a batch (the seed's InferenceParams): per layer the
/// tensors its mixer declares (for S6: the last d_conv conv inputs and the SSM state), f32,
/// plus how many tokens each row holds. Most tensors have a size independent of that count; a
/// tensor its mixer declares with a token axis (an attention layer's KV cache) holds one entry
/// per token, and grows as the rows do.
class InferenceState {
 public:
  InferenceState();
  ~InferenceState();
  /// A copy holds the values on the host (a CUDA state's device copy is not duplicated).
  InferenceState(const InferenceState& other);
  InferenceState& operator=(const InferenceState& other);
  InferenceState(InferenceState&&) noexcept;
  InferenceState& operator=(InferenceState&&) noexcept;

  /// Rows the state is for.
  [[nodiscard]] std::int64_t batch() const { return batch_; }
  /// Tokens processed since the last reset: the most any row holds.
  [[nodiscard]] std::int64_t seqlen_offset() const;
  /// Per row, the tokens it holds (rows differ after copy_row()).
  [[nodiscard]] const std::vector<std::int64_t>& positions() const;
  /// Tokens the tensors with a token axis have room for now (0 when there are none).
  [[nodiscard]] std::int64_t capacity_tokens() const;
  /// Bytes the state grows by per token of every row (0 for a model of constant state).
  [[nodiscard]] std::size_t bytes_per_token() const;
  /// Makes row `row` equal to row `source_row` of `source`, a state of the same model (any
  /// batch): its tensors and its position. Grows this state when `source` holds more tokens.
  void copy_row(const InferenceState& source, std::int64_t source_row, std::int64_t row);
  /// Number of layers.
  [[nodiscard]] std::int64_t n_layers() const;
  /// State tensor `index` of layer `layer`, and its name (e.g. "conv_state"). For a state a
  /// CUDA model has used, the values are copied from the device first; after the non-const
  /// overload the host values are the current ones (the model copies them back before its next
  /// call).
  [[nodiscard]] const FloatTensor& tensor(std::int64_t layer, std::int64_t index) const;
  [[nodiscard]] FloatTensor& tensor(std::int64_t layer, std::int64_t index);
  [[nodiscard]] const std::string& tensor_name(std::int64_t layer, std::int64_t index) const;
  [[nodiscard]] std::int64_t tensor_count(std::int64_t layer) const;
  /// Total bytes of all state tensors.
  [[nodiscard]] std::size_t bytes() const;
  /// Zeroes every tensor and the offset (the seed's reset_cache()).
  void reset();

  /// A summary (the seed's get_cache_info()): layers, tensors, bytes, bytes_per_token,
  /// capacity_tokens, batch, seqlen_offset and positions, as a JSON object's text.
  [[nodiscard]] std::string info_json() const;

  /// Writes the state to a safetensors file (atomically), so a long prompt is processed once
  /// and continued later (tensors with a token axis as far as the rows hold tokens); load()
  /// reads it back into a state of the same model and batch, naming the file and tensor on any
  /// mismatch.
  void save(const std::filesystem::path& file) const;
  void load(const std::filesystem::path& file);

 private:
  friend struct model::StateAccess;
  /// The tensors, and the copy a model on an accelerator keeps (framework-internal).
  struct Storage;

  /// The storage, made on first use (a moved-from state gets a new, empty one).
  Storage& storage() const;

  std::int64_t batch_ = 0;
  mutable std::unique_ptr<Storage> storage_;
};

/// A parameter's values and accumulated gradient, for optimizers. Pointers stay valid while
/// the model lives.
struct ParameterSlice {
  std::string name;
  float* values = nullptr;
  float* gradients = nullptr;
  std::int64_t numel = 0;
  bool weight_decay = true;
};

/// Called during accumulate_gradients() with indices into parameter_slices() whose gradients
/// that pass will not change again: the head's, the final norm's, then each layer's from the
/// last to the first, then the embedding's; each parameter once, at the last stage that adds
/// to it (a tied LM head comes with the embedding). A CUDA model reports them all at the end,
/// when its gradients reach the host.
using GradientsReady = std::function<void(const std::vector<int>& parameter_indices)>;

/// What a training step needs besides the tokens.
struct TrainingTargets {
  std::vector<std::int32_t> labels;  ///< objective kClassLabels: one label per row
  /// Seed of the batch's dropout mask (a head that declares input_dropout > 0): the same seed
  /// gives the same mask, so a resumed run repeats the uninterrupted one exactly.
  std::uint64_t dropout_seed = 0;
};

class Model {
 public:
  /// A model with randomly initialised parameters (ModelOptions::seed). Throws mambakit::Error
  /// when a component is missing (listing the available ones) or rejects its config.
  static Model create(const ModelConfig& config, const PluginHost& host, const ModelOptions& options = {});

  /// A model folder: config.json (mambakit's or Hugging Face's) and model.safetensors.
  /// Throws naming the file and the tensor for a missing, extra or misshaped tensor.
  static Model load(const std::filesystem::path& dir, const PluginHost& host, const ModelOptions& options = {});

  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  [[nodiscard]] const ModelConfig& config() const;
  /// What the head's output is trained for (its declared objective).
  [[nodiscard]] sdk::HeadObjective objective() const;
  /// For a head with objective kClassLabels: the name of each output class, "" where the head
  /// names none. Empty for other heads.
  [[nodiscard]] std::vector<std::string> class_names() const;

  /// This model with its head replaced by `head` (created through `host`): every parameter the
  /// backbone owns (the embedding, norms and mixers, and so a tied head's weights) is copied,
  /// the new head's own parameters are initialised from `seed`. How an LM becomes a classifier
  /// to fine-tune, or a feature extractor. The options and device are this model's.
  [[nodiscard]] Model with_head(const PluginHost& host, const ComponentChoice& head, std::uint64_t seed) const;
  [[nodiscard]] const ModelOptions& options() const;
  [[nodiscard]] std::int64_t parameter_count() const;
  /// Bytes the parameters occupy in memory (2 per element when held in 16 bits).
  [[nodiscard]] std::size_t parameter_bytes() const;
  /// The dtype the weights are held in (see ModelOptions::weights_dtype).
  [[nodiscard]] sdk::DType weights_dtype() const;
  [[nodiscard]] std::vector<ParameterInfo> parameters() const;
  /// The values of parameter `name` (row-major), or throws when there is none.
  [[nodiscard]] std::vector<float> parameter_values(const std::string& name) const;

  /// Replaces the parameters with those of a safetensors file in Hugging Face layout (converted
  /// to the dtype the model holds them in). Throws naming the file and tensor for a missing,
  /// misshapen or unexpected tensor, and for NaN or Inf unless ModelOptions::allow_nonfinite;
  /// after an error the parameters are unspecified.
  void load_weights(const std::filesystem::path& file);

  /// The parameters that held NaN or Inf when the weights were last loaded (with
  /// ModelOptions::allow_nonfinite; empty otherwise).
  [[nodiscard]] const std::vector<NonfiniteParameter>& nonfinite_parameters() const;

  /// Switches the kernel choice (see ModelOptions::kernels) for later calls. Throws naming an
  /// unknown kind or kernel.
  void select_kernels(const PluginHost& host, const std::map<std::string, std::string>& kernels);
  /// Switches the CPU thread count (0: OpenMP's default) for later calls.
  void set_threads(int n_threads);

  /// A kernel the model's components were given, for a problem they described.
  struct KernelChoice {
    std::string kind;
    std::string name;
    std::string problem;  ///< dtype, device, the kind's sizes and needs, e.g. "f32 cpu [1, 64, 512, 16]"
  };
  /// The distinct kernel choices made so far by the calls since the last select_kernels(), in
  /// the order first made: what `auto` chose.
  [[nodiscard]] std::vector<KernelChoice> kernel_choices() const;

  /// A zero state for `batch` rows.
  [[nodiscard]] InferenceState make_state(std::int64_t batch) const;

  /// Runs the model over `tokens` and returns the head's output (LM: logits (B, L, V)).
  /// With `state`, starts from it and leaves the final state in it (offset += L); its batch
  /// must match. Token ids must be in [0, vocab_size). With `last_position_only`, the head
  /// sees only each row's last hidden state (LM: logits (B, 1, V)), as prefill needs.
  FloatTensor forward(const TokenBatch& tokens, InferenceState* state = nullptr, bool last_position_only = false);

  /// Forward and backward over one batch; ADDS the gradient of the loss to the parameters'
  /// gradients (see zero_gradients()) and returns the loss, which the head's objective gives:
  /// next-token, the mean cross-entropy over the B*(L-1) targets (within tokens.lengths when
  /// given); class labels, the mean cross-entropy of `targets.labels`. The head's declared
  /// input_dropout is applied to the hidden states it sees (inverted dropout: kept values
  /// scaled by 1/(1-p); mask from targets.dropout_seed). A head without an objective throws. With `recompute`, only each layer's input is kept and
  /// the layer's forward is recomputed during backward (activation checkpointing). On a CUDA
  /// model forward and backward run on the device, which then adds its gradients to the host's.
  /// Training needs f32 weights (throws otherwise). With `ready`, backward reports the
  /// parameters whose gradients it has finished, as it finishes them (see GradientsReady), so
  /// that a caller can start summing them across processes while backward goes on.
  double accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets = {}, bool recompute = false,
                              const GradientsReady& ready = {});

  /// Sets every gradient to zero (allocating them on first use).
  void zero_gradients();

  /// Every parameter's values and gradients (gradients allocated on first call). The host
  /// values are the master copy on every device: on a CUDA model the next device call uploads
  /// them, so writes made before it are seen. Writes made later through slices kept from an
  /// earlier call (as an optimizer does) need parameters_changed().
  std::vector<ParameterSlice> parameter_slices();

  /// Tells the model that parameter values were written through kept slices: a CUDA model
  /// uploads them before its next device call (one upload however many calls follow). AdamW
  /// calls it after each step. No effect on a CPU model.
  void parameters_changed();

  /// The accumulated gradient of parameter `name`.
  [[nodiscard]] std::vector<float> gradient_values(const std::string& name) const;

  /// Bytes of activations the last accumulate_gradients() held at its peak.
  [[nodiscard]] std::size_t last_activation_bytes() const;

  /// Holds the linear weights (those the components declare ParamSpec::linear_weight) as int8
  /// from now on, `group_size` inputs per scale (32, 64 or 128), the head's too unless `head`
  /// is false; the rest stays f32. `progress(done, total)`, in weights, after each matrix. The
  /// model must hold f32 weights and be on the CPU; for inference (save(dir, kQ8) writes it).
  void quantize(std::int64_t group_size, bool head,
                const std::function<void(std::int64_t, std::int64_t)>& progress = {});

  /// Writes config.json and model.safetensors (weights as f32, f16 or bf16, or, from a model
  /// holding int8 weights, kQ8: each int8 weight as `<name>` I8 and `<name>_scale` F32, the
  /// rest f32, with config.json's "quantization" naming the scheme) into `dir`, atomically: a
  /// crash leaves either the previous folder or the new one.
  void save(const std::filesystem::path& dir, sdk::DType weights_dtype = sdk::DType::kF32) const;

  /// Writes only the weights, in Hugging Face layout, to a safetensors file (atomically).
  void write_weights(const std::filesystem::path& file, sdk::DType weights_dtype = sdk::DType::kF32) const;

  /// Mean loss over one batch without touching the gradients (see accumulate_gradients()).
  double evaluate_loss(const TokenBatch& tokens, const TrainingTargets& targets = {});

  /// One decode step: token `ids[b]` for each row b of `state`, through every mixer's step
  /// path; returns the head's output for that position (LM: logits (B, 1, V)) and advances
  /// the state by one token. Equal to forward() over the whole sequence, position by position.
  FloatTensor step(const std::vector<std::int32_t>& ids, InferenceState& state);

  /// step(), then each row's argmax over its first vocab_size logits (ties go to the lowest
  /// id, as greedy sampling does). On a CUDA model the logits stay on the device and only the
  /// B ids are copied back; ids equal to the previous call's result are not copied up again.
  std::vector<std::int32_t> step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state);

  /// The model's components, parameters and executors' state; framework-internal (defined in
  /// framework/src/model/model_impl.hpp).
  struct Impl;

 private:
  void write_int8_weights(const std::filesystem::path& file) const;
  explicit Model(std::unique_ptr<Impl> impl);
  /// load_weights() from an open checkpoint; `file` names it in errors.
  void load_weights(const SafetensorsFile& checkpoint, const std::filesystem::path& file);
  /// Whether `entry`, which no parameter takes, is a copy of the embedding that a tied model's
  /// checkpoint may carry for its head.
  bool is_tied_copy(const SafetensorsFile& checkpoint, const SafetensorsEntry& entry) const;
  std::unique_ptr<Impl> impl_;
};

/// Backward-compatible name of the causal LM (the seed's `Mamba`).
using Mamba = Model;

}  // namespace mambakit
