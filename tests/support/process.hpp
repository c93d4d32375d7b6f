#pragma once
// Running a command in a test and capturing what it prints.

#include <string>
#include <vector>

namespace mambakit::test {

/// What a finished command printed and returned.
struct ProcessResult {
  int exit_code = -1;
  std::string output;  ///< stdout
  std::string errors;  ///< stderr
};

/// Runs `command` through /bin/sh and waits for it.
ProcessResult run_command(const std::string& command);

/// Starts `argv` (argv[0] a path) directly, without a shell, waits until its stderr contains
/// `marker`, sends it `signal_number` (SIGINT as Ctrl-C would, SIGKILL as a crash would), and
/// waits for it to end. exit_code is the exit status, or 128 + the signal for a process the
/// signal killed. A process that neither prints the marker nor ends within `timeout_seconds`
/// is killed and reported with exit_code -1.
ProcessResult signal_after(const std::vector<std::string>& argv, const std::string& marker, int signal_number,
                           double timeout_seconds);

}  // namespace mambakit::test
