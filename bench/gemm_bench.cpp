// SGEMM throughput of Eigen (the library the CPU plugins use) at the shapes of a 130m Mamba
// prefill of 512 tokens: the peak the prefill's projections can reach on this machine.
//
//   gemm_bench [THREADS]

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  Eigen::setNbThreads(threads);
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  struct Shape {
    const char* name;
    int m, k, n;
  };
  const Shape shapes[] = {{"in_proj 512x768 -> 3072", 512, 768, 3072},
                          {"in_proj 2048x768 -> 3072", 2048, 768, 3072},
                          {"mamba2 in_proj 2048x768 -> 3352", 2048, 768, 3352},
                          {"mamba2 in_proj 2048x768 -> 3328", 2048, 768, 3328},
                          {"out_proj 512x1536 -> 768", 512, 1536, 768},
                          {"x_proj 512x1536 -> 80", 512, 1536, 80},
                          {"square 2048^3", 2048, 2048, 2048}};
  for (const auto& shape : shapes) {
    const Matrix x = Matrix::Random(shape.m, shape.k), w = Matrix::Random(shape.n, shape.k);
    Matrix y(shape.m, shape.n);
    std::vector<double> seconds;
    for (int run = 0; run < 21; ++run) {
      const auto start = std::chrono::steady_clock::now();
      y.noalias() = x * w.transpose();
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double flop = 2.0 * shape.m * shape.k * shape.n;
    std::printf("%-28s %d threads: median %.1f GFLOP/s, best %.1f GFLOP/s (%.3f)\n", shape.name, threads,
                flop / seconds[seconds.size() / 2] / 1e9, flop / seconds.front() / 1e9, y(0, 0));
  }
  return 0;
}
