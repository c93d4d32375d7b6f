// The bad-input suite: every row of the table in docs/RELIABILITY.md ("Bad inputs") is run
// here as written, and must end with the exit code and the message the table gives. The table
// is the list users read; this test keeps it true.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "process.hpp"

namespace {

struct BadInput {
  int number = 0;
  std::string what;
  std::string command;  // as the table writes it: starts with `mambakit`, $OUT for a scratch folder
  int exit_code = 0;
  std::string message;
};

std::filesystem::path source_root() { return mambakit::test::data_dir().parent_path().parent_path(); }

// The text between the first pair of backticks of `cell`.
std::string code_span(const std::string& cell) {
  const auto open = cell.find('`');
  const auto close = cell.find('`', open + 1);
  REQUIRE(open != std::string::npos);
  REQUIRE(close != std::string::npos);
  return cell.substr(open + 1, close - open - 1);
}

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '|') {
      cells.push_back(cell);
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return cells;
}

// The rows of the table under the heading "## Bad inputs".
std::vector<BadInput> table_rows() {
  std::ifstream doc(source_root() / "docs" / "RELIABILITY.md");
  REQUIRE(doc);
  std::vector<BadInput> rows;
  std::string line;
  bool in_section = false;
  while (std::getline(doc, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Bad inputs";
    if (!in_section || line.rfind("| ", 0) != 0 || line.rfind("| #", 0) == 0) continue;
    const auto cells = split_cells(line);
    REQUIRE(cells.size() == 5);
    BadInput row;
    row.number = std::stoi(cells[0]);
    row.what = cells[1];
    row.command = code_span(cells[2]);
    row.exit_code = std::stoi(cells[3]);
    row.message = code_span(cells[4]);
    rows.push_back(row);
  }
  return rows;
}

// The shell command of a row: the CLI's path for `mambakit`, each word single-quoted (the
// table's commands have no quoting of their own), run from the source root.
std::string shell_command(const BadInput& row, const std::filesystem::path& out) {
  std::istringstream words(row.command);
  std::string word, command = fmt::format("cd '{}' &&", source_root().string());
  bool first = true;
  while (words >> word) {
    if (first) {
      REQUIRE(word == "mambakit");
      word = MAMBAKIT_CLI_PATH;
      first = false;
    }
    for (auto at = word.find("$OUT"); at != std::string::npos; at = word.find("$OUT")) {
      word.replace(at, 4, out.string());
    }
    std::string quoted;
    for (const char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += " '" + quoted + "'";
  }
  return command + " </dev/null";
}

}  // namespace

TEST_CASE("every bad input in docs/RELIABILITY.md gets its documented exit code and message") {
  const auto rows = table_rows();
  REQUIRE(rows.size() >= 40);
  const auto scratch = std::filesystem::temp_directory_path() / fmt::format("mambakit-bad-inputs-{}", ::getpid());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BadInput& row = rows[i];
    CHECK(row.number == static_cast<int>(i) + 1);
    const auto out = scratch / std::to_string(row.number);
    std::filesystem::create_directories(out);
    const auto result = mambakit::test::run_command(shell_command(row, out));
    INFO(fmt::format("row {} ({}): {}\nstdout: {}\nstderr: {}", row.number, row.what, row.command, result.output,
                     result.errors));
    CHECK(result.exit_code == row.exit_code);
    CHECK_THAT(result.output + result.errors, Catch::Matchers::Contains(row.message));
  }
  std::filesystem::remove_all(scratch);
}
