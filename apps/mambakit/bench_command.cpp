// mambakit bench: prefill and decode throughput of a named model shape with random weights,
// per scan kernel (of the kind the shape's mixer uses), batch, length and thread count. Medians of repeated runs after a warm-up.
// With --device cuda the model runs on the GPU (scan "all" means the one auto picks there);
// Model::forward, Model::step_argmax and Model::accumulate_gradients return host data, so each
// timed call has waited for the device before the clock stops (training on the GPU includes
// its gradient download and, after each AdamW step, the parameter upload: see
// Model::parameters_changed()).

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <boost/program_options/value_semantic.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/optimizer.hpp"
#include "model_shapes.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

/// A comma-separated list of integers >= `minimum`.
std::vector<std::int64_t> parse_list(const std::string& text, const char* option, std::int64_t minimum = 1) {
  std::vector<std::int64_t> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      std::size_t used = 0;
      const std::int64_t value = std::stoll(item, &used);
      if (used != item.size() || value < minimum) throw std::invalid_argument(item);
      values.push_back(value);
    } catch (const std::exception&) {
      throw Error(fmt::format("--{} takes a comma-separated list of integers >= {}, got '{}'", option, minimum, text));
    }
  }
  if (values.empty()) throw Error(fmt::format("--{} is empty", option));
  return values;
}

std::vector<std::string> parse_names(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) names.push_back(item);
  return names;
}

TokenBatch random_tokens(std::int64_t batch, std::int64_t length, std::int64_t vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(vocab - 1));
  TokenBatch tokens{batch, length, {}};
  for (std::int64_t i = 0; i < batch * length; ++i) tokens.ids.push_back(id(rng));
  return tokens;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/// The kind of the kernel that `model`'s first mixer asks for first (selective_scan for Mamba-1,
/// ssd for Mamba-2): the one whose kernels --scan compares.
std::string scan_kind(Model& model, const PluginHost& host) {
  model.select_kernels(host, {});
  model.forward(random_tokens(1, 1, 2));
  const auto choices = model.kernel_choices();
  if (choices.empty()) throw Error("bench: the model's mixers ask for no kernel, so there is no scan to compare");
  return choices.front().kind;
}

/// The kernels of `kind` that run `model` on its device (`--scan all`; e.g. not scan/cuda on
/// the CPU): those with which a one-token forward succeeds.
std::vector<std::string> runnable_kernels(Model& model, const PluginHost& host, const std::string& kind) {
  std::vector<std::string> names;
  for (const auto& name : host.kernel_names(kind)) {
    try {
      model.select_kernels(host, {{kind, name}});
      model.forward(random_tokens(1, 1, 2));
      names.push_back(name);
    } catch (const Error&) {
      // cannot run here
    }
  }
  return names;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The seconds `run` reports (it times its own measured part), for `repeat` runs after one
/// untimed warm-up run (which pages in the weights and grows the workspaces).
template <class Run>
std::vector<double> repeated(int repeat, Run&& run) {
  std::vector<double> seconds;
  for (int i = 0; i <= repeat; ++i) {
    const double measured = run();
    if (i > 0) seconds.push_back(measured);
  }
  return seconds;
}

/// One optimizer step: forward, backward and AdamW.
std::vector<double> time_training(Model& model, const TokenBatch& tokens, bool recompute, int repeat) {
  AdamW optimizer(model, {});
  return repeated(repeat, [&] {
    const auto start = std::chrono::steady_clock::now();
    model.zero_gradients();
    model.accumulate_gradients(tokens, {}, recompute);
    optimizer.step(1e-4);
    return seconds_since(start);
  });
}

/// A prefill: the whole prompt, logits for its last position.
std::vector<double> time_prefill(Model& model, const TokenBatch& tokens, int repeat) {
  return repeated(repeat, [&] {
    const auto start = std::chrono::steady_clock::now();
    model.forward(tokens, nullptr, true);
    return seconds_since(start);
  });
}

/// `steps` decode steps after an untimed prefill of `context` tokens. On the CPU each step
/// returns the logits; on a GPU each step is greedy decoding's (Model::step_argmax: the logits
/// stay on the device, the ids come back and are fed to the next step). `state_bytes` receives
/// the bytes of state a step reads (at the middle of the timed steps).
std::vector<double> time_decode(Model& model, std::int64_t batch, std::int64_t context, std::int64_t steps, int repeat,
                                double& state_bytes) {
  const TokenBatch prompt = random_tokens(batch, context, model.config().vocab_size);
  const bool on_cpu = model.options().device.type == sdk::DeviceType::kCpu;
  return repeated(repeat, [&] {
    std::vector<std::int32_t> next(static_cast<std::size_t>(batch), 1);
    InferenceState state = model.make_state(batch);
    model.forward(prompt, &state, true);
    const double held = static_cast<double>(batch) * static_cast<double>(context + steps / 2);
    state_bytes = static_cast<double>(state.bytes() - state.bytes_per_token() * static_cast<std::size_t>(batch) *
                                                          static_cast<std::size_t>(state.capacity_tokens())) +
                  static_cast<double>(state.bytes_per_token()) * held;
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t t = 0; t < steps; ++t) {
      if (on_cpu) {
        model.step(next, state);
      } else {
        next = model.step_argmax(next, state);
      }
    }
    return seconds_since(start);
  });
}

}  // namespace

int bench_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("shape", po::value<std::string>()->default_value("130m"),
                        "model shape: tiny, kjv, 130m, 370m, 790m, 1.4b, 2.8b, mamba2-130m, mamba2-370m, mamba2-1.3b, "
                        "hybrid-130m (random weights)")(
      "scan", po::value<std::string>()->default_value("all"), "the scan kernels to compare (kind selective_scan for Mamba-1 shapes, ssd for Mamba-2): all (that run on the device), or a comma-separated list")(
      "batch", po::value<std::string>()->default_value("1"), "batch sizes, comma-separated")(
      "length", po::value<std::string>()->default_value("128,512"), "prompt lengths, comma-separated")(
      "threads", po::value<std::string>()->default_value("1,2"), "thread counts, comma-separated (0: all available)")(
      "repeat", po::value<int>()->default_value(5), "timed runs per case (the median is reported)")(
      "mode", po::value<std::string>()->default_value("prefill"),
                 "prefill, decode, both (prefill and decode), or train (forward + backward + AdamW step, with and "
                 "without activation recomputation)")(
      "decode-tokens", po::value<std::int64_t>()->default_value(32), "decode steps per timed run")(
      "context", po::value<std::int64_t>()->default_value(16), "decode: tokens prefilled before the timed steps")(
      "dtype", po::value<std::string>()->default_value("f32"),
      "weight dtypes in memory, comma-separated: f32, f16, bf16, int8 (train: f32 only)")(
      "int8-group-size", po::value<std::int64_t>()->default_value(0),
      "int8: inputs per scale, 32, 64 or 128 (0: the default)")(
      "format", po::value<std::string>()->default_value("text"), "output format: text or json")(
      "verbose", "report each kernel chosen, and for which problem, on stderr");
  add_device_option(options);
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit bench [--shape tiny|kjv|130m|...|mamba2-130m|...] [--scan all|NAMES] [--batch 1,8] "
                          "[--length 128,512,2048] [--threads 1,2] [--mode prefill|decode|both|train] [--dtype f32,bf16] "
                          "[--repeat N] [--decode-tokens N] [--format text|json] [--device cpu|cuda] [--verbose] [--plugin-dir DIR]...",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  const int repeat = values["repeat"].as<int>();
  if (repeat < 1) throw Error(fmt::format("--repeat must be >= 1, got {}", repeat));
  const auto batches = parse_list(values["batch"].as<std::string>(), "batch");
  const auto lengths = parse_list(values["length"].as<std::string>(), "length");
  const sdk::Device device = device_option(values);
  const bool on_cpu = device.type == sdk::DeviceType::kCpu;
  // CPU threads do not matter on a GPU: one pass.
  const auto thread_counts = on_cpu ? parse_list(values["threads"].as<std::string>(), "threads", 0) : std::vector<std::int64_t>{1};
  const std::string shape = values["shape"].as<std::string>();
  const std::string mode = values["mode"].as<std::string>();
  if (mode != "prefill" && mode != "decode" && mode != "both" && mode != "train") {
    throw Error(fmt::format("--mode must be prefill, decode, both or train, got '{}'", mode));
  }
  const std::int64_t decode_tokens = values["decode-tokens"].as<std::int64_t>();
  if (decode_tokens < 1) throw Error(fmt::format("--decode-tokens must be >= 1, got {}", decode_tokens));
  const std::int64_t context = values["context"].as<std::int64_t>();
  if (context < 1) throw Error(fmt::format("--context must be >= 1, got {}", context));
  const ModelConfig config = model_shape(shape);
  std::vector<sdk::DType> dtypes;
  for (const auto& name : parse_names(values["dtype"].as<std::string>())) {
    dtypes.push_back(weights_dtype(name, "--dtype"));
    if (mode == "train" && dtypes.back() != sdk::DType::kF32) throw Error("--mode train needs --dtype f32");
  }

  const auto host = load_plugins(values);
  const bool all_scans = values["scan"].as<std::string>() == "all";
  auto results = nlohmann::json::array();
  bool header_printed = false;
  for (const sdk::DType dtype : dtypes) {
    ModelOptions model_settings;
    model_settings.weights_dtype = dtype;
    model_settings.int8_group_size = values["int8-group-size"].as<std::int64_t>();
    model_settings.device = device;
    Model model = Model::create(config, *host, model_settings);
    const std::string kind = scan_kind(model, *host);
    const std::vector<std::string> scans = !all_scans ? parse_names(values["scan"].as<std::string>())
                                           : on_cpu   ? runnable_kernels(model, *host, kind)
                                                      : std::vector<std::string>{"auto"};
    if (format == "text" && !header_printed) {
      fmt::print("shape {} ({:.1f}M parameters) on {}; prefill computes logits for the last position; decode runs {} "
                 "steps after a {}-token prompt; median of {} runs\n",
                 shape, model.parameter_count() / 1e6, device_name(device), decode_tokens, context, repeat);
      fmt::print("{:<8} {:<12} {:>5} {:>6} {:>7} {:>8} {:>12} {:>10}\n", "mode", "scan", "dtype", "batch", "length",
                 "threads", "tokens/s", "ms/run");
      header_printed = true;
    }
    std::set<std::string> reported_kernels;  // --verbose: each choice once
    for (const auto& scan : scans) {
      model.select_kernels(*host, {{kind, scan}});
      for (const auto threads : thread_counts) {
        model.set_threads(static_cast<int>(threads));
        for (const auto batch : batches) {
          auto record = [&](const char* case_mode, std::int64_t length, std::int64_t tokens, std::vector<double> seconds) {
            const double run_seconds = median(seconds);
            const double tokens_per_s = static_cast<double>(tokens) / run_seconds;
            results.push_back({{"mode", case_mode},
                               {"shape", shape},
                               {"scan", scan},
                               {"dtype", sdk::dtype_name(dtype)},
                               {"device", device_name(device)},
                               {"batch", batch},
                               {"length", length},
                               {"threads", threads},
                               {"runs", repeat},
                               {"median_s", run_seconds},
                               {"min_s", *std::min_element(seconds.begin(), seconds.end())},
                               {"tokens_per_s", tokens_per_s}});
            if (values.count("verbose") != 0) {
              for (const auto& choice : model.kernel_choices()) {
                const std::string line = fmt::format("kernel {}/{} for {}", choice.kind, choice.name, choice.problem);
                if (reported_kernels.insert(line).second) fmt::print(stderr, "mambakit: {}\n", line);
              }
            }
            if (format == "text") {
              fmt::print("{:<8} {:<12} {:>5} {:>6} {:>7} {:>8} {:>12.1f} {:>10.2f}\n", case_mode, scan,
                         sdk::dtype_name(dtype), batch, length, threads, tokens_per_s, run_seconds * 1e3);
              std::fflush(stdout);
            }
          };
          if (mode == "train") {
            for (const auto length : lengths) {
              const TokenBatch tokens = random_tokens(batch, length, config.vocab_size);
              for (const bool recompute : {false, true}) {
                record(recompute ? "train-rc" : "train", length, batch * length,
                       time_training(model, tokens, recompute, repeat));
                const double activation_mib = static_cast<double>(model.last_activation_bytes()) / 1048576.0;
                results.back()["recompute"] = recompute;
                results.back()["activation_mib"] = activation_mib;
                if (format == "text") fmt::print("{:>8} activations held: {:.1f} MiB\n", "", activation_mib);
              }
            }
          }
          if (mode == "prefill" || mode == "both") {
            for (const auto length : lengths) {
              const TokenBatch tokens = random_tokens(batch, length, config.vocab_size);
              record("prefill", length, batch * length, time_prefill(model, tokens, repeat));
            }
          }
          if (mode == "decode" || mode == "both") {
            double state_bytes = 0.0;
            record("decode", 1, batch * decode_tokens,
                   time_decode(model, batch, context, decode_tokens, repeat, state_bytes));
            // What a step must read at least: the weights and the state (with its KV cache).
            const double step_mb = (static_cast<double>(model.parameter_bytes()) + state_bytes) / 1e6;
            results.back()["context"] = context;
            results.back()["bytes_read_per_step_mb"] = step_mb;
            if (format == "text") {
              fmt::print("{:>8} reads per step at least {:.1f} MB (weights {:.1f}, state {:.1f}): {:.1f} GB/s\n", "",
                         step_mb, static_cast<double>(model.parameter_bytes()) / 1e6, state_bytes / 1e6,
                         step_mb * results.back()["tokens_per_s"].get<double>() / static_cast<double>(batch) / 1e3);
            }
          }
        }
      }
    }
  }
  if (format == "json") fmt::print("{}\n", results.dump(2));
  return 0;
}

}  // namespace mambakit::cli
