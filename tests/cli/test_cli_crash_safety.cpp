// `mambakit train` under failure: killed with SIGKILL at 24 moments chosen by a seeded
// generator (during steps, during checkpoint writes, during the final save) and resumed each
// time, a run ends with the losses and the weights of an uninterrupted run, bit for bit; a full
// disk during a checkpoint is an error naming the file and the reason, and leaves the previous
// checkpoint whole; a run that diverges stops with a message naming the step and what was not
// finite, and saves nothing of it.

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using mambakit::test::read_bytes;
using mambakit::test::run_command;

namespace {

constexpr int kSteps = 40;
constexpr int kSaveEvery = 2;

/// A run folder with a corpus and the config of a tiny run: 40 steps of a few milliseconds, a
/// checkpoint every second step, an evaluation every tenth, each step logged.
fs::path make_run(const std::string& name, const fs::path& output_dir = {}) {
  const fs::path dir = mambakit::test::scratch_dir(name);
  const fs::path corpus = mambakit::test::write_corpus(dir, "And the evening and the morning were the day", 300, 9);
  std::ofstream(dir / "run.json") << fmt::format(R"({{
    "model": {{"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257}},
    "train_data": "{}", "tokenizer": "byte", "seq_len": 32, "batch_size": 2, "steps": {},
    "lr": 0.01, "warmup": 2, "eval_every": 10, "eval_batches": 2, "save_every": {}, "log_every": 1,
    "output_dir": "{}", "seed": 5, "threads": 1}})",
                                                corpus.string(), kSteps, kSaveEvery,
                                                (output_dir.empty() ? dir / "run" : output_dir).string());
  return dir;
}

std::vector<std::string> train_argv(const fs::path& dir, bool resume) {
  std::vector<std::string> argv = {MAMBAKIT_CLI_PATH, "train", "--config", (dir / "run.json").string(), "--verbose"};
  if (resume) argv.push_back("--resume");
  return argv;
}

std::string train_command(const fs::path& dir, bool resume, const std::string& extra = "") {
  return fmt::format("{} train --config {} --verbose{} {}", MAMBAKIT_CLI_PATH, (dir / "run.json").string(),
                     resume ? " --resume" : "", extra);
}

/// The step a checkpoint folder holds, or -1 when there is none.
long checkpoint_step(const fs::path& checkpoint) {
  if (!fs::exists(checkpoint / "trainer_state.json")) return -1;
  return nlohmann::json::parse(std::ifstream(checkpoint / "trainer_state.json")).at("step").get<long>();
}

/// The steps and the training losses of a metrics.jsonl, line by line.
std::vector<std::pair<long, double>> logged_losses(const fs::path& metrics) {
  std::vector<std::pair<long, double>> records;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line);
    records.emplace_back(record.at("step").get<long>(), record.at("loss").get<double>());
  }
  return records;
}

/// The hidden temporaries and staging folders in `dir` (".NAME.tmp-PID...", ".NAME.old-PID").
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos) names.push_back(name);
  }
  return names;
}

/// Whether every value of every tensor of a safetensors file is finite.
bool all_finite(const fs::path& file) {
  const auto stored = mambakit::SafetensorsFile::open(file);
  for (const auto& entry : stored.entries()) {
    for (const float value : stored.read_f32(entry.name)) {
      if (!std::isfinite(value)) return false;
    }
  }
  return true;
}

/// Where one kill lands: `delay` seconds after the process prints `marker` (after its start for
/// an empty marker).
struct KillPlan {
  std::string kind, marker;
  double delay = 0;
};

/// A kill for a process that resumes from step `start`, on a machine where the whole run takes
/// `run_seconds`: at a random moment from its start, in a step, in a checkpoint write, or in
/// the final model's write. Delays into a write are log-uniform from 10 us to 50 ms, so that
/// many land inside it on a fast disk and on a slow one.
KillPlan plan_kill(std::mt19937_64& rng, long start, bool final_save, double run_seconds) {
  auto uniform = [&](double low, double high) { return std::uniform_real_distribution<double>(low, high)(rng); };
  auto into_write = [&] { return std::exp(uniform(std::log(1e-5), std::log(5e-2))); };
  const int kind = std::uniform_int_distribution<int>(0, 3)(rng);
  if (final_save || (start == kSteps && kind != 0)) {
    return {"final model write", "writing the trained model", into_write()};
  }
  const long next_save = (start / kSaveEvery + 1) * kSaveEvery;
  switch (kind) {
    case 0:
      return {"any moment", "", uniform(0.0, 0.3 * run_seconds)};
    case 1: {
      const long step = std::min<long>(kSteps, start + std::uniform_int_distribution<long>(1, 4)(rng));
      return {"during a step", fmt::format("step {}/{} |", step, kSteps), uniform(0.0, 2 * run_seconds / kSteps)};
    }
    default: {
      const long step = std::min<long>(kSteps, next_save + kSaveEvery * std::uniform_int_distribution<long>(0, 1)(rng));
      return {"checkpoint write", fmt::format("writing checkpoint at step {}\n", step), into_write()};
    }
  }
}

/// Unmounts a mount point when the test ends, however it ends.
class Unmount {
 public:
  explicit Unmount(fs::path point) : point_(std::move(point)) {}
  Unmount(const Unmount&) = delete;
  Unmount& operator=(const Unmount&) = delete;
  ~Unmount() { ::umount2(point_.c_str(), MNT_DETACH); }

 private:
  fs::path point_;
};

}  // namespace

TEST_CASE("mambakit train killed with SIGKILL 24 times and resumed each time reproduces an uninterrupted run bit for bit") {
  const auto started = std::chrono::steady_clock::now();
  const fs::path reference = make_run("crash_reference");
  const auto straight = run_command(train_command(reference, false));
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO(straight.errors);
  REQUIRE(straight.exit_code == 0);
  const auto expected = logged_losses(reference / "run" / "metrics.jsonl");
  REQUIRE(expected.size() == kSteps);
  const std::string expected_metrics = read_bytes(reference / "run" / "metrics.jsonl");

  const fs::path dir = make_run("crash_killed");
  const fs::path run = dir / "run", checkpoint = run / "checkpoint";
  std::mt19937_64 rng(20261204);
  constexpr int kKills = 24;
  int kills = 0, kills_in_checkpoint_writes = 0, kills_in_final_writes = 0, staging_left = 0, kept_previous = 0;
  std::string history;
  bool checkpointed = false;
  // Processes that end before their kill (the run was further along than the plan) are not
  // counted; the last two kills go to the final model's write.
  for (int attempt = 0; kills < kKills && attempt < 4 * kKills; ++attempt) {
    // Once a checkpoint has been written, --resume must always find one; before, start afresh.
    const long start = checkpoint_step(checkpoint);
    checkpointed = checkpointed || start >= 0;
    const bool resume = checkpointed;
    const KillPlan plan = plan_kill(rng, std::max(start, 0L), kills >= kKills - 2, run_seconds);
    const auto result = mambakit::test::kill_after(train_argv(dir, resume), plan.marker, plan.delay, 120.0);
    INFO(history);
    INFO(result.errors);
    REQUIRE((result.exit_code == 0 || result.exit_code == 128 + SIGKILL));
    history += fmt::format("attempt {}: from step {}, {} ({:.5f} s after \"{}\"): exit {}\n", attempt, start,
                           plan.kind, plan.delay, plan.marker, result.exit_code);
    // Whatever each process logged, up to where it was killed, is the uninterrupted run's log.
    if (fs::exists(run / "metrics.jsonl")) {
      const std::string metrics = read_bytes(run / "metrics.jsonl");
      CHECK(expected_metrics.compare(0, metrics.size(), metrics) == 0);
    }
    if (result.exit_code == 0) continue;
    ++kills;
    // A kill between "writing checkpoint at step N" and "saved checkpoint at step N" came
    // during the write: the checkpoint holds step N (the swap was done) or the previous one.
    const auto writing = result.errors.rfind("writing checkpoint at step ");
    if (writing != std::string::npos && result.errors.find("saved checkpoint", writing) == std::string::npos) {
      ++kills_in_checkpoint_writes;
      const long step = std::stol(result.errors.substr(writing + std::strlen("writing checkpoint at step ")));
      const long now = checkpoint_step(checkpoint);
      CHECK((now == step || now == step - kSaveEvery || (now == -1 && step == kSaveEvery)));
      kept_previous += now != step;
    }
    if (result.errors.find("writing the trained model") != std::string::npos &&
        result.errors.find("wrote the trained model") == std::string::npos) {
      ++kills_in_final_writes;
    }
    for (const char* folder : {".checkpoint.tmp-", ".model.tmp-"}) {
      staging_left += fs::exists(run / fmt::format("{}{}", folder, result.pid));
    }
    if (fs::exists(checkpoint)) CHECK_NOTHROW(mambakit::Model::load(checkpoint, mambakit::test::in_tree_plugins()));
  }
  const auto last = run_command(train_command(dir, checkpointed || checkpoint_step(checkpoint) >= 0));
  INFO(history);
  INFO(last.errors);
  REQUIRE(last.exit_code == 0);
  WARN(fmt::format("{} kills: {} during checkpoint writes ({} of them keeping the previous checkpoint, {} "
                   "leaving a staging folder for the next run to clear), {} during the final model's write; {:.1f} s",
                   kills, kills_in_checkpoint_writes, kept_previous, staging_left, kills_in_final_writes,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  CHECK(kills == kKills);
  CHECK(kills_in_checkpoint_writes >= 3);
  CHECK(kills_in_final_writes >= 1);

  // Every step logged once, with the uninterrupted run's loss (and everything else) to the bit.
  const auto losses = logged_losses(run / "metrics.jsonl");
  REQUIRE(losses.size() == expected.size());
  for (std::size_t i = 0; i < losses.size(); ++i) {
    INFO("line " << i + 1);
    CHECK(losses[i].first == expected[i].first);
    CHECK(losses[i].second == expected[i].second);
  }
  CHECK(read_bytes(run / "metrics.jsonl") == expected_metrics);
  for (const char* file : {"model/model.safetensors", "checkpoint/model.safetensors",
                           "checkpoint/optimizer.safetensors", "checkpoint/trainer_state.json"}) {
    INFO(file);
    CHECK(read_bytes(run / file) == read_bytes(reference / "run" / file));
  }
  CHECK(leftovers(run).empty());
}

TEST_CASE("a full disk during a mambakit train checkpoint is an error naming the file, and the previous checkpoint stays") {
  if (::geteuid() != 0) {
    WARN("skipped: mounting a small tmpfs to fill needs root");
    return;
  }
  const fs::path mount_point = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "scratch" / "full_disk_mount";
  ::umount2(mount_point.c_str(), MNT_DETACH);  // a mount an earlier, aborted run left
  fs::create_directories(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m,mode=0755") != 0) {
    WARN(fmt::format("skipped: cannot mount a tmpfs on {}: {}", mount_point.string(), std::strerror(errno)));
    return;
  }
  const Unmount unmount(mount_point);
  const fs::path run = mount_point / "run", checkpoint = run / "checkpoint";
  const fs::path dir = make_run("full_disk", run);

  const auto first = run_command(train_command(dir, false, "--set steps=4"));
  INFO(first.errors);
  REQUIRE(first.exit_code == 0);
  REQUIRE(checkpoint_step(checkpoint) == 4);
  std::vector<std::string> saved;
  const std::vector<std::string> files = {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.json"};
  for (const auto& file : files) saved.push_back(read_bytes(checkpoint / file));

  // Fill what is left: the next checkpoint's first file finds no room (the metrics' last page
  // still has room for the steps' records).
  {
    const int fd = ::open((mount_point / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    const std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    const int error = errno;
    ::close(fd);
    REQUIRE(error == ENOSPC);
  }
  const auto full = run_command(train_command(dir, true, "--set steps=8"));
  INFO(full.errors);
  CHECK(full.exit_code == 1);
  CHECK_THAT(full.errors, Contains("the checkpoint of step 6 was not saved") && Contains(checkpoint.string()) &&
                              Contains("No space left on device") && Contains("still holds step 4"));
  CHECK(checkpoint_step(checkpoint) == 4);
  for (std::size_t i = 0; i < files.size(); ++i) {
    INFO(files[i]);
    CHECK(read_bytes(checkpoint / files[i]) == saved[i]);
  }
  CHECK(leftovers(mount_point).empty());
  CHECK_NOTHROW(mambakit::Model::load(checkpoint, mambakit::test::in_tree_plugins()));

  // With room again the run resumes from that checkpoint and logs each step once.
  fs::remove(mount_point / "filler");
  const auto resumed = run_command(train_command(dir, true, "--set steps=8"));
  INFO(resumed.errors);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.errors, Contains("step 5/8"));
  CHECK(checkpoint_step(checkpoint) == 8);
  std::vector<long> steps;
  for (const auto& [step, loss] : logged_losses(run / "metrics.jsonl")) steps.push_back(step);
  CHECK(steps == std::vector<long>{1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("a diverging mambakit train stops with the step and what was not finite, and saves none of it") {
  const fs::path dir = make_run("diverging");
  const fs::path run = dir / "run", checkpoint = run / "checkpoint";

  // An absurd learning rate: the first update leaves NaN in the weights, and nothing is saved.
  const auto at_once = run_command(train_command(dir, false, "--set lr=1e300 --set save_every=1"));
  INFO(at_once.errors);
  CHECK(at_once.exit_code == 1);
  CHECK_THAT(at_once.errors, Contains("training diverged at step 1: the optimizer step") &&
                                 Contains("made the weights non-finite: ") &&
                                 Contains("no checkpoint yet"));
  CHECK_FALSE(fs::exists(checkpoint));
  CHECK_FALSE(fs::exists(run / "model"));

  // A sound start to step 4, then a learning rate that makes the loss NaN two steps later.
  const auto sound = run_command(train_command(dir, false, "--set steps=4"));
  INFO(sound.errors);
  REQUIRE(sound.exit_code == 0);
  const std::string weights = read_bytes(checkpoint / "model.safetensors");
  const std::string optimizer = read_bytes(checkpoint / "optimizer.safetensors");
  const std::string final_model = read_bytes(run / "model" / "model.safetensors");
  const auto diverged = run_command(train_command(dir, true, "--set steps=8 --set lr=1e3"));
  INFO(diverged.errors);
  CHECK(diverged.exit_code == 1);
  CHECK_THAT(diverged.errors, Contains("training diverged at step 6: the training loss is") && Contains("nan") &&
                                  Contains(fmt::format("{} still holds step 4", checkpoint.string())));
  CHECK(checkpoint_step(checkpoint) == 4);
  CHECK(read_bytes(checkpoint / "model.safetensors") == weights);
  CHECK(read_bytes(checkpoint / "optimizer.safetensors") == optimizer);
  CHECK(read_bytes(run / "model" / "model.safetensors") == final_model);
  CHECK(all_finite(checkpoint / "model.safetensors"));
  CHECK(leftovers(run).empty());

  // The kept checkpoint resumes with a sound learning rate; the diverged steps leave the log.
  const auto resumed = run_command(train_command(dir, true, "--set steps=8"));
  INFO(resumed.errors);
  CHECK(resumed.exit_code == 0);
  CHECK(all_finite(run / "model" / "model.safetensors"));
  std::vector<long> steps;
  for (const auto& [step, loss] : logged_losses(run / "metrics.jsonl")) steps.push_back(step);
  CHECK(steps == std::vector<long>{1, 2, 3, 4, 5, 6, 7, 8});
}
