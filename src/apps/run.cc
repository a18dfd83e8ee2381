// hlm run: hybrid generation with a device SLM and a cloud LLM under one policy, in one process
// (the verifier runs in-process behind the same interface the network client implements).
// Streams the text, ends it with a newline, then prints a summary in plain words on stderr;
// --json prints the summary object instead.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string_view>

#include "apps/command.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "apps/run_options.h"
#include "cloud/cloud_verifier.h"
#include "eval/report.h"
#include "models/registry.h"
#include "protocol/remote_verifier.h"

namespace hlm::apps {
namespace {

// The generated text on stdout, flushed token by token. finish() ends it with a newline (unless
// it already ends with one) and flushes, so that whatever follows on stderr starts a line of
// its own even when both streams go to one terminal or pipe.
class TextOut {
 public:
  void write(std::string_view s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    last_ = s.back();
  }
  void finish(std::string_view rest) {
    write(rest);
    if (last_ != '\0' && last_ != '\n') std::fputc('\n', stdout);
    std::fflush(stdout);
    last_ = '\0';
  }

 private:
  char last_ = '\0';  // the last byte written; '\0' before any
};

struct RunOptions {
  PairOptions models;
  MethodOptions method;
  ProfileOptions profile;
  CostOptions cost;
  ThreadOptions threads;
  PromptOptions prompt;
  OutputOptions output;
  std::string trace_file;
  bool trace_signals = false;
  CloudLinkOptions link;  // --cloud: verify through `hlm serve` instead of an in-process LLM
};

int run_hybrid(const RunOptions& o) {
  auto pair = o.link.cloud.empty() ? o.models.load() : load_device_only(o.models);
  if (!pair) return fail(pair.error());
  auto profile = o.profile.resolve(*pair);
  if (!profile) return fail(profile.error());
  auto cost = o.cost.resolve(*pair, o.threads.threads);
  if (!cost) return fail(cost.error());
  auto cfg = o.method.config(o.prompt.max_tokens, o.models.ctx, profile->policy, *cost);
  if (!cfg) return fail(cfg.error());
  cfg->measure_uncertainty = cfg->measure_importance = o.trace_signals;
  auto prompt = prepare_prompt(*pair->slm, o.prompt, o.models.ctx);
  if (!prompt) return fail(prompt.error());

  std::ofstream trace;
  if (!o.trace_file.empty()) {
    trace.open(o.trace_file, std::ios::trunc);
    if (!trace) return fail(fmt::format("--trace: cannot write {}", o.trace_file));
  }
  ThreadPool pool(o.threads.threads);
  std::unique_ptr<Verifier> cloud;
  if (o.link.cloud.empty()) {
    cloud = std::make_unique<CloudVerifier>(pair->llm, pool, CloudOptions{1, o.models.ctx});
  } else {
    auto ro = o.link.remote(cfg->channel);
    if (!ro) return fail(ro.error());
    auto remote = std::make_unique<RemoteVerifier>(*ro);
    if (auto note = adopt_server_power(*remote, o.method, *cfg); !note.empty() && !o.output.json)
      std::fprintf(stderr, "%s\n", note.c_str());
    cloud = std::move(remote);
  }
  Device device(pair->slm, pool, *cfg);
  Utf8Stream stream;
  TextOut out;
  auto on_token = [&](const TokenTrace& t) {
    if (trace)
      trace << trace_json(t).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    if (!o.output.json && !pair->slm->tokenizer().is_eog(t.token)) out.write(stream.push(t.piece));
    return true;
  };
  auto result = device.generate(*prompt, cloud.get(), on_token);
  if (!o.output.json) out.finish(stream.flush());  // before anything goes to stderr
  if (!result) return fail(result.error());
  const double wall_tps = result->wall_s > 0 ? double(result->tokens.size()) / result->wall_s : 0;
  if (o.output.json) {
    auto j = summary_json(*result);
    j["policy"] = to_string(cfg->policy);
    j["profile"] = profile_json(*profile);
    j["cost"] = cost_json(cfg->cost);
    j["encoding"] = to_string(cfg->encoding);
    j["channel"] = cfg->channel.name;
    j["slm"] = pair->slm->path();
    j["llm"] = pair->llm ? pair->llm->path() : o.link.cloud;
    j["wall_tokens_per_s"] = wall_tps;
    j["reconnects"] = result->reconnects;
    j["slm_only"] = result->slm_only;
    const UploadAccount acc = upload_account(*result, *cfg, pair->slm->config().n_vocab);
    j["skipped"] = acc.skipped;
    j["uplink_bytes_per_upload"] = acc.uplink_bytes_per_upload;
    j["standard_hlm_uplink_bytes"] = acc.standard_hlm_uplink_bytes;
    if (!result->cloud_error.empty()) j["cloud_error"] = result->cloud_error;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    const std::string via = o.link.cloud.empty()
                                ? ""
                                : fmt::format(" via {}{}", o.link.cloud,
                                              o.link.emulate_channel ? " (channel emulated)" : "");
    std::fprintf(stderr, "%s\n",
                 summary_text(*result, *cfg, pair->slm->config().n_vocab, wall_tps, via).c_str());
    if (result->slm_only > 0) {
      std::fprintf(stderr,
                   "hlm run: warning: %lld tokens the policy chose to verify were kept "
                   "unverified: the cloud was unreachable (%s)\n",
                   static_cast<long long>(result->slm_only), result->cloud_error.c_str());
    }
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand(
      "run", "Hybrid generation: the SLM drafts, the LLM verifies what the policy uploads");
  auto o = std::make_shared<RunOptions>();
  o->models.add(sub);
  o->method.add(sub);
  o->profile.add(sub);
  o->cost.add(sub);
  o->prompt.add(sub);
  o->threads.add(sub);
  sub->add_option("--trace", o->trace_file, "Write one JSON line per token to this file");
  sub->add_flag("--trace-signals", o->trace_signals,
                "Compute u and the importance (--estimator) of every token, whatever the policy "
                "uses: `--policy hlm --trace F --trace-signals` shows the LLM's verdict on every "
                "draft beside the signals a gate would see (tools/eval/gate_analysis.py)")
      ->needs("--trace");
  o->link.add(sub);
  o->output.add(sub, "Print the run summary as one JSON object instead of the text");
  commands.on(sub, [o] { return run_hybrid(*o); });
}

}  // namespace hlm::apps
