#include "mambakit/atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

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
    std::ofstream stream(pending.path(), std::ios::binary | std::ios::trunc);
    if (!stream) {
      throw Error(fmt::format("{}: cannot open the temporary file {} for writing", path.string(),
                              pending.path().string()));
    }
    try {
      write(stream);
    } catch (const std::exception& error) {
      throw Error(fmt::format("{}: not written: {}", path.string(), error.what()));
    }
    stream.flush();
    if (!stream) {
      throw Error(fmt::format("{}: writing failed (disk full, I/O error, or the writer failed the stream)",
                              path.string()));
    }
    stream.close();
    if (!stream) {
      throw Error(fmt::format("{}: closing the temporary file failed", path.string()));
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
  std::error_code error;
  fs::remove_all(staging, error);
  fs::create_directories(staging, error);
  if (error) throw Error(fmt::format("{}: cannot create the staging folder {}: {}", target.string(), staging.string(), error.message()));
  try {
    fill(staging);
    if (fs::exists(target)) fs::rename(target, previous);
    fs::rename(staging, target);
  } catch (const std::exception& failure) {
    fs::remove_all(staging, error);
    if (!fs::exists(target) && fs::exists(previous)) fs::rename(previous, target, error);
    throw Error(fmt::format("{}: writing the folder failed: {}", target.string(), failure.what()));
  }
  fs::remove_all(previous, error);
}

}  // namespace mambakit
