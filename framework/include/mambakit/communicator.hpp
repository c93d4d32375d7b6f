#pragma once
/// \file
/// The processes of one training run and the collective operations data-parallel training
/// needs: one process alone, or the ranks an MPI launcher started (`mpirun -np N`). Another
/// transport (NCCL on GPUs) is another implementation of Communicator.

#include <cstdint>
#include <memory>
#include <string>

namespace mambakit {

/// Collective operations over the ranks of a run. Every rank makes the same calls in the same
/// order with the same counts. Calls must not overlap: a caller with several threads takes
/// turns (the trainer's gradient reducer and its loop do).
class Communicator {
 public:
  virtual ~Communicator() = default;

  /// This process's rank in [0, size()).
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  /// What connects the ranks, for logs: "one process", "MPI (Open MPI v4.1.4)".
  [[nodiscard]] virtual std::string description() const = 0;

  /// values (count, the same count on every rank) becomes the sum over ranks, the same bits on
  /// every rank: each element's terms are added in a fixed order that does not depend on the
  /// transport (tree_sum_order(): a perfect binary tree over the ranks in bit-reversed order
  /// when size() is a power of two).
  virtual void sum(float* values, std::int64_t count) = 0;

  /// out (size() * count) = every rank's `count` values, rank by rank.
  virtual void all_gather(const double* values, std::int64_t count, double* out) = 0;

  /// Whether `flag` is true on any rank.
  [[nodiscard]] virtual bool any(bool flag) = 0;

  /// Ends every rank's process with exit code 1, after writing `message` (naming this rank)
  /// to stderr. For an error on one rank that the others cannot know of.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

/// One process alone: sum and all_gather copy, any returns its flag.
std::unique_ptr<Communicator> make_single_process_communicator();

/// Whether an MPI launcher started this process as one of several ranks (mpirun and srun set
/// OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_SIZE; a size of 1 counts as not launched).
[[nodiscard]] bool launched_as_ranks();

/// Whether this build can run distributed (it found MPI).
[[nodiscard]] bool built_with_mpi();

/// The communicator of this process: MPI when launched_as_ranks(), otherwise one process.
/// Throws when launched as ranks by a build without MPI. Call once, early in main (MPI is
/// initialised then, and finalised when the communicator is destroyed).
std::unique_ptr<Communicator> connect_ranks(int& argc, char**& argv);

}  // namespace mambakit
