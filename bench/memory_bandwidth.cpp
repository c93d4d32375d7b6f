// The machine's memory bandwidth, which bounds decode speed (every weight is read once per
// token), measured two ways over arrays far larger than the caches, with OpenMP threads each
// taking a contiguous share:
//   - the STREAM-style triad a[i] = b[i] + s * c[i], counting 12 bytes per element (two 4-byte
//     reads, one write) as STREAM does: the figure PEERS.md quotes;
//   - a read-only sum, one linear stream per thread: what a decode step does, since it only
//     reads the weights.
// Each reports the median of 15 runs.
//
//   memory_bandwidth [THREADS] [MiB per array]

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

typedef float Lanes __attribute__((vector_size(64)));  // 16 x f32

template <class Body>
double median_seconds(Body&& body) {
  std::vector<double> seconds;
  for (int run = 0; run < 15; ++run) {
    const auto start = std::chrono::steady_clock::now();
    body();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

/// The sum of a[begin, end) (end - begin a multiple of 64), with four independent accumulators.
float sum_range(const float* a, std::size_t begin, std::size_t end) {
  Lanes acc[4] = {};
  for (std::size_t i = begin; i < end; i += 64) {
    for (int q = 0; q < 4; ++q) {
      Lanes v;
      std::memcpy(&v, a + i + 16 * q, sizeof v);
      acc[q] += v;
    }
  }
  const Lanes total = acc[0] + acc[1] + acc[2] + acc[3];
  float sum = 0.0f;
  for (int i = 0; i < 16; ++i) sum += total[i];
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : omp_get_max_threads();
  const std::size_t mib = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 256;
  const std::size_t n = mib * 1024 * 1024 / sizeof(float) / 64 / static_cast<std::size_t>(threads) * 64 *
                        static_cast<std::size_t>(threads);
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::size_t i = 0; i < n; ++i) a[i] = 0.0f;  // first touch by the threads that use it

  const double triad = median_seconds([&] {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::size_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
  });
  std::printf("triad, %d threads, %zu MiB per array: median %.1f GB/s (check %.1f)\n", threads, mib,
              3.0 * static_cast<double>(n) * sizeof(float) / triad / 1e9, a[n / 2]);

  float check = 0.0f;
  const double read = median_seconds([&] {
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const std::size_t share = n / static_cast<std::size_t>(omp_get_num_threads());
      const std::size_t begin = share * static_cast<std::size_t>(omp_get_thread_num());
      total += sum_range(b.data(), begin, begin + share);
    }
    check = total;
  });
  std::printf("read-only, %d threads, %zu MiB: median %.1f GB/s (check %.0f)\n", threads, mib,
              static_cast<double>(n) * sizeof(float) / read / 1e9, check);
  return 0;
}
