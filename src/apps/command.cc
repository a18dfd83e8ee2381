// Commands: dispatch to the chosen subcommand and the common error exit.
#include "apps/command.h"

#include <cstdio>

namespace hlm::apps {

int Commands::run() const {
  for (const auto& [sub, action] : actions_) {
    if (sub->parsed()) return action();
  }
  return fail("no command given; run `hlm --help`");
}

int fail(std::string_view message) {
  std::fflush(stdout);
  std::fprintf(stderr, "hlm: error: %.*s\n", static_cast<int>(message.size()), message.data());
  return 1;
}

}  // namespace hlm::apps
