#pragma once
/// \file
/// Writing a file so that readers see either the old file or the complete new one, never a
/// partly written one, even across a crash.

#include <filesystem>
#include <functional>
#include <ostream>

namespace mambakit {

/// Writes a file atomically: `write` fills a temporary file in the same folder, which is
/// flushed, fsync'ed and renamed over `path`; on any failure the temporary is removed, `path`
/// is untouched, and mambakit::Error names the path.
///
/// `write` receives a binary stream; it reports a failure by throwing (a std::exception is
/// rethrown as an Error that names `path` and carries its message; anything else is rethrown
/// as is, after the clean-up) or by leaving the stream failed. The folder of `path` must exist.
/// The new file gets the usual permissions (0666 less the umask). Thread-safe for distinct
/// paths; concurrent writers of one path each replace it whole, the last rename wins.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

}  // namespace mambakit
