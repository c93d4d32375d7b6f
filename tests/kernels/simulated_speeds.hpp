#pragma once
// Feeding SpeedShares the timings of threads with given speeds, for the kernel tests.

#include <array>
#include <vector>

#include "mambakit/sdk/util/speed_shares.hpp"

namespace mambakit::test {

/// Records `calls` calls in which thread t works at `speeds[t]` units per second: a share f
/// takes f / speeds[t] seconds.
inline void record_calls(sdk::util::SpeedShares& shares, const std::vector<double>& speeds, int calls) {
  using sdk::util::SpeedShares;
  const int threads = static_cast<int>(speeds.size());
  for (int call = 0; call < calls; ++call) {
    const SpeedShares::Plan plan = shares.plan(threads);
    std::array<double, SpeedShares::kMaxThreads> seconds{};
    for (int t = 0; t < threads; ++t) seconds[static_cast<std::size_t>(t)] = plan.fraction(t) / speeds[static_cast<std::size_t>(t)];
    shares.record(plan, seconds.data());
  }
}

}  // namespace mambakit::test
