#pragma once
// Running a command in a test and capturing what it prints.

#include <string>

namespace mambakit::test {

/// What a finished command printed and returned.
struct ProcessResult {
  int exit_code = -1;
  std::string output;  ///< stdout
  std::string errors;  ///< stderr
};

/// Runs `command` through /bin/sh and waits for it.
ProcessResult run_command(const std::string& command);

}  // namespace mambakit::test
