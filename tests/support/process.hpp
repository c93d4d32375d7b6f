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
  int pid = -1;        ///< the process id (signal_after and kill_after), e.g. to find what it left behind
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

/// A crash at a chosen moment: starts `argv` (argv[0] a path) directly, reads its stderr as it
/// comes (through a pipe, so the moment is exact to the scheduler's latency rather than a polling
/// interval), and `delay_seconds` after its stderr first contains `marker` (after the start for
/// an empty marker) kills it with SIGKILL. exit_code is 128 + SIGKILL for a process so killed,
/// its own status for one that ended before, and -1 for one still running after
/// `timeout_seconds` (then killed too). stdout is discarded.
ProcessResult kill_after(const std::vector<std::string>& argv, const std::string& marker, double delay_seconds,
                         double timeout_seconds);

}  // namespace mambakit::test
