#pragma once
// A subcommand of the mambakit CLI: a name, one line of summary, and its entry point.

namespace mambakit::cli {

/// Runs a subcommand. argv[0] is the subcommand's name; returns the process exit code.
using CommandMain = int (*)(int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  CommandMain run;
};

int plugins_main(int argc, char** argv);
int info_main(int argc, char** argv);
int forward_main(int argc, char** argv);
int bench_main(int argc, char** argv);
int train_main(int argc, char** argv);
int grad_main(int argc, char** argv);
int generate_main(int argc, char** argv);
int classify_main(int argc, char** argv);
int embed_main(int argc, char** argv);
int check_plugin_main(int argc, char** argv);
int set_head_main(int argc, char** argv);
int tokenize_main(int argc, char** argv);
int quantize_main(int argc, char** argv);
int eval_main(int argc, char** argv);

}  // namespace mambakit::cli
