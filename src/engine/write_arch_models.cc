// write_arch_models: writes every arch_test_spec model (each architecture in every weight type the
// writer can quantise) into a directory, named <arch>-<type>.gguf, for
// tools/reference/record_arch_fixtures.py to run through llama.cpp. The tests regenerate the same
// bytes from the same specs, so these files are never committed.
#include <cstdio>
#include <filesystem>
#include <string>

#include "engine/model_writer.h"
#include "ops/ops.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }
  for (const char* arch : hlm::kTinyArchitectures) {
    for (const hlm::TensorType type : hlm::kEngineTensorTypes) {
      if (!hlm::ops::can_quantize(type)) continue;
      const std::string name = std::string(arch) + "-" + std::string(hlm::info(type).name);
      const std::filesystem::path path = dir / (name + ".gguf");
      const hlm::Status st = hlm::write_tiny_model(path.string(), hlm::arch_test_spec(arch, type));
      if (!st.ok()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), st.error().message.c_str());
        return 1;
      }
      std::printf("%s\n", path.c_str());
    }
  }
  return 0;
}
