#include "process.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace mambakit::test {

namespace {

std::string read_and_remove(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  std::remove(path.c_str());
  return text.str();
}

}  // namespace

ProcessResult run_command(const std::string& command) {
  char out_template[] = "/tmp/mambakit-test-out-XXXXXX";
  char err_template[] = "/tmp/mambakit-test-err-XXXXXX";
  const int out_fd = mkstemp(out_template);
  const int err_fd = mkstemp(err_template);
  if (out_fd < 0 || err_fd < 0) throw std::runtime_error("cannot create temporary files for a command's output");
  close(out_fd);
  close(err_fd);
  const std::string full = command + " >" + out_template + " 2>" + err_template + " </dev/null";
  const int status = std::system(full.c_str());
  ProcessResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.output = read_and_remove(out_template);
  result.errors = read_and_remove(err_template);
  return result;
}

}  // namespace mambakit::test
