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

/// Writes a folder atomically: `fill` populates a fresh staging folder beside `target`, which
/// then replaces `target` by renames (the old folder, if any, is moved aside first and removed
/// after). A crash leaves `target` either old or new, plus at worst a hidden leftover folder
/// beside it. On failure the staging folder is removed and Error names `target`.
void write_folder_atomically(const std::filesystem::path& target,
                             const std::function<void(const std::filesystem::path& staging)>& fill);

}  // namespace mambakit
