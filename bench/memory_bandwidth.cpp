// STREAM-style triad a[i] = b[i] + s * c[i] over arrays far larger than the caches, with
// OpenMP: the machine's memory bandwidth, which bounds decode speed (every weight is read once
// per token). Reports the median of 15 runs, counting 12 bytes moved per element (two 4-byte
// reads, one write), as STREAM does.
//
//   memory_bandwidth [THREADS] [MiB per array]

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : omp_get_max_threads();
  const std::size_t mib = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 256;
  const std::size_t n = mib * 1024 * 1024 / sizeof(float);
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::size_t i = 0; i < n; ++i) a[i] = 0.0f;  // first touch by the threads that use it
  std::vector<double> seconds;
  for (int run = 0; run < 15; ++run) {
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::size_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double bytes = 3.0 * static_cast<double>(n) * sizeof(float);
  std::printf("triad, %d threads, %zu MiB per array: median %.1f GB/s, best %.1f GB/s (check %.1f)\n", threads, mib,
              bytes / seconds[seconds.size() / 2] / 1e9, bytes / seconds.front() / 1e9, a[n / 2]);
  return 0;
}
