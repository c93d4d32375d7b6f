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
/// The new file gets the usual permissions (0666 less the umask). A write that fails (a full
/// disk) names the reason: "PATH: writing failed: No space left on device". Thread-safe for
/// distinct paths; concurrent writers of one path each replace it whole, the last rename wins.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

/// Writes a folder atomically: `fill` populates a fresh staging folder beside `target`, which
/// then replaces `target` in one rename (Linux's RENAME_EXCHANGE; on a file system without it
/// the old folder is moved aside first). A crash, even SIGKILL, leaves `target` either old or
/// new, plus at worst a hidden leftover beside it, which recover_interrupted_writes() (called
/// here first) clears. On failure the staging folder is removed, `target` is untouched, and
/// Error names `target` and the reason.
void write_folder_atomically(const std::filesystem::path& target,
                             const std::function<void(const std::filesystem::path& staging)>& fill);

/// Clears what writes of `target` by processes that no longer run left beside it: the hidden
/// temporary files and staging folders of write_file_atomically and write_folder_atomically
/// (".NAME.tmp-PID...", ".NAME.old-PID"). Where a crash came between moving the old folder
/// aside and renaming the new one into place (file systems without RENAME_EXCHANGE), `target`
/// is missing and the old folder is moved back. Leftovers of running processes are kept; the
/// check is by process id, so it assumes no other machine writes `target` at the same time.
void recover_interrupted_writes(const std::filesystem::path& target);

}  // namespace mambakit
