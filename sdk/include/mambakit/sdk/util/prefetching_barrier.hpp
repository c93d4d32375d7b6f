#pragma once
// A barrier for the threads of one parallel region that spends a thread's wait warming its
// cache with the weights it will stream next.
//
// A decode step streams each weight once, split between threads at barriers. However evenly
// the work is split, one thread arrives first at each barrier (the threads' memory speeds vary
// from call to call) and would idle while the other finishes. Here it prefetches its next
// reads into its own L2 meanwhile, so the idle time moves bytes the step needs anyway and the
// next phase starts with part of its stream already in the cache.

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <thread>

namespace mambakit::sdk::util {

/// The byte ranges one thread will read next, prefetched a chunk at a time, in order, up to a
/// budget that stays well inside a core's L2 (so nothing prefetched is evicted before use).
class NextReads {
 public:
  static constexpr int kMaxRanges = 8;
  static constexpr std::int64_t kBudgetBytes = 256 * 1024;

  /// Queues `bytes` bytes from `begin` (ranges past kMaxRanges are dropped).
  void add(const void* begin, std::int64_t bytes) {
    if (count_ == kMaxRanges || bytes <= 0) return;
    ranges_[count_++] = {static_cast<const char*>(begin), bytes};
  }

  /// Prefetches the next chunk; false once everything queued, or the budget, is done.
  bool prefetch_some() {
    constexpr std::int64_t kChunkBytes = 1024, kLine = 64;
    while (current_ < count_ && offset_ >= ranges_[current_].bytes) {
      ++current_;
      offset_ = 0;
    }
    if (current_ == count_ || spent_ >= kBudgetBytes) return false;
    const Range& range = ranges_[current_];
    const std::int64_t end = offset_ + kChunkBytes < range.bytes ? offset_ + kChunkBytes : range.bytes;
    for (std::int64_t byte = offset_; byte < end; byte += kLine) __builtin_prefetch(range.begin + byte, 0, 2);
    spent_ += end - offset_;
    offset_ = end;
    return true;
  }

 private:
  struct Range {
    const char* begin = nullptr;
    std::int64_t bytes = 0;
  };
  Range ranges_[kMaxRanges];
  int count_ = 0, current_ = 0;
  std::int64_t offset_ = 0, spent_ = 0;
};

/// A reusable barrier for a team of threads that prefetches the caller's NextReads while it
/// waits. Writes made before arrive_and_wait() are visible to every thread after it.
class PrefetchingBarrier {
 public:
  /// Returns the seconds this thread waited (0 for the last to arrive).
  double arrive_and_wait(int team, NextReads& reads) {
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return 0.0;
    }
    const double arrived = omp_get_wtime();
    // Spin (prefetching while there is something to fetch), then yield. A team with more
    // threads than processors yields at once: the thread it waits for may need this core.
    static const int processors = omp_get_num_procs();
    const int spins_before_yield = team > processors ? 0 : 4096;
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (reads.prefetch_some()) continue;
      if (spins < spins_before_yield) {
        pause();
      } else {
        std::this_thread::yield();
      }
    }
    return omp_get_wtime() - arrived;
  }

 private:
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

}  // namespace mambakit::sdk::util
