#pragma once
// The MPI communicator (mpi_communicator.cpp in builds that found MPI, no_mpi.cpp otherwise).

#include <memory>

#include "mambakit/communicator.hpp"

namespace mambakit::distributed {

/// Whether this build has MPI.
bool mpi_available();

/// Initialises MPI (threads serialised: the trainer's reducer thread and its main thread take
/// turns) and returns MPI_COMM_WORLD's communicator, which finalises MPI when destroyed.
std::unique_ptr<Communicator> connect_mpi(int& argc, char**& argv);

}  // namespace mambakit::distributed
