// hlm models teacher-text: the teacher writes training text for tools/distill (src/distill),
// several sequences per batched forward, one .npz per sequence, resumable.
#include "distill/teacher_text.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "engine/model.h"
#include "models/registry.h"
#include "util/thread_pool.h"

namespace hlm::apps {
namespace {

struct TeacherTextCliOptions {
  std::string model = "llm";
  std::string out;
  int64_t first = 0;
  int64_t count = 0;
  int batch = 8;
  TeacherTextOptions text;
  ThreadOptions threads;
  OutputOptions output;
};

int run_teacher_text(const TeacherTextCliOptions& o) {
  auto path = resolve_model(o.model);
  if (!path) return fail(path.error());
  auto model = Model::load(*path);
  if (!model) return fail(model.error());
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec)
    return fail(fmt::format("--out {}: cannot create the directory: {}", o.out, ec.message()));
  auto file = [&](int64_t id) { return fmt::format("{}/{:05d}.npz", o.out, id); };
  std::vector<int64_t> todo;
  for (int64_t id = o.first; id < o.first + o.count; ++id)
    if (!std::filesystem::exists(file(id))) todo.push_back(id);

  ThreadPool pool(o.threads.threads);
  Context ctx(*model, o.batch, teacher_text_ctx((*model)->tokenizer(), o.text), pool);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t written = 0, tokens = 0;
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto dropped = teacher_text(ctx, todo, o.text, [&](TeacherSequence&& s) -> Status {
    if (Status st = save_npz(s, file(s.id)); !st) return st;
    ++written;
    tokens += int64_t(s.tokens.size());
    const double t = elapsed();
    std::fprintf(stderr,
                 "\rteacher-text: %ld of %zu sequences written, %ld tokens, %.0f tokens/s, about "
                 "%.1f min left ",
                 long(written), todo.size(), long(tokens), tokens / t,
                 double(todo.size()) / double(written) * t / 60 - t / 60);
    return ok_status();
  });
  if (!todo.empty()) std::fputc('\n', stderr);
  if (!dropped) return fail(dropped.error());
  const double s = elapsed();
  if (o.output.json) {
    nlohmann::json j = {{"out", o.out},       {"already", o.count - int64_t(todo.size())},
                        {"written", written}, {"dropped", *dropped},
                        {"tokens", tokens},   {"seconds", s},
                        {"model", *path}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "%s: %ld sequences written (%ld tokens in %.1f s), %ld dropped (no end of the user "
        "turn within --max-user), %ld already there\n",
        o.out.c_str(), long(written), long(tokens), s, long(*dropped),
        long(o.count - int64_t(todo.size())));
  }
  return 0;
}

}  // namespace

void add_teacher_text_command(CLI::App* models, Commands& commands) {
  auto* sub = models->add_subcommand(
      "teacher-text",
      "Write distillation text: the model asks itself a question, answers it, and keeps its top "
      "logits at every position (DIR/NNNNN.npz for sequences FIRST..FIRST+COUNT-1; existing ones "
      "are skipped)");
  auto o = std::make_shared<TeacherTextCliOptions>();
  sub->add_option("--model", o->model, "Teacher: a GGUF path or a known name")
      ->capture_default_str();
  sub->add_option("--out", o->out, "Directory for the sequences")->required();
  sub->add_option("--count", o->count, "Sequences")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
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
