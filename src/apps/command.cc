// Commands: dispatch to the chosen subcommand and the common error exit.
#include "apps/command.h"

#include <pthread.h>

#include <cstdio>

namespace hlm::apps {

int Commands::run() const {
  for (const auto& [sub, action] : actions_) {
    if (sub->parsed()) return action();
  }
  return fail("no command given; run `hlm --help`");
}

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

const char* StopSignals::wait() const {
  int sig = 0;
  sigwait(&set_, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

int fail(std::string_view message) {
  std::fflush(stdout);
  std::fprintf(stderr, "hlm: error: %.*s\n", static_cast<int>(message.size()), message.data());
  return 1;
}

}  // namespace hlm::apps
