#include "mambakit/atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>
#include <streambuf>
#include <string>
#include <string_view>
#include <vector>

#include "mambakit/error.hpp"

namespace mambakit {
namespace {

// The temporary file beside the target: created empty under a name no one else uses, removed
// again unless it has been renamed over the target.
class PendingFile {
 public:
  PendingFile(const std::filesystem::path& target, const std::filesystem::path& folder) : target_(target) {
    static std::atomic<unsigned> counter{0};
    thread_local std::minstd_rand random(std::random_device{}());
    int error = 0;
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = folder / fmt::format(".{}.tmp-{}-{}-{:08x}", target.filename().string(), ::getpid(),
                                   counter.fetch_add(1), static_cast<unsigned>(random()));
      // O_EXCL and the usual 0666 mode: the umask decides the permissions, as for any new file.
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        return;
      }
      error = errno;
      if (error != EEXIST) {
        break;
      }
    }
    throw Error(fmt::format("{}: cannot create a temporary file in {}: {}", target.string(), folder.string(),
                            std::strerror(error)));
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  ~PendingFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    if (!renamed_) {
      ::unlink(path_.c_str());
    }
  }

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] int fd() const { return fd_; }

  // fsync, close, rename over the target.
  void commit() {
    if (::fsync(fd_) != 0) {
      fail("fsync of the temporary file failed");
    }
    const int result = ::close(fd_);
    fd_ = -1;
    if (result != 0) {
      fail("closing the temporary file failed");
    }
    if (::rename(path_.c_str(), target_.c_str()) != 0) {
      fail("cannot rename the temporary file over it");
    }
    renamed_ = true;
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    const int error = errno;
    throw Error(fmt::format("{}: {}: {}", target_.string(), what, std::strerror(error)));
  }

  std::filesystem::path target_;
  std::filesystem::path path_;
  int fd_ = -1;
  bool renamed_ = false;
};

// The output buffer of a temporary file: writes to its descriptor and keeps the errno of the
// first write that failed (ENOSPC for a full disk), which a std::ofstream would not tell.
class DescriptorBuffer final : public std::streambuf {
 public:
  explicit DescriptorBuffer(int fd) : fd_(fd), buffer_(std::size_t{1} << 16) {
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }

  // 0, or the errno of the write that failed.
  [[nodiscard]] int error() const { return error_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) {
      return traits_type::eof();
    }
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }

  std::streamsize xsputn(const char* data, std::streamsize count) override {
    if (count < static_cast<std::streamsize>(buffer_.size())) {
      return std::streambuf::xsputn(data, count);
    }
    return drain() && write_all(data, static_cast<std::size_t>(count)) ? count : 0;
  }

  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const bool written = write_all(pbase(), static_cast<std::size_t>(pptr() - pbase()));
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return written;
  }

  bool write_all(const char* data, std::size_t size) {
    while (error_ == 0 && size > 0) {
      const ssize_t written = ::write(fd_, data, size);
      if (written < 0) {
        if (errno != EINTR) {
          error_ = errno;
        }
        continue;
      }
      data += written;
      size -= static_cast<std::size_t>(written);
    }
    return error_ == 0;
  }

  int fd_;
  std::vector<char> buffer_;
  int error_ = 0;
};

// The process id in a leftover's name ".NAME.tmp-PID..." or ".NAME.old-PID", or 0.
pid_t writer_of(std::string_view leftover, std::string_view name) {
  for (std::string_view kind : {".tmp-", ".old-"}) {
    const std::size_t prefix = 1 + name.size() + kind.size();
    if (leftover.size() <= prefix || leftover[0] != '.' || leftover.substr(1, name.size()) != name ||
        leftover.substr(1 + name.size(), kind.size()) != kind) {
      continue;
    }
    pid_t pid = 0;
    const char* end = leftover.data() + leftover.size();
    const auto [rest, error] = std::from_chars(leftover.data() + prefix, end, pid);
    if (error == std::errc() && pid > 0 && (rest == end || *rest == '-')) {
      return pid;
    }
  }
  return 0;
}

bool running(pid_t pid) { return pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM; }

// Makes the rename itself durable. Best effort: some file systems refuse fsync on a folder.
void sync_folder(const std::filesystem::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  if (!path.has_filename()) {
    throw Error(fmt::format("'{}': not a file path to write", path.string()));
  }
  const std::filesystem::path folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  PendingFile pending(path, folder);
  {
    DescriptorBuffer buffer(pending.fd());
    std::ostream stream(&buffer);
    try {
      write(stream);
    } catch (const std::exception& error) {
      throw Error(fmt::format("{}: not written: {}", path.string(), error.what()));
    }
    stream.flush();
    if (buffer.error() != 0) {
      throw Error(fmt::format("{}: writing failed: {}", path.string(), std::strerror(buffer.error())));
    }
    if (!stream) {
      throw Error(fmt::format("{}: writing failed (the writer failed the stream)", path.string()));
    }
  }
  pending.commit();
  sync_folder(folder);
}

void write_folder_atomically(const std::filesystem::path& target_path,
                             const std::function<void(const std::filesystem::path& staging)>& fill) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(target_path);
  const std::string name = target.filename().string();
  const fs::path staging = target.parent_path() / fmt::format(".{}.tmp-{}", name, getpid());
  const fs::path previous = target.parent_path() / fmt::format(".{}.old-{}", name, getpid());
  recover_interrupted_writes(target);
  std::error_code error;
  fs::remove_all(staging, error);
  fs::create_directories(staging, error);
  if (error) throw Error(fmt::format("{}: cannot create the staging folder {}: {}", target.string(), staging.string(), error.message()));
  try {
    fill(staging);
    // One atomic swap where the file system has it: a crash leaves the old or the new folder
    // at `target`, never none. Elsewhere the old one is moved aside first (see
    // recover_interrupted_writes for a crash between the two renames).
    if (!fs::exists(target)) {
      fs::rename(staging, target);
    } else if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
      fs::remove_all(staging, error);  // now the old folder
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
      fs::rename(target, previous);
      fs::rename(staging, target);
    } else {
      throw Error(fmt::format("cannot swap in the staging folder {}: {}", staging.string(), std::strerror(errno)));
    }
  } catch (const std::exception& failure) {
    fs::remove_all(staging, error);
    if (!fs::exists(target) && fs::exists(previous)) fs::rename(previous, target, error);
    throw Error(fmt::format("{}: writing the folder failed: {}", target.string(), failure.what()));
  }
  fs::remove_all(previous, error);
  sync_folder(target.parent_path());
}

void recover_interrupted_writes(const std::filesystem::path& target_path) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(target_path);
  const std::string name = target.filename().string();
  std::error_code error;
  std::vector<fs::path> staging, previous;
  for (fs::directory_iterator it(target.parent_path(), error), end; !error && it != end; it.increment(error)) {
    const std::string leftover = it->path().filename().string();
    const pid_t pid = writer_of(leftover, name);
    if (pid == 0 || running(pid)) {
      continue;
    }
    (leftover.compare(1 + name.size(), 5, ".old-") == 0 ? previous : staging).push_back(it->path());
  }
  // A crash between moving the old folder aside and renaming the new one into place: the old
  // one goes back (both are whole; the new one's step is simply redone).
  if (!fs::exists(target) && !previous.empty()) {
    fs::rename(previous.front(), target, error);
    if (error) {
      throw Error(fmt::format("{}: cannot restore it from {}: {}", target.string(), previous.front().string(),
                              error.message()));
    }
    previous.erase(previous.begin());
  }
  for (const auto* list : {&staging, &previous}) {
    for (const auto& leftover : *list) {
      fs::remove_all(leftover, error);
    }
  }
}

}  // namespace mambakit
