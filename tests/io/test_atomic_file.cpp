// write_file_atomically: the old file survives every failure, and no temporary is left behind.
// write_folder_atomically swaps folders whole; recover_interrupted_writes clears what killed
// writers left.

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "io_test_support.hpp"
#include "mambakit/atomic_file.hpp"

namespace fs = std::filesystem;
using mambakit::recover_interrupted_writes;
using mambakit::write_file_atomically;
using mambakit::write_folder_atomically;
using mambakit::test::error_message;
using mambakit::test::read_bytes;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;
using Catch::Matchers::Contains;

namespace {

std::size_t files_in(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("write_file_atomically creates and replaces files") {
  TempDir dir;
  const fs::path file = dir / "out.bin";
  write_file_atomically(file, [](std::ostream& out) { out << "first"; });
  CHECK(read_bytes(file) == "first");
  write_file_atomically(file, [](std::ostream& out) { out.write("a\0b", 3); });
  CHECK(read_bytes(file) == std::string("a\0b", 3));
  CHECK(files_in(dir.path()) == 1);

  // The new file gets the permissions any newly created file gets (0666 less the umask).
  std::ofstream(dir / "plain.bin") << "x";
  CHECK(fs::status(file).permissions() == fs::status(dir / "plain.bin").permissions());
}

TEST_CASE("write_file_atomically keeps the old file when the writer throws") {
  TempDir dir;
  const fs::path file = dir / "keep.txt";
  write_bytes(file, "old contents");

  SECTION("a std::exception becomes an Error naming the path and carrying the message") {
    const auto message = error_message([&] {
      write_file_atomically(file, [](std::ostream& out) {
        out << "partial new contents";
        throw std::runtime_error("generator broke");
      });
    });
    CHECK_THAT(message, Contains(file.string()) && Contains("generator broke"));
  }
  SECTION("a mambakit::Error from the writer is wrapped with the path") {
    const auto message = error_message([&] {
      write_file_atomically(file, [](std::ostream&) { throw mambakit::Error("inner problem"); });
    });
    CHECK_THAT(message, Contains(file.string()) && Contains("inner problem"));
  }
  SECTION("anything else is rethrown as is") {
    CHECK_THROWS_AS(write_file_atomically(file, [](std::ostream& out) {
                      out << "partial";
                      throw 42;
                    }),
                    int);
  }
  SECTION("a writer that fails the stream") {
    const auto message = error_message([&] {
      write_file_atomically(file, [](std::ostream& out) {
        out << "partial";
        out.setstate(std::ios::failbit);
      });
    });
    CHECK_THAT(message, Contains(file.string()) && Contains("failed"));
  }
  CHECK(read_bytes(file) == "old contents");
  CHECK(files_in(dir.path()) == 1);
}

TEST_CASE("write_file_atomically names the path when it cannot write there") {
  TempDir dir;
  const fs::path missing = dir / "no" / "such" / "folder.txt";
  CHECK_THAT(error_message([&] { write_file_atomically(missing, [](std::ostream& out) { out << "x"; }); }),
             Contains(missing.string()));
  CHECK_FALSE(fs::exists(missing));

  // A folder in the way: the rename fails and the temporary is removed.
  fs::create_directory(dir / "taken");
  write_bytes(dir / "taken" / "inside", "x");
  CHECK_THAT(error_message([&] { write_file_atomically(dir / "taken", [](std::ostream& out) { out << "x"; }); }),
             Contains((dir / "taken").string()));
  CHECK(fs::is_directory(dir / "taken"));
  CHECK(files_in(dir.path()) == 1);
}

TEST_CASE("write_folder_atomically swaps folders whole, and recover_interrupted_writes clears dead writers' leftovers") {
  TempDir dir;
  const fs::path target = dir / "model";
  auto fill_with = [](const std::string& text) {
    return [text](const fs::path& staging) { write_bytes(staging / "a.txt", text); };
  };
  write_folder_atomically(target, fill_with("one"));
  write_folder_atomically(target, fill_with("two"));
  CHECK(read_bytes(target / "a.txt") == "two");
  CHECK(files_in(dir.path()) == 1);

  const pid_t dead = ::fork();  // a process id that no longer runs
  if (dead == 0) ::_exit(0);
  REQUIRE(dead > 0);
  ::waitpid(dead, nullptr, 0);
  const pid_t alive = ::getpid();
  const std::string dead_id = std::to_string(dead), alive_id = std::to_string(alive);
  for (const auto& name : {".model.tmp-" + dead_id, ".model.old-" + dead_id, ".model.tmp-" + alive_id}) {
    fs::create_directory(dir / name);
    write_bytes(dir / name / "a.txt", "left");
  }
  write_bytes(dir / (".model.tmp-" + dead_id + "-0-0000abcd"), "a file's temporary");
  write_bytes(dir / (".other.tmp-" + dead_id), "another target's");
  recover_interrupted_writes(target);
  CHECK(read_bytes(target / "a.txt") == "two");
  CHECK(fs::exists(dir / (".model.tmp-" + alive_id)));
  CHECK(fs::exists(dir / (".other.tmp-" + dead_id)));
  CHECK(files_in(dir.path()) == 3);

  // Killed between moving the old folder aside and renaming the new one in: the old one returns.
  fs::rename(target, dir / (".model.old-" + dead_id));
  recover_interrupted_writes(target);
  CHECK(read_bytes(target / "a.txt") == "two");
  CHECK(files_in(dir.path()) == 3);
}
