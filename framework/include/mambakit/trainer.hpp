#pragma once
/// \file
/// The training loop behind `mambakit train`: a run config, data, AdamW with warmup + cosine,
/// gradient accumulation, validation, atomic checkpoints, bit-identical resume, and a clean
/// stop on request (Ctrl-C).

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "mambakit/communicator.hpp"
#include "mambakit/config.hpp"
#include "mambakit/plugin_host.hpp"

namespace mambakit {

/// A training run, as read from its JSON file (see docs/TRAINING.md for every key).
struct RunConfig {
  std::string model_json;        ///< the model config (any format parse_model_config reads), unless init_from is set
  std::filesystem::path init_from;  ///< start from this model folder instead
  /// With init_from: replace its head with this one (newly initialised; the backbone's weights
  /// are kept), e.g. to fine-tune an LM into a classifier. An empty name keeps the head.
  ComponentChoice head;
  std::filesystem::path train_data;  ///< text file (causal LM) or JSONL/CSV of (text, label)
  std::filesystem::path valid_data;  ///< optional; otherwise the last valid_fraction of train_data
  double valid_fraction = 0.05;
  std::string tokenizer = "byte";   ///< "byte" or a tokenizer.json path
  std::int64_t seq_len = 256;
  std::int64_t batch_size = 16;
  std::int64_t grad_accum = 1;
  std::int64_t steps = 1000;
  double lr = 3e-3;
  double min_lr = 3e-4;
  std::int64_t warmup = 100;
  double weight_decay = 0.1;
  double clip_norm = 1.0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  std::int64_t eval_every = 200;
  std::int64_t eval_batches = 8;
  std::int64_t save_every = 500;
  std::int64_t log_every = 10;
  std::filesystem::path output_dir = "runs/run";
  std::uint64_t seed = 1;
  int threads = 0;
  bool recompute = false;
  /// Data-parallel runs: the gradients are summed across ranks in buckets of this many MiB,
  /// each sent as soon as backward has finished its parameters.
  double bucket_mb = 16.0;
  std::string save_dtype = "f32";  ///< weights of the final model: f32, f16 or bf16
  /// The kernel of each kind by name ("kernels": {"KIND": "NAME"}); see ModelOptions::kernels.
  std::map<std::string, std::string> kernels;
  /// Where the model trains: "cpu", "cuda" or "cuda:INDEX" (`mambakit train --device`). On a
  /// CUDA device forward and backward run there; the gradients and AdamW stay on the host.
  std::string device = "cpu";
  /// Also log the threads, dtype and device, and after the first step each kernel chosen for
  /// its problem (`mambakit train --verbose`; not a key of the JSON).
  bool verbose = false;
};

/// Parses a run config; unknown keys and bad values are errors naming the key and value.
RunConfig parse_run_config(const std::string& json_text, const std::string& source);

/// Applies "key=value" overrides (value in JSON, or a bare string) to a run config's JSON text.
std::string apply_overrides(const std::string& json_text, const std::vector<std::string>& overrides,
                            const std::string& source = "the run config");

/// One line of progress or evaluation, for the caller to print.
using TrainingLog = std::function<void(const std::string& line)>;

/// Runs (or, with `resume`, continues from output_dir/checkpoint) the training run. Checks
/// `stop_requested` after every step: when set, saves a checkpoint and returns false.
/// Returns true when all steps ran. The final model goes to output_dir/model, one line per step
/// to output_dir/metrics.jsonl (started afresh, or with `resume` cut back to the checkpoint's
/// step, so a run killed at any moment and resumed logs each step once).
///
/// Throws Error, naming the step, when a step's training loss, gradient norm or validation loss
/// or the weights after its update are not finite; nothing of that step is saved, so no
/// checkpoint or final model holds non-finite weights. A failed save (a full disk) throws
/// Error naming the file and the reason, and leaves the previous checkpoint as it was.
///
/// With a communicator of N ranks (data parallel), every rank runs this with the same config:
/// rank r computes micro-batches r, r + N, ... of each step's N x grad_accum, the gradients are
/// summed across ranks (communicator.sum(), in buckets of bucket_mb while backward goes on),
/// and every rank takes the same AdamW step. Rank 0 alone logs and writes the metrics, the
/// checkpoints and the final model; validation batches are shared out and their losses
/// gathered. The result equals one process's run with grad_accum N x grad_accum, bit for bit
/// when N and grad_accum are powers of two (see docs/TRAINING.md).
bool train(const RunConfig& config, const PluginHost& host, bool resume, const std::atomic<bool>& stop_requested,
           const TrainingLog& log, Communicator& communicator);

/// train() in one process.
bool train(const RunConfig& config, const PluginHost& host, bool resume, const std::atomic<bool>& stop_requested,
           const TrainingLog& log);

}  // namespace mambakit
