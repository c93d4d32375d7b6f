#pragma once
// The split of a decode step's work between the threads of one parallel region, in proportion
// to how fast each thread has recently worked.
//
// A decode step streams its weights with static shares: each thread reads one contiguous range
// in address order, which the hardware prefetcher follows (dynamic schedules and work stealing,
// which cut the ranges into chunks, measured slower). On shared machines one core often runs
// 10-20% slower than the other for seconds at a time, and with equal shares the fast thread
// then waits at every barrier. SpeedShares moves the boundaries instead: shares follow the
// threads' measured speeds, so each thread still reads one linear stream.
//
// Callers split work whose every output is computed independently of where the boundaries
// fall (few_rows.hpp sums each output in one fixed order; the scan and conv are per channel),
// so results do not depend on the split.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <utility>

namespace mambakit::sdk::util {

class SpeedShares {
 public:
  static constexpr int kMaxThreads = 64;

  /// The split of one call, taken before the parallel region so that every thread computes its
  /// range from the same fractions.
  class Plan {
   public:
    /// Units [begin, end) of `n` for thread `thread` of a team of `team`, in whole blocks of
    /// `block` units. A team of another size than the plan's gets equal shares.
    [[nodiscard]] std::pair<std::int64_t, std::int64_t> range(std::int64_t n, std::int64_t block, int thread,
                                                              int team) const {
      const std::int64_t blocks = (n + block - 1) / block;
      const auto boundary = [&](int t) {
        const std::int64_t b = team == threads_ ? static_cast<std::int64_t>(bounds_[t] * static_cast<double>(blocks) + 0.5)
                                                : blocks * t / team;
        return std::min(b * block, n);
      };
      return {boundary(thread), boundary(thread + 1)};
    }

    /// The fraction of the work given to thread `thread`.
    [[nodiscard]] double fraction(int thread) const { return bounds_[thread + 1] - bounds_[thread]; }
    [[nodiscard]] int threads() const { return threads_; }

   private:
    friend class SpeedShares;
    int threads_ = 1;
    std::array<double, kMaxThreads + 1> bounds_{};  // bounds_[t]: the share of threads before t
  };

  SpeedShares() {
    for (auto& speed : speed_) speed.store(1.0f, std::memory_order_relaxed);
  }
  SpeedShares(const SpeedShares&) = delete;
  SpeedShares& operator=(const SpeedShares&) = delete;

  /// The split for a team of `threads` (1..kMaxThreads; more get equal shares) from the current
  /// estimates: equal shares until calls have been recorded.
  [[nodiscard]] Plan plan(int threads) const {
    Plan plan;
    plan.threads_ = std::clamp(threads, 1, kMaxThreads);
    double total = 0.0;
    for (int t = 0; t < plan.threads_; ++t) total += speed_[t].load(std::memory_order_relaxed);
    double before = 0.0;
    for (int t = 0; t < plan.threads_; ++t) {
      plan.bounds_[t] = before / total;
      before += speed_[t].load(std::memory_order_relaxed);
    }
    plan.bounds_[plan.threads_] = 1.0;
    if (threads > kMaxThreads) plan.threads_ = 0;  // matches no team: equal shares
    return plan;
  }

  /// Updates the estimates from one call made with `plan`: seconds[t] is how long thread t
  /// worked on its share (barrier waits excluded). Calls with an unmeasured thread are ignored.
  void record(const Plan& plan, const double* seconds) {
    const int threads = plan.threads_;
    if (threads < 2) return;
    std::array<double, kMaxThreads> rate{};
    double mean = 0.0;
    for (int t = 0; t < threads; ++t) {
      if (!(seconds[t] > 0.0) || !(plan.fraction(t) > 0.0)) return;
      rate[t] = plan.fraction(t) / seconds[t];
      mean += rate[t] / threads;
    }
    for (int t = 0; t < threads; ++t) {
      const float old_speed = speed_[t].load(std::memory_order_relaxed);
      const double speed = (1.0 - kSmoothing) * old_speed + kSmoothing * rate[t] / mean;
      speed_[t].store(static_cast<float>(std::clamp(speed, kMinSpeed, kMaxSpeed)), std::memory_order_relaxed);
    }
  }

 private:
  /// The weight of the newest call in the running estimates: about ten calls' memory, enough
  /// to ride out one call's noise and to follow a neighbour's load within a few tokens.
  static constexpr double kSmoothing = 0.1;
  /// Bounds on a thread's speed relative to the team's mean, so that one wild measurement
  /// cannot starve a thread.
  static constexpr double kMinSpeed = 0.5, kMaxSpeed = 2.0;

  // Relaxed atomics: concurrent calls may interleave their updates, which only blurs the
  // estimates; each call's Plan is a private snapshot.
  std::array<std::atomic<float>, kMaxThreads> speed_;
};

}  // namespace mambakit::sdk::util
