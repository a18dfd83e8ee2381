// hlm models teacher-text: the teacher writes training text for tools/distill (src/distill),
// several sequences per batched forward, one .npz per sequence, resumable; and hlm models
// agreement, how closely a student follows it on such text.
#include "distill/teacher_text.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "distill/agreement.h"
#include "engine/model.h"
#include "eval/prompts.h"
#include "models/registry.h"
#include "util/thread_pool.h"

namespace hlm::apps {
namespace {

struct TeacherTextCliOptions {
  std::string model = "llm";
  std::string out;
  std::string score;
  std::string questions;
  int64_t first = 0;
  int64_t count = 0;
  int batch = 8;
  TeacherTextOptions text;
  ThreadOptions threads;
  OutputOptions output;
};

// Sequences to score: one JSON object per line; a bad line is named by its number (and the
// option that gave the file).
Result<std::vector<TeacherSequence>> read_token_lines(const std::string& flag,
                                                      const std::string& path, int n_vocab) {
  std::ifstream in(path);
  if (!in) return make_error("{} {}: cannot open it", flag, path);
  std::vector<TeacherSequence> seqs;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    TeacherSequence s;
    bool ok = j.is_object() && j.contains("id") && j["id"].is_number_integer() &&
              j.contains("tokens") && j["tokens"].is_array() && !j["tokens"].empty() &&
              j.value("n_prompt", -1) >= 0;
    if (ok) {
      s.id = j["id"].get<int64_t>();
      s.n_prompt = j["n_prompt"].get<int>();
      for (const auto& t : j["tokens"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab) {
          ok = false;
          break;
        }
        s.tokens.push_back(t.get<int32_t>());
      }
    }
    if (!ok || s.id < 0 || s.n_prompt > int(s.tokens.size())) {
      return make_error(
          "{} {} line {}: expected {{\"id\": N >= 0, \"n_prompt\": N, \"tokens\": [ids "
          "0..{}]}} with n_prompt <= the number of tokens",
          flag, path, no, n_vocab - 1);
    }
    seqs.push_back(std::move(s));
  }
  return seqs;
}

int run_teacher_text(const TeacherTextCliOptions& o) {
  if (o.score.empty() && o.count < 1)
    return fail("--count: required unless --score gives the text");
  auto path = resolve_model(o.model);
  if (!path) return fail(path.error());
  auto model = Model::load(*path);
  if (!model) return fail(model.error());
  TeacherTextOptions text = o.text;
  if (!o.questions.empty()) {
    auto prompts = load_prompts(o.questions);
    if (!prompts) return fail(prompts.error());  // an empty set is an error there too
    for (auto& p : *prompts) text.questions.push_back(std::move(p.prompt));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec)
    return fail(fmt::format("--out {}: cannot create the directory: {}", o.out, ec.message()));
  auto file = [&](int64_t id) { return fmt::format("{}/{:05d}.npz", o.out, id); };
  // An empty marker for an id whose user turn did not end within --max-user: the seeds are
  // fixed, so a resumed run would draw (and drop) the same turn again.
  auto marker = [&](int64_t id) { return fmt::format("{}/{:05d}.dropped", o.out, id); };
  const auto t0 = std::chrono::steady_clock::now();
  int64_t written = 0, tokens = 0;
  size_t n_todo = 0;
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto save = [&](TeacherSequence&& s) -> Status {
    if (Status st = save_npz(s, file(s.id)); !st) return st;
    ++written;
    tokens += int64_t(s.tokens.size());
    const double t = elapsed();
    std::fprintf(stderr,
                 "\rteacher-text: %ld of %zu sequences written, %ld tokens, %.0f tokens/s, about "
                 "%.1f min left ",
                 long(written), n_todo, long(tokens), tokens / t,
                 double(n_todo) / double(written) * t / 60 - t / 60);
    return ok_status();
  };
  ThreadPool pool(o.threads.threads);
  int64_t already = 0, dropped_before = 0;
  Result<int64_t> dropped = int64_t{0};
  if (!o.score.empty()) {
    auto seqs = read_token_lines("--score", o.score, (*model)->config().n_vocab);
    if (!seqs) return fail(seqs.error());
    already = int64_t(std::erase_if(
        *seqs, [&](const TeacherSequence& s) { return std::filesystem::exists(file(s.id)); }));
    size_t longest = 0;
    for (const auto& s : *seqs) longest = std::max(longest, s.tokens.size());
    n_todo = seqs->size();
    Context ctx(*model, o.batch, int(longest) + 1, pool);
    if (Status st = teacher_score(ctx, std::move(*seqs), o.text.top, save); !st)
      return fail(st.error());
  } else {
    std::vector<int64_t> todo;
    for (int64_t id = o.first; id < o.first + o.count; ++id) {
      if (std::filesystem::exists(marker(id)))
        ++dropped_before;
      else if (!std::filesystem::exists(file(id)))
        todo.push_back(id);
    }
    n_todo = todo.size();
    already = o.count - int64_t(n_todo) - dropped_before;
    Context ctx(*model, o.batch, teacher_text_ctx((*model)->tokenizer(), text), pool);
    dropped = teacher_text(ctx, todo, text, save, [&](int64_t id) -> Status {
      if (!std::ofstream(marker(id)))
        return make_error("--out {}: cannot write {}", o.out, marker(id));
      return ok_status();
    });
  }
  if (n_todo > 0) std::fputc('\n', stderr);
  if (!dropped) return fail(dropped.error());
  const double s = elapsed();
  if (o.output.json) {
    nlohmann::json j = {{"out", o.out},
                        {"already", already},
                        {"written", written},
                        {"dropped", *dropped},
                        {"dropped_before", dropped_before},
                        {"tokens", tokens},
                        {"seconds", s},
                        {"model", *path}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s: %ld sequences %s (%ld tokens in %.1f s), ", o.out.c_str(), long(written),
                o.score.empty() ? "written" : "scored", long(tokens), s);
    if (o.score.empty())
      std::printf("%ld dropped (%s), ", long(*dropped),
                  o.questions.empty() ? "no end of the user turn within --max-user"
                                      : "a question over --max-user tokens");
    std::printf("%ld already there", long(already));
    if (dropped_before > 0)
      std::printf(", %ld dropped before (DIR/ID.dropped; delete them to draw again)",
                  long(dropped_before));
    std::printf("\n");
  }
  return 0;
}

struct AgreementCliOptions {
  std::string llm = "llm";
  std::string slm = "slm";
  std::string tokens;
  ThreadOptions threads;
  OutputOptions output;
};

int run_agreement(const AgreementCliOptions& o) {
  std::shared_ptr<const Model> models[2];
  for (int i = 0; i < 2; ++i) {
    auto path = resolve_model(i == 0 ? o.llm : o.slm);
    if (!path) return fail(path.error());
    auto m = Model::load(*path);
    if (!m) return fail(m.error());
    models[i] = std::move(m).value();
  }
  auto seqs = read_token_lines("--tokens", o.tokens, models[0]->config().n_vocab);
  if (!seqs) return fail(seqs.error());
  size_t longest = 1;
  for (const auto& s : *seqs) longest = std::max(longest, s.tokens.size());
  ThreadPool pool(o.threads.threads);
  Context llm(models[0], 1, int(longest), pool), slm(models[1], 1, int(longest), pool);
  auto a = agreement(llm, slm, *seqs);
  if (!a) return fail(a.error());
  if (o.output.json) {
    std::printf("%s\n", nlohmann::json({{"llm", models[0]->path()},
                                        {"slm", models[1]->path()},
                                        {"sequences", seqs->size()},
                                        {"positions", a->positions},
                                        {"accept", a->accept},
                                        {"top1", a->top1},
                                        {"ppl_llm", a->ppl_teacher},
                                        {"ppl_slm", a->ppl_student}})
                            .dump()
                            .c_str());
  } else {
    std::printf(
        "%s against %s, %zu sequences, %ld positions: acceptance sum min(p, q) %.4f, top-1 "
        "agreement %.4f, perplexity %.2f (slm) / %.2f (llm)\n",
        models[1]->path().c_str(), models[0]->path().c_str(), seqs->size(), long(a->positions),
        a->accept, a->top1, a->ppl_student, a->ppl_teacher);
  }
  return 0;
}

}  // namespace

void add_teacher_text_command(CLI::App* models, Commands& commands) {
  auto* agree = models->add_subcommand(
      "agreement",
      "How closely a device model follows a cloud model on given text: the mean acceptance rate "
      "sum min(p, q) at T = 1, top-1 agreement and both perplexities, over every position after "
      "each sequence's prompt");
  auto ao = std::make_shared<AgreementCliOptions>();
  agree->add_option("--llm", ao->llm, "The cloud (target) model")->capture_default_str();
  agree->add_option("--slm", ao->slm, "The device (draft) model")->capture_default_str();
  agree
      ->add_option("--tokens", ao->tokens,
                   "The text: a JSON-lines file of {\"id\", \"n_prompt\", \"tokens\"} (as "
                   "teacher-text --score reads)")
      ->required()
      ->check(CLI::ExistingFile);
  ao->threads.add(agree);
  ao->output.add(agree, "Print the figures as JSON");
  commands.on(agree, [ao] { return run_agreement(*ao); });

  auto* sub = models->add_subcommand(
      "teacher-text",
      "Write distillation text: the model asks itself a question, answers it, and keeps its top "
      "logits at every position (DIR/NNNNN.npz for sequences FIRST..FIRST+COUNT-1; existing ones "
      "are skipped, as are ids dropped before: DIR/NNNNN.dropped)");
  auto o = std::make_shared<TeacherTextCliOptions>();
  sub->add_option("--model", o->model, "Teacher: a GGUF path or a known name")
      ->capture_default_str();
  sub->add_option("--out", o->out, "Directory for the sequences")->required();
  sub->add_option("--count", o->count, "Sequences (required unless --score)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  sub->add_option("--score", o->score,
                  "Score text written before instead: a JSON-lines file of {\"id\", \"n_prompt\", "
                  "\"tokens\"}; each gets its rows from one forward and is saved as DIR/ID.npz")
      ->check(CLI::ExistingFile);
  sub->add_option("--questions", o->questions,
                  "Ask these questions instead of drawing them: a prompt set (JSON lines with "
                  "\"prompt\", as data/prompts/*.jsonl); sequence i asks question i mod N, so "
                  "--count k*N gives k answers to each")
      ->check(CLI::ExistingFile)
      ->excludes("--score");
  sub->add_option("--first", o->first, "First sequence number")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100000000}));
  sub->add_option("--batch", o->batch, "Sequences decoded together in one forward")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--system", o->text.system, "System prompt the questions are asked under")
      ->capture_default_str();
  sub->add_option("--max-user", o->text.max_user,
                  "Tokens a question may take (a longer one is dropped)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_option("--max-new", o->text.max_new, "Answer tokens at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 8192));
  sub->add_option("--top", o->text.top, "Logits kept per position")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--seed", o->text.seed,
                  "Seed: sequence i samples its question with seed + 2i, its answer with seed + "
                  "2i + 1")
      ->capture_default_str();
  o->threads.add(sub);
  o->output.add(sub, "Print a JSON summary on stdout (progress goes to stderr)");
  commands.on(sub, [o] { return run_teacher_text(*o); });
}

}  // namespace hlm::apps
