// The decode step's work split (plugins/common/speed_shares.hpp) and its barrier
// (prefetching_barrier.hpp): shares tile the work exactly and follow the threads' speeds, as
// derived by hand below; the barrier lets no thread pass before all have arrived and makes
// their writes visible.

#include <catch2/catch.hpp>

#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "mambakit/sdk/util/prefetching_barrier.hpp"
#include "simulated_speeds.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"

using mambakit::sdk::util::NextReads;
using mambakit::sdk::util::PrefetchingBarrier;
using mambakit::sdk::util::SpeedShares;
using mambakit::test::record_calls;

namespace {

/// Checks that the ranges of every thread tile [0, n) in order, each starting on a block.
void require_tiling(const SpeedShares::Plan& plan, std::int64_t n, std::int64_t block, int team) {
  std::int64_t next = 0;
  for (int t = 0; t < team; ++t) {
    const auto [begin, end] = plan.range(n, block, t, team);
    REQUIRE(begin == next);
    REQUIRE(end >= begin);
    REQUIRE((begin % block == 0 || begin == n));
    next = end;
  }
  REQUIRE(next == n);
}

}  // namespace

TEST_CASE("speed shares start equal and tile the work in whole blocks") {
  SpeedShares shares;
  const SpeedShares::Plan plan = shares.plan(3);
  for (int t = 0; t < 3; ++t) CHECK(plan.fraction(t) == Approx(1.0 / 3.0));
  CHECK(plan.range(96, 16, 0, 3) == std::pair<std::int64_t, std::int64_t>{0, 32});
  CHECK(plan.range(96, 16, 2, 3) == std::pair<std::int64_t, std::int64_t>{64, 96});
  for (const std::int64_t n : {1, 7, 80, 768, 1536, 50280}) {
    require_tiling(plan, n, 8, 3);
    require_tiling(plan, n, 16, 3);
    require_tiling(plan, n, 8, 2);  // a smaller team than planned: equal shares
  }
}

TEST_CASE("speed shares converge to the threads' speeds") {
  // Thread 1 works at half thread 0's speed: equal work takes it twice as long. The split that
  // makes both finish together gives thread 0 two thirds.
  SpeedShares shares;
  record_calls(shares, {2.0, 1.0}, 200);
  const SpeedShares::Plan plan = shares.plan(2);
  CHECK(plan.fraction(0) == Approx(2.0 / 3.0).margin(0.01));
  CHECK(plan.fraction(1) == Approx(1.0 / 3.0).margin(0.01));
  require_tiling(plan, 768, 8, 2);
  const auto [begin, end] = plan.range(768, 8, 1, 2);
  CHECK(begin == 512);  // 2/3 of 96 blocks of 8
  CHECK(end == 768);

  // When the slow thread recovers, the split returns to equal.
  record_calls(shares, {1.0, 1.0}, 200);
  CHECK(shares.plan(2).fraction(0) == Approx(0.5).margin(0.01));
}

TEST_CASE("speed shares bound a thread's share and ignore unmeasured calls") {
  SpeedShares shares;
  // A thread 100 times slower still keeps the share of the slowest allowed speed: 0.5 / (0.5 + 2).
  record_calls(shares, {100.0, 1.0}, 300);
  CHECK(shares.plan(2).fraction(1) == Approx(0.2).margin(0.01));

  SpeedShares fresh;
  const SpeedShares::Plan plan = fresh.plan(2);
  const std::array<double, 2> unmeasured = {0.001, 0.0};  // thread 1 did not report
  fresh.record(plan, unmeasured.data());
  CHECK(fresh.plan(2).fraction(0) == Approx(0.5));
}

TEST_CASE("next reads are prefetched chunk by chunk within the budget") {
  std::vector<char> memory(2 * NextReads::kBudgetBytes);
  NextReads small;
  small.add(memory.data(), 3000);  // 1024 + 1024 + 952 bytes
  small.add(memory.data() + 5000, 0);
  int chunks = 0;
  while (small.prefetch_some()) ++chunks;
  CHECK(chunks == 3);

  NextReads large;
  large.add(memory.data(), static_cast<std::int64_t>(memory.size()));
  chunks = 0;
  while (large.prefetch_some()) ++chunks;
  CHECK(chunks == NextReads::kBudgetBytes / 1024);
}

TEST_CASE("prefetching barrier holds every thread until all arrive, and publishes their writes") {
  constexpr int kThreads = 4, kRounds = 2000;
  PrefetchingBarrier barrier;
  std::vector<char> weights(64 * 1024);
  std::array<int, kThreads> written{};
  int failures = 0;
#pragma omp parallel num_threads(kThreads) reduction(+ : failures)
  {
    const int thread = omp_get_thread_num(), team = omp_get_num_threads();
    NextReads reads;
    reads.add(weights.data(), static_cast<std::int64_t>(weights.size()));
    for (int round = 1; round <= kRounds; ++round) {
      written[static_cast<std::size_t>(thread)] = round;
      barrier.arrive_and_wait(team, reads);
      for (int t = 0; t < team; ++t) failures += written[static_cast<std::size_t>(t)] != round;
      barrier.arrive_and_wait(team, reads);  // nobody writes the next round before all have read
    }
  }
  CHECK(failures == 0);
}
