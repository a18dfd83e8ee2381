// hlm: the command-line entry point. Registers every subcommand, parses, runs the chosen one.
#include <CLI/CLI.hpp>
#include <exception>
#include <string>

#include "apps/command.h"

int main(int argc, char** argv) {
  CLI::App app{
      "hlm: hybrid edge-cloud LLM inference. A small model on the device drafts every "
      "token; a large model in the cloud verifies only the uncertain, important ones.",
      "hlm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", HLM_VERSION);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("hlm: error: ") + e.what() + "\nRun with --help for more information.\n";
  });

  hlm::apps::Commands commands;
  hlm::apps::add_version_command(app, commands);
  hlm::apps::add_models_command(app, commands);
  hlm::apps::add_generate_command(app, commands);
  hlm::apps::add_run_command(app, commands);
  hlm::apps::add_calibrate_command(app, commands);
  hlm::apps::add_eval_command(app, commands);
  hlm::apps::add_bench_command(app, commands);
  hlm::apps::add_serve_command(app, commands);
  hlm::apps::add_api_command(app, commands);
  hlm::apps::add_bench_serve_command(app, commands);  // keep after add_bench_command

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, the version, or the error
    return code == 0 ? 0 : 1;
  }
  try {
    return commands.run();
  } catch (const std::exception& e) {
    return hlm::apps::fail(e.what());
  }
}
