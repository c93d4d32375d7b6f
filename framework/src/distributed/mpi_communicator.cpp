// The communicator over MPI_COMM_WORLD. sum() is a reduce-scatter and an all-gather
// (MPI_Alltoallv, then each rank adds its slice's N terms in tree_sum.hpp's order, then
// MPI_Allgatherv): the bandwidth of a ring allreduce, and the same bits whatever algorithms
// the MPI library picks. MPI's default error handler ends every rank when one fails.

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "mambakit/error.hpp"
#include "mpi_communicator.hpp"
#include "tree_sum.hpp"

namespace mambakit::distributed {

namespace {

/// Elements per collective call: MPI counts are ints.
constexpr std::int64_t kMaxPiece = std::int64_t{1} << 28;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int& argc, char**& argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw Error("the MPI library does not support calls from more than one thread (MPI_THREAD_SERIALIZED)");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    library_.assign(version, static_cast<std::size_t>(length));
    library_ = library_.substr(0, library_.find_first_of(",\n"));
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0) MPI_Finalize();
  }

  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] std::string description() const override { return fmt::format("MPI ({})", library_); }

  void sum(float* values, std::int64_t count) override {
    for (std::int64_t begin = 0; begin < count; begin += kMaxPiece) {
      sum_piece(values + begin, std::min(kMaxPiece, count - begin));
    }
  }

  void all_gather(const double* values, std::int64_t count, double* out) override {
    MPI_Allgather(values, static_cast<int>(count), MPI_DOUBLE, out, static_cast<int>(count), MPI_DOUBLE, MPI_COMM_WORLD);
  }

  [[nodiscard]] bool any(bool flag) override {
    int mine = flag ? 1 : 0, result = 0;
    MPI_Allreduce(&mine, &result, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return result != 0;
  }

  [[noreturn]] void abort(const std::string& message) override {
    std::fputs(fmt::format("rank {} of {}: {}\n", rank_, size_, message).c_str(), stderr);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  void sum_piece(float* values, std::int64_t count) {
    const int n = size_;
    const std::int64_t slice = (count + n - 1) / n;
    auto begin_of = [&](int r) { return std::min(count, r * slice); };
    auto length_of = [&](int r) { return std::min(count, (r + 1) * slice) - begin_of(r); };
    const std::int64_t mine = length_of(rank_);
    std::vector<int> send_counts(n), send_offsets(n), receive_counts(n), receive_offsets(n);
    for (int r = 0; r < n; ++r) {
      send_counts[r] = static_cast<int>(length_of(r));
      send_offsets[r] = static_cast<int>(begin_of(r));
      receive_counts[r] = static_cast<int>(mine);
      receive_offsets[r] = static_cast<int>(r * mine);
    }
    received_.resize(static_cast<std::size_t>(n * mine));
    MPI_Alltoallv(values, send_counts.data(), send_offsets.data(), MPI_FLOAT, received_.data(), receive_counts.data(),
                  receive_offsets.data(), MPI_FLOAT, MPI_COMM_WORLD);
    // This rank's slice: the ranks' terms added in the tree's order.
    const std::vector<int> order = tree_leaf_order(n);
    tree_.reset(mine);
    for (int position = 0; position + 1 < n; ++position) tree_.push(received_.data() + order[position] * mine);
    float* out = values + begin_of(rank_);
    std::copy_n(received_.data() + order[n - 1] * mine, mine, out);
    tree_.finish(out, 0, mine);
    for (int r = 0; r < n; ++r) {
      receive_counts[r] = send_counts[r];
      receive_offsets[r] = send_offsets[r];
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, values, receive_counts.data(), receive_offsets.data(), MPI_FLOAT,
                   MPI_COMM_WORLD);
  }

  int rank_ = 0, size_ = 1;
  std::string library_;
  // Kept from call to call: large buffers allocated anew would be paged in anew every step.
  std::vector<float> received_;
  TreeSum tree_{0};
};

}  // namespace

bool mpi_available() { return true; }

std::unique_ptr<Communicator> connect_mpi(int& argc, char**& argv) { return std::make_unique<MpiCommunicator>(argc, argv); }

}  // namespace mambakit::distributed
