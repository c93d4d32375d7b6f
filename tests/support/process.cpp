#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <thread>

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

/// posix_spawn of argv (argv[0] a path) with `actions`, which it destroys; the error number, 0
/// on success, with the child's id in `pid`.
int spawn(const std::vector<std::string>& argv, posix_spawn_file_actions_t& actions, pid_t& pid) {
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int spawned = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return spawned;
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

ProcessResult signal_after(const std::vector<std::string>& argv, const std::string& marker, int signal_number,
                           double timeout_seconds) {
  char out_template[] = "/tmp/mambakit-test-out-XXXXXX";
  char err_template[] = "/tmp/mambakit-test-err-XXXXXX";
  const int out_fd = mkstemp(out_template);
  const int err_fd = mkstemp(err_template);
  if (out_fd < 0 || err_fd < 0) throw std::runtime_error("cannot create temporary files for a command's output");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  const int spawned = spawn(argv, actions, pid);
  close(out_fd);
  close(err_fd);
  if (spawned != 0) throw std::runtime_error("cannot start " + argv[0]);

  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds);
  auto contents = [](const char* path) {
    std::ifstream file(path, std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  };
  int status = 0;
  bool exited = false, signalled = false;
  while (Clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    if (!signalled && contents(err_template).find(marker) != std::string::npos) {
      kill(pid, signal_number);
      signalled = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  ProcessResult result;  // exit_code -1 unless it ended in time
  if (exited) result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.output = read_and_remove(out_template);
  result.errors = read_and_remove(err_template);
  result.pid = pid;
  return result;
}

ProcessResult kill_after(const std::vector<std::string>& argv, const std::string& marker, double delay_seconds,
                         double timeout_seconds) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("cannot create a pipe for a command's stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = spawn(argv, actions, pid);
  close(pipe_fds[1]);
  if (spawned != 0) {
    close(pipe_fds[0]);
    throw std::runtime_error("cannot start " + argv[0]);
  }

  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds);
  ProcessResult result;
  result.pid = pid;
  bool killed = false, timed_out = false;
  auto kill_now = [&] {
    kill(pid, SIGKILL);
    killed = true;
  };
  if (marker.empty()) {
    std::this_thread::sleep_for(std::chrono::duration<double>(delay_seconds));
    kill_now();
  }
  char chunk[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 && !killed) {
      kill_now();
      timed_out = true;
    }
    pollfd readable{pipe_fds[0], POLLIN, 0};
    if (poll(&readable, 1, killed ? 1000 : static_cast<int>(std::max<long long>(left, 1))) <= 0) continue;
    const ssize_t count = read(pipe_fds[0], chunk, sizeof chunk);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) break;  // every writer has closed it: the process has ended
    const std::size_t searched_from = result.errors.size() >= marker.size() ? result.errors.size() - marker.size() : 0;
    result.errors.append(chunk, static_cast<std::size_t>(count));
    if (!killed && result.errors.find(marker, searched_from) != std::string::npos) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay_seconds));
      kill_now();
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = timed_out ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace mambakit::test
