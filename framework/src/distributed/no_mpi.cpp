// Builds without MPI: connect_ranks() refuses distributed runs before calling connect_mpi().

#include "mambakit/error.hpp"
#include "mpi_communicator.hpp"

namespace mambakit::distributed {

bool mpi_available() { return false; }

std::unique_ptr<Communicator> connect_mpi(int&, char**&) { throw Error("this mambakit was built without MPI"); }

}  // namespace mambakit::distributed
