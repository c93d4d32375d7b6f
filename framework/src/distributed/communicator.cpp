// One process alone, finding out whether an MPI launcher started this one, and choosing.

#include "mambakit/communicator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "mambakit/error.hpp"
#include "mpi_communicator.hpp"

namespace mambakit {

namespace {

class SingleProcess final : public Communicator {
 public:
  [[nodiscard]] int rank() const override { return 0; }
  [[nodiscard]] int size() const override { return 1; }
  [[nodiscard]] std::string description() const override { return "one process"; }
  void sum(float*, std::int64_t) override {}
  void all_gather(const double* values, std::int64_t count, double* out) override { std::copy(values, values + count, out); }
  [[nodiscard]] bool any(bool flag) override { return flag; }
  [[noreturn]] void abort(const std::string& message) override {
    std::fputs((message + "\n").c_str(), stderr);
    std::exit(1);
  }
};

/// The world size an MPI launcher announced, or 0 when none did.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return std::atoi(value);
  }
  return 0;
}

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() { return std::make_unique<SingleProcess>(); }

bool launched_as_ranks() { return launcher_size() > 1; }

bool built_with_mpi() { return distributed::mpi_available(); }

std::unique_ptr<Communicator> connect_ranks(int& argc, char**& argv) {
  if (!launched_as_ranks()) return make_single_process_communicator();
  if (!built_with_mpi()) {
    throw Error(fmt::format(
        "started as one of {} ranks, but this mambakit was built without MPI: distributed training needs MPI "
        "(install libopenmpi-dev and rebuild; see docs/TRAINING.md)",
        launcher_size()));
  }
  return distributed::connect_mpi(argc, argv);
}

}  // namespace mambakit
