// The training loop of `mambakit train`.

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "../distributed/tree_sum.hpp"
#include "datasets.hpp"
#include "gradient_reducer.hpp"
#include "mambakit/atomic_file.hpp"
#include "mambakit/error.hpp"
#include "mambakit/optimizer.hpp"
#include "mambakit/tokenizer.hpp"
#include "mambakit/trainer.hpp"

namespace mambakit {

namespace fs = std::filesystem;

namespace {

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  return name == "byte" ? make_byte_tokenizer() : load_tokenizer_json(name);
}

/// The generator of micro-batch `micro` of optimizer step `step`: batches depend only on the
/// seed and the step, so a resumed run draws exactly what an uninterrupted one would.
std::mt19937_64 batch_rng(std::uint64_t seed, std::int64_t step, std::int64_t micro) {
  std::seed_seq sequence{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                         static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(micro)};
  return std::mt19937_64(sequence);
}

std::string format_duration(double seconds) {
  const auto total = static_cast<std::int64_t>(seconds);
  return total >= 3600 ? fmt::format("{}h{:02}m", total / 3600, total / 60 % 60)
                       : fmt::format("{}m{:02}s", total / 60, total % 60);
}

/// The data of a run: a token stream (causal LM) or labelled examples (a class-label head).
struct RunData {
  std::vector<std::int32_t> train_stream, valid_stream;
  std::vector<training::LabeledExample> train_examples, valid_examples;
  bool labeled = false;

  std::pair<TokenBatch, TrainingTargets> batch(const RunConfig& run, std::mt19937_64& rng) const {
    if (!labeled) return {training::sample_windows(train_stream, run.batch_size, run.seq_len, rng), {}};
    std::uniform_int_distribution<std::size_t> pick(0, train_examples.size() - 1);
    std::vector<std::size_t> indices(static_cast<std::size_t>(run.batch_size));
    for (auto& index : indices) index = pick(rng);
    return training::make_labeled_batch(train_examples, indices);
  }

  std::vector<std::pair<TokenBatch, TrainingTargets>> validation(const RunConfig& run) const {
    std::vector<std::pair<TokenBatch, TrainingTargets>> batches;
    if (!labeled) {
      for (auto& tokens : training::evenly_spaced_windows(valid_stream, run.eval_batches, run.batch_size, run.seq_len)) {
        batches.push_back({std::move(tokens), {}});
      }
      return batches;
    }
    for (std::size_t start = 0; start < valid_examples.size(); start += static_cast<std::size_t>(run.batch_size)) {
      std::vector<std::size_t> indices;
      for (std::size_t i = start; i < std::min(valid_examples.size(), start + static_cast<std::size_t>(run.batch_size)); ++i) {
        indices.push_back(i);
      }
      batches.push_back(training::make_labeled_batch(valid_examples, indices));
    }
    return batches;
  }
};

RunData load_data(const RunConfig& run, const Model& model, const Tokenizer& tokenizer) {
  RunData data;
  data.labeled = model.objective() == sdk::HeadObjective::kClassLabels;
  if (!data.labeled) {
    auto stream = training::tokenize_text_file(run.train_data, tokenizer);
    // Both parts of a split must hold a window: name the file, not the split, when it cannot.
    const auto needed = static_cast<std::size_t>(run.valid_data.empty() ? 2 * run.seq_len : run.seq_len);
    if (stream.size() < needed) {
      throw Error(fmt::format("{}: train_data has {} tokens; seq_len {} needs at least {}{}", run.train_data.string(),
                              stream.size(), run.seq_len, needed,
                              run.valid_data.empty() ? " (a window each for training and the held-out part)" : ""));
    }
    if (!run.valid_data.empty()) {
      data.valid_stream = training::tokenize_text_file(run.valid_data, tokenizer);
      data.train_stream = std::move(stream);
    } else {
      const auto split = static_cast<std::size_t>(static_cast<double>(stream.size()) * (1.0 - run.valid_fraction));
      data.train_stream.assign(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(split));
      data.valid_stream.assign(stream.begin() + static_cast<std::ptrdiff_t>(split), stream.end());
    }
    return data;
  }
  // Labels are class indices, or the head's class names when it names every class.
  std::vector<std::string> labels = model.class_names();
  if (std::any_of(labels.begin(), labels.end(), [](const std::string& name) { return name.empty(); })) labels.clear();
  auto examples = training::read_labeled_file(run.train_data, tokenizer, labels, run.seq_len);
  // Labels are checked against the head's classes here, before the run starts.
  const std::int64_t classes = model.class_names().size();
  auto check_labels = [&](const std::vector<training::LabeledExample>& list) {
    for (const auto& example : list) {
      if (example.label < 0 || example.label >= classes) {
        throw Error(fmt::format("{}: label {} is outside the head's {} classes [0, {})", example.where, example.label,
                                classes, classes));
      }
    }
  };
  check_labels(examples);
  if (!run.valid_data.empty()) {
    data.valid_examples = training::read_labeled_file(run.valid_data, tokenizer, labels, run.seq_len);
    check_labels(data.valid_examples);
    data.train_examples = std::move(examples);
  } else {
    const auto split = std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(examples.size()) * (1.0 - run.valid_fraction)));
    data.train_examples.assign(examples.begin(), examples.begin() + static_cast<std::ptrdiff_t>(split));
    data.valid_examples.assign(examples.begin() + static_cast<std::ptrdiff_t>(split), examples.end());
    if (data.valid_examples.empty()) data.valid_examples = data.train_examples;
  }
  return data;
}

/// Validation loss, and accuracy for labeled: batch i on rank i mod N, the per-batch figures
/// gathered and added in batch order, so any number of ranks gives one process's result.
std::pair<double, double> evaluate(Model& model, const std::vector<std::pair<TokenBatch, TrainingTargets>>& batches,
                                   Communicator& communicator) {
  const auto count = static_cast<std::int64_t>(batches.size());
  const int ranks = communicator.size();
  // Per batch: loss, correct, total.
  std::vector<double> mine(static_cast<std::size_t>(3 * count), 0.0);
  for (std::int64_t i = communicator.rank(); i < count; i += ranks) {
    const auto& [tokens, targets] = batches[static_cast<std::size_t>(i)];
    mine[static_cast<std::size_t>(3 * i)] = model.evaluate_loss(tokens, targets);
    if (targets.labels.empty()) continue;
    const FloatTensor scores = model.forward(tokens);
    const std::int64_t classes = scores.shape[1];
    for (std::int64_t b = 0; b < tokens.batch; ++b) {
      const auto begin = scores.values.begin() + b * classes;
      mine[static_cast<std::size_t>(3 * i + 1)] +=
          (std::max_element(begin, begin + classes) - begin) == targets.labels[static_cast<std::size_t>(b)];
      mine[static_cast<std::size_t>(3 * i + 2)] += 1;
    }
  }
  std::vector<double> all(static_cast<std::size_t>(ranks * 3 * count));
  communicator.all_gather(mine.data(), 3 * count, all.data());
  double loss = 0.0, correct = 0.0, total = 0.0;
  for (std::int64_t i = 0; i < count; ++i) {
    const double* figures = all.data() + (i % ranks) * 3 * count + 3 * i;
    loss += figures[0];
    correct += figures[1];
    total += figures[2];
  }
  return {loss / static_cast<double>(count), total > 0 ? correct / total : NAN};
}

void write_tokenizer(const fs::path& dir, const RunConfig& run) {
  if (run.tokenizer == "byte") {
    write_file_atomically(dir / "byte_tokenizer", [](std::ostream& out) { out << "byte-level: ids 0-255 are bytes, 256 is <|endoftext|>\n"; });
  } else {
    fs::copy_file(run.tokenizer, dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  }
}

void save_checkpoint(const fs::path& dir, const Model& model, const AdamW& optimizer, const RunConfig& run,
                     const nlohmann::json& state) {
  write_folder_atomically(dir, [&](const fs::path& staging) {
    const std::string config = to_json(model.config());
    write_file_atomically(staging / "config.json", [&](std::ostream& out) { out << config << "\n"; });
    model.write_weights(staging / "model.safetensors");
    optimizer.save(staging / "optimizer.safetensors");
    write_file_atomically(staging / "trainer_state.json", [&](std::ostream& out) { out << state.dump(2) << "\n"; });
    write_tokenizer(staging, run);
  });
}

/// Throws unless every rank holds rank 0's weights, bit for bit (compared by a 64-bit hash of
/// them): data-parallel ranks that drift apart would save one rank's model as everyone's.
void check_ranks_agree(Model& model, Communicator& communicator, std::int64_t step) {
  if (communicator.size() == 1) return;
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a over 32-bit words
  for (const auto& slice : model.parameter_slices()) {
    for (std::int64_t i = 0; i < slice.numel; ++i) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, slice.values + i, sizeof(bits));
      hash = (hash ^ bits) * 1099511628211ull;
    }
  }
  const double halves[2] = {static_cast<double>(hash >> 32), static_cast<double>(hash & 0xffffffffu)};
  std::vector<double> all(static_cast<std::size_t>(2 * communicator.size()));
  communicator.all_gather(halves, 2, all.data());
  for (int rank = 1; rank < communicator.size(); ++rank) {
    if (all[static_cast<std::size_t>(2 * rank)] != all[0] || all[static_cast<std::size_t>(2 * rank + 1)] != all[1]) {
      throw Error(fmt::format("after step {}, rank {}'s weights differ from rank 0's: the ranks run different "
                              "builds, plugins, kernels or data (see docs/TRAINING.md)",
                              step, rank));
    }
  }
}

/// output_dir/metrics.jsonl, one JSON line per step, appended as the steps end.
class MetricsLog {
 public:
  /// A fresh run starts the file empty. A resumed one keeps the records up to the
  /// checkpoint's step and cuts off the rest: the steps a killed run logged after its last
  /// checkpoint (the resumed run computes them again) and a line the kill cut short. So each
  /// step is logged once, whatever crashes came between.
  MetricsLog(const fs::path& file, bool resume, std::int64_t checkpoint_step) : file_(file) {
    if (resume && fs::exists(file)) fs::resize_file(file, records_up_to(file, checkpoint_step));
    fd_ = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0666);
    if (fd_ < 0) {
      throw Error(fmt::format("{}: cannot open the metrics for writing: {}", file.string(), std::strerror(errno)));
    }
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog() { ::close(fd_); }

  void append(const nlohmann::json& record) {
    const std::string line = record.dump() + "\n";
    for (std::size_t done = 0; done < line.size();) {
      const ssize_t written = ::write(fd_, line.data() + done, line.size() - done);
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) {
        throw Error(fmt::format("{}: cannot append the record of step {}: {}", file_.string(),
                                record.at("step").get<std::int64_t>(), std::strerror(errno)));
      }
      done += static_cast<std::size_t>(written);
    }
  }

 private:
  /// The length of the file's leading whole lines that are records of steps up to `step`.
  static std::uintmax_t records_up_to(const fs::path& file, std::int64_t step) {
    std::ifstream in(file, std::ios::binary);
    std::uintmax_t length = 0;
    std::string line;
    while (std::getline(in, line) && !in.eof()) {
      const auto record = nlohmann::json::parse(line, nullptr, false);
      if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer() ||
          record["step"].get<std::int64_t>() > step) {
        break;
      }
      length += line.size() + 1;
    }
    return length;
  }

  fs::path file_;
  int fd_ = -1;
};

/// The first parameter value that is NaN or infinite, as "NAME[INDEX] = VALUE", or "".
std::string first_non_finite_weight(Model& model) {
  for (const auto& slice : model.parameter_slices()) {
    for (std::int64_t i = 0; i < slice.numel; ++i) {
      if (!std::isfinite(slice.values[i])) return fmt::format("{}[{}] = {}", slice.name, i, slice.values[i]);
    }
  }
  return {};
}

sdk::DType parse_dtype(const std::string& name) {
  if (name == "f16") return sdk::DType::kF16;
  if (name == "bf16") return sdk::DType::kBF16;
  return sdk::DType::kF32;
}

}  // namespace

bool train(const RunConfig& run, const PluginHost& host, bool resume, const std::atomic<bool>& stop_requested,
           const TrainingLog& log) {
  const auto one_process = make_single_process_communicator();
  return train(run, host, resume, stop_requested, log, *one_process);
}

bool train(const RunConfig& run, const PluginHost& host, bool resume, const std::atomic<bool>& stop_requested,
           const TrainingLog& rank_log, Communicator& communicator) {
  const int rank = communicator.rank(), ranks = communicator.size();
  const bool leader = rank == 0;
  const TrainingLog log = [&](const std::string& line) {
    if (leader) rank_log(line);
  };
  const auto tokenizer = make_tokenizer(run.tokenizer);
  const fs::path checkpoint = run.output_dir / "checkpoint";
  // A run killed during a checkpoint write may have left a staging folder beside it.
  if (leader && resume) recover_interrupted_writes(checkpoint);
  if (ranks > 1) (void)communicator.any(false);  // the other ranks read the checkpoint after that
  ModelOptions options;
  options.kernels = run.kernels;
  options.n_threads = run.threads;
  options.seed = run.seed;
  options.weights_dtype = sdk::DType::kF32;  // training keeps f32 weights
  options.device = parse_device(run.device);
  const auto load_started = std::chrono::steady_clock::now();
  Model model = resume               ? Model::load(checkpoint, host, options)
                : !run.init_from.empty() ? Model::load(run.init_from, host, options)
                                         : Model::create(parse_model_config(run.model_json, "run config \"model\"", host), host, options);
  if (!resume && !run.head.name.empty()) model = model.with_head(host, run.head, run.seed);
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_started).count();
  if (tokenizer->vocab_size() > model.config().vocab_size) {
    throw Error(fmt::format("the tokenizer has {} ids but the model's vocab_size is {}", tokenizer->vocab_size(),
                            model.config().vocab_size));
  }
  AdamW optimizer(model, {run.beta1, run.beta2, 1e-8, run.weight_decay, run.clip_norm});
  if (resume) optimizer.load(checkpoint / "optimizer.safetensors");
  const RunData data = load_data(run, model, *tokenizer);
  const auto validation = data.validation(run);
  std::unique_ptr<MetricsLog> metrics;
  if (leader) {
    fs::create_directories(run.output_dir);
    metrics = std::make_unique<MetricsLog>(run.output_dir / "metrics.jsonl", resume, optimizer.steps());
  }
  log(fmt::format("head/{} run: {:.2f}M parameters, {} training {}, step {} of {}", model.config().head.name,
                  model.parameter_count() / 1e6,
                  data.labeled ? data.train_examples.size() : data.train_stream.size(),
                  data.labeled ? "examples" : "tokens", optimizer.steps(), run.steps));
  if (ranks > 1) {
    log(fmt::format("data parallel over {} ranks ({}): each step {} micro-batches of {}, {} per rank", ranks,
                    communicator.description(), ranks * run.grad_accum, run.batch_size, run.grad_accum));
  }

  if (run.verbose) {
    log(fmt::format("model made in {:.0f} ms, on {}, {} threads, weights {}",
                    load_ms,
                    device_name(model.options().device),
                    model.options().n_threads > 0 ? fmt::format("{}", model.options().n_threads) : std::string("all"),
                    sdk::dtype_name(model.weights_dtype())));
  }
  const auto started = std::chrono::steady_clock::now();
  std::int64_t tokens_seen = 0;
  const std::int64_t first_step = optimizer.steps();
  std::int64_t saved_step = resume ? first_step : -1;  // the step output_dir/checkpoint holds for this run
  const auto kept = [&] {
    return saved_step < 0 ? std::string("this run has written no checkpoint yet")
                          : fmt::format("{} still holds step {} (--resume continues from it)", checkpoint.string(),
                                        saved_step);
  };
  // Nothing non-finite is ever saved: the run stops before the optimizer step (a non-finite
  // loss or gradient norm) or before any save (non-finite weights after it).
  const auto diverged = [&](std::int64_t step, const std::string& what) {
    return Error(fmt::format("training diverged at step {}: {}; nothing of this step was saved, {}. Try a lower lr, "
                             "a longer warmup or clip_norm",
                             step, what, kept()));
  };
  bool stopped = false;
  // Micro-batch m of a step is rank m mod N's; each rank runs its own in the gradient tree's
  // order and the losses are added in m order, as one process with N x grad_accum would.
  const std::int64_t micro_batches = ranks * run.grad_accum;
  const std::vector<int> leaf_order = distributed::tree_leaf_order(static_cast<int>(run.grad_accum));
  training::GradientReducer reducer(model, communicator,
                                    static_cast<std::int64_t>(run.bucket_mb * 1024 * 1024 / sizeof(float)));
  std::vector<double> rank_figures(static_cast<std::size_t>(run.grad_accum + 1));
  std::vector<double> all_figures(static_cast<std::size_t>(ranks * (run.grad_accum + 1)));
  for (std::int64_t step = first_step; step < run.steps; ++step) {
    model.zero_gradients();
    double rank_tokens = 0.0;
    for (std::int64_t leaf = 0; leaf < run.grad_accum; ++leaf) {
      const std::int64_t k = leaf_order[static_cast<std::size_t>(leaf)], micro = rank + k * ranks;
      auto rng = batch_rng(run.seed, step, micro);
      auto [tokens, targets] = data.batch(run, rng);
      targets.dropout_seed = rng();
      const bool last = leaf + 1 == run.grad_accum;
      rank_figures[static_cast<std::size_t>(k)] =
          model.accumulate_gradients(tokens, targets, run.recompute, last ? reducer.ready_callback() : GradientsReady{});
      if (!last) reducer.add_micro_batch();
      rank_tokens += static_cast<double>(tokens.batch * tokens.length);
    }
    reducer.finish_step();
    rank_figures.back() = rank_tokens;
    communicator.all_gather(rank_figures.data(), run.grad_accum + 1, all_figures.data());
    double loss = 0.0;
    for (std::int64_t micro = 0; micro < micro_batches; ++micro) {
      loss += all_figures[static_cast<std::size_t>((micro % ranks) * (run.grad_accum + 1) + micro / ranks)] /
              static_cast<double>(micro_batches);
    }
    for (int r = 0; r < ranks; ++r) {
      tokens_seen += static_cast<std::int64_t>(all_figures[static_cast<std::size_t>(r * (run.grad_accum + 1) + run.grad_accum)]);
    }
    if (micro_batches > 1) {
      for (auto& slice : model.parameter_slices()) {
        for (std::int64_t i = 0; i < slice.numel; ++i) slice.gradients[i] /= static_cast<float>(micro_batches);
      }
    }
    const std::int64_t done = step + 1;
    if (!std::isfinite(loss)) throw diverged(done, fmt::format("the training loss is {}", loss));
    if (const double norm = optimizer.gradient_norm(); !std::isfinite(norm)) {
      throw diverged(done, fmt::format("the gradient norm is {} (the loss {})", norm, loss));
    }
    const double lr = cosine_learning_rate(step, run.warmup, run.steps, run.lr, run.min_lr);
    const double grad_norm = optimizer.step(lr);
    if (run.verbose && step == first_step) {
      for (const auto& choice : model.kernel_choices()) {
        log(fmt::format("kernel {}/{} for {}", choice.kind, choice.name, choice.problem));
      }
    }
    nlohmann::json record = {{"step", done}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm}};
    if (done % run.log_every == 0 || done == run.steps) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      const double rate = static_cast<double>(tokens_seen) / elapsed;
      const double eta = elapsed / static_cast<double>(done - first_step) * static_cast<double>(run.steps - done);
      std::string line = fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | ETA {}",
                                     done, run.steps, loss, lr, grad_norm, rate, format_duration(eta));
      if (ranks > 1) {
        const auto timing = reducer.take_timing();
        line += fmt::format(" | allreduce {:.0f} ms, {:.0f} ms not overlapped", timing.communication * 1e3,
                            timing.waiting * 1e3);
      }
      log(line);
    }
    if (done % run.eval_every == 0 || done == run.steps) {
      const auto [valid_loss, accuracy] = evaluate(model, validation, communicator);
      if (!std::isfinite(valid_loss)) throw diverged(done, fmt::format("the validation loss is {}", valid_loss));
      record["valid_loss"] = valid_loss;
      std::string line = fmt::format("eval step {}: valid loss {:.4f}", done, valid_loss);
      if (!std::isnan(accuracy)) {
        record["valid_accuracy"] = accuracy;
        line += fmt::format(", accuracy {:.3f}", accuracy);
      }
      log(line);
    }
    if (leader) metrics->append(record);
    stopped = communicator.any(stop_requested.load());
    const bool save = done % run.save_every == 0 || done == run.steps || stopped;
    if (save) {
      check_ranks_agree(model, communicator, done);
      // Checked where weights are written (every save, the last step's included), not after every
      // step: a non-finite weight makes the next step's loss non-finite, which stops the run.
      if (const std::string weight = first_non_finite_weight(model); !weight.empty()) {
        throw diverged(done, fmt::format("the optimizer step (lr {:.3g}, gradient norm {:.3g}) made the weights "
                                         "non-finite: {}",
                                         lr, grad_norm, weight));
      }
    }
    if (leader && save) {
      if (run.verbose) log(fmt::format("writing checkpoint at step {}", done));
      try {
        save_checkpoint(checkpoint, model, optimizer, run, {{"step", done}, {"loss", loss}});
      } catch (const std::exception& failure) {
        throw Error(fmt::format("the checkpoint of step {} was not saved: {}; {}", done, failure.what(), kept()));
      }
      saved_step = done;
      log(fmt::format("saved checkpoint at step {} to {}", done, checkpoint.string()));
    }
    if (stopped) {
      log(fmt::format("stopped at step {}; continue with --resume", done));
      return false;
    }
  }
  if (!leader) return true;
  const fs::path final_dir = run.output_dir / "model";
  if (run.verbose) log(fmt::format("writing the trained model to {}", final_dir.string()));
  try {
    write_folder_atomically(final_dir, [&](const fs::path& staging) {
      const std::string config = to_json(model.config());
      write_file_atomically(staging / "config.json", [&](std::ostream& out) { out << config << "\n"; });
      model.write_weights(staging / "model.safetensors", parse_dtype(run.save_dtype));
      write_tokenizer(staging, run);
    });
  } catch (const std::exception& failure) {
    throw Error(fmt::format("the trained model was not written: {}; {}", failure.what(), kept()));
  }
  log(fmt::format("wrote the trained model to {}", final_dir.string()));
  return true;
}

}  // namespace mambakit
