// Commands: how `hlm` subcommands plug into main(). Each subcommand lives in its own file, owns
// an options struct registered with CLI11, and registers the action to run when it is chosen.
#pragma once

#include <signal.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace hlm::apps {

class Commands {
 public:
  using Action = std::function<int()>;

  // `action` runs when `sub` is the (innermost) subcommand given on the command line and
  // returns the process exit code.
  void on(CLI::App* sub, Action action) { actions_.emplace_back(sub, std::move(action)); }

  // After parsing: runs the chosen subcommand's action. 1 when none was chosen.
  int run() const;

 private:
  std::vector<std::pair<CLI::App*, Action>> actions_;
};

// For servers: blocks SIGINT and SIGTERM in this thread and every thread started after it (so
// gRPC's and the HTTP server's threads never receive them) and ignores SIGPIPE; wait() then
// sleeps until one arrives and returns its name.
class StopSignals {
 public:
  StopSignals();
  const char* wait() const;

 private:
  sigset_t set_;
};

// Prints "hlm: error: <message>" to stderr and returns exit code 1.
int fail(std::string_view message);
inline int fail(const Error& e) { return fail(e.message); }

// The subcommands; each is defined in its own <name>.cc. To add one (bench engine, run,
// calibrate, serve, eval): write <name>.cc with an options struct and add_<name>_command(),
// declare it here, list the file in CMakeLists.txt and add one line to main.cc.
void add_version_command(CLI::App& app, Commands& commands);
void add_models_command(CLI::App& app, Commands& commands);
// `hlm models teacher-text` (teacher_text.cc), registered by add_models_command.
void add_teacher_text_command(CLI::App* models, Commands& commands);
void add_generate_command(CLI::App& app, Commands& commands);
void add_bench_command(CLI::App& app, Commands& commands);
void add_run_command(CLI::App& app, Commands& commands);
void add_calibrate_command(CLI::App& app, Commands& commands);
void add_eval_command(CLI::App& app, Commands& commands);
void add_serve_command(CLI::App& app, Commands& commands);
void add_api_command(CLI::App& app, Commands& commands);
void add_bench_serve_command(CLI::App& app, Commands& commands);  // after add_bench_command

}  // namespace hlm::apps
