// hlm version: the program version and how it was built.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/command.h"
#include "apps/options.h"
#include "ops/ops.h"

namespace hlm::apps {

void add_version_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand("version", "Print the version and build configuration");
  auto opts = std::make_shared<OutputOptions>();
  opts->add(sub);
  commands.on(sub, [opts] {
#if defined(__clang__)
    const std::string compiler = std::string("clang ") + __clang_version__;
#else
    const std::string compiler = std::string("gcc ") + __VERSION__;
#endif
    const std::string kernels = ops::kernels_name();
    if (opts->json) {
      nlohmann::json j = {{"version", HLM_VERSION},
                          {"build_type", HLM_BUILD_TYPE},
                          {"compiler", compiler},
                          {"sanitize", HLM_SANITIZED != 0},
                          {"kernels", kernels}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("hlm %s (%s build, %s%s; kernels %s)\n", HLM_VERSION, HLM_BUILD_TYPE,
                  compiler.c_str(), HLM_SANITIZED ? ", ASan+UBSan" : "", kernels.c_str());
    }
    return 0;
  });
}

}  // namespace hlm::apps
