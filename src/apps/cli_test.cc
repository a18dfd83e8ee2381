// Tests of the hlm command line as a user sees it: exit codes and messages, run as a subprocess.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/model_writer.h"
#include "http/listen.h"
#include "models/testing.h"

namespace {

using hlm::testing::ScopedEnv;
using hlm::testing::ScopedTempDir;

using Outcome = hlm::testing::CommandOutput;

// Runs `hlm <args>` (stdout and stderr together unless `redirect` says otherwise).
Outcome hlm(const std::string& args, const std::string& redirect = "2>&1") {
  return hlm::testing::run_command(std::string("'") + HLM_BINARY + "' " + args + " " + redirect);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(HlmCli, VersionAndHelp) {
  Outcome v = hlm("version");
  EXPECT_EQ(v.code, 0) << v.out;
  EXPECT_TRUE(contains(v.out, "hlm ")) << v.out;
  Outcome j = hlm("version --json", "2>/dev/null");
  EXPECT_EQ(j.code, 0);
  const auto info = nlohmann::json::parse(j.out);
  EXPECT_TRUE(info.contains("version")) << j.out;
  EXPECT_FALSE(info.value("kernels", std::string()).empty()) << j.out;
  Outcome h = hlm("--help");
  EXPECT_EQ(h.code, 0);
  for (const char* sub : {"generate", "models", "version"}) EXPECT_TRUE(contains(h.out, sub));
}

TEST(HlmCli, NoSubcommandIsAnError) {
  Outcome r = hlm("");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "hlm: error:")) << r.out;
}

TEST(HlmCli, UnknownFlagExitsWithOne) {
  Outcome r = hlm("generate --model x.gguf --prompt hi --no-such-flag");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "--no-such-flag")) << r.out;
  Outcome s = hlm("no-such-command");
  EXPECT_EQ(s.code, 1) << s.out;
}

TEST(HlmCli, InvalidValueExitsWithOne) {
  Outcome r = hlm("generate --model x.gguf --prompt hi --max-tokens lots");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "max-tokens")) << r.out;
  Outcome p = hlm("generate --model x.gguf");
  EXPECT_EQ(p.code, 1) << p.out;
  EXPECT_TRUE(contains(p.out, "--prompt")) << p.out;
}

// Real-valued options refuse NaN, infinity and values outside their range before any model is
// loaded, naming the option (CLI11's own range checks would let NaN through).
TEST(HlmCli, SamplingAndTimingOptionsRefuseNaNAndOutOfRange) {
  for (const std::string bad :
       {"generate --model x.gguf --prompt hi --top-p nan",
        "generate --model x.gguf --prompt hi --temp nan",
        "generate --model x.gguf --prompt hi --top-p 0", "run --prompt hi --top-p 1.5",
        "run --prompt hi --top-p -1", "run --prompt hi --temp inf", "run --prompt hi --top-k -3",
        "run --prompt hi --theta-max nan", "run --prompt hi --cloud-timeout 0",
        "serve --batch-gather nan", "generate --model x.gguf --prompt hi --top-k -3",
        "serve --rate-limit nan"}) {
    Outcome r = hlm(bad);
    EXPECT_EQ(r.code, 1) << bad << "\n" << r.out;
    const std::string flag =
        bad.substr(bad.rfind(" --") + 1, bad.rfind(' ') - bad.rfind(" --") - 1);
    EXPECT_TRUE(contains(r.out, flag)) << bad << "\n" << r.out;
  }
  Outcome help = hlm("run --help");
  EXPECT_TRUE(contains(help.out, "NUMBER in (0, 1]")) << help.out;  // --top-p
  // The range is written as people write it, not as the largest double spelled out.
  Outcome top_k = hlm("run --prompt hi --top-k -3");
  EXPECT_TRUE(contains(top_k.out, "-3 is not a number in [0, inf)")) << top_k.out;
}

TEST(HlmCli, MissingModelFileIsNamed) {
  Outcome r = hlm("generate --model /nonexistent/dir/model.gguf --prompt hi");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "hlm: error:")) << r.out;
  EXPECT_TRUE(contains(r.out, "/nonexistent/dir/model.gguf")) << r.out;
}

TEST(HlmCli, UnfetchedModelSaysToFetch) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  Outcome r = hlm("generate --model llm --prompt hi");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "hlm models fetch llm")) << r.out;
  EXPECT_TRUE(contains(r.out, dir / "SmolLM2-135M-Instruct.Q4_1.gguf")) << r.out;
}

TEST(HlmCli, CorruptModelFileIsAnErrorNotACrash) {
  ScopedTempDir dir;
  const std::string bad = dir / "bad.gguf";
  std::ofstream(bad) << "this is not a gguf file";
  Outcome r = hlm("generate --model '" + bad + "' --prompt hi");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "hlm: error:")) << r.out;
  EXPECT_TRUE(contains(r.out, bad)) << r.out;
}

// An unreachable --cloud is not fatal (the device carries on SLM-only) but is said, with why.
TEST(HlmCli, UnreachableCloudIsReported) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  Outcome r = hlm("run --slm '" + model + "' --cloud 127.0.0.1:1 --cloud-timeout 1 --policy hlm " +
                  "--prompt hi --max-tokens 3");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "warning:")) << r.out;
  EXPECT_TRUE(contains(r.out, "unreachable")) << r.out;
  EXPECT_TRUE(contains(r.out, "127.0.0.1:1")) << r.out;
}

// Every listener refuses what it cannot honour, naming the flag, before it says "listening".
TEST(HlmCli, ListenersRefuseBadPortsAndPortsInUse) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  const std::string m = "'" + model + "'";
  auto held = hlm::http::open_listen_socket({"127.0.0.1", 0}, "test");
  ASSERT_TRUE(held) << held.error().message;
  const std::string taken = "127.0.0.1:" + std::to_string(held->port);
  const std::pair<std::string, std::string> cases[] = {
      {"serve --llm " + m + " --listen 127.0.0.1:99999", "0 to 65535"},
      {"serve --llm " + m + " --listen " + taken, "another process holds the port"},
      {"serve --llm " + m + " --listen 127.0.0.1:0 --metrics-listen " + taken, "--metrics-listen"},
      {"api --slm " + m + " --llm " + m + " --listen 127.0.0.1:99999", "0 to 65535"},
      {"api --slm " + m + " --llm " + m + " --listen " + taken, "another process holds the port"},
  };
  for (const auto& [args, want] : cases) {
    Outcome r = hlm(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, want)) << args << "\n" << r.out;
    EXPECT_FALSE(contains(r.out, "listening")) << args << "\n" << r.out;
  }
  ::close(held->fd);
}

// The generated text ends with a newline before the summary even when stdout and stderr share
// one pipe (stdout is then block-buffered), and the summary says what was uploaded and saved.
TEST(HlmCli, RunEndsTheTextBeforeTheSummary) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  Outcome r = hlm("run --slm '" + model + "' --llm '" + model +
                  "' --policy hlm --encoding 'topk(8,8)' --prompt hi --max-tokens 8");
  ASSERT_EQ(r.code, 0) << r.out;
  const size_t at = r.out.find("hlm run [");
  ASSERT_NE(at, std::string::npos) << r.out;
  ASSERT_GT(at, 1u) << "no text before the summary: " << r.out;
  EXPECT_EQ(r.out[at - 1], '\n') << r.out;
  EXPECT_TRUE(contains(r.out, "uploaded 8 of 8 tokens (100%)")) << r.out;
  EXPECT_TRUE(contains(r.out, "less uplink")) << r.out;
  // --json: stdout is one JSON object, with the upload figures.
  Outcome j = hlm("run --slm '" + model + "' --llm '" + model +
                      "' --policy hlm --prompt hi --max-tokens 8 --json",
                  "2>/dev/null");
  ASSERT_EQ(j.code, 0) << j.out;
  const auto s = nlohmann::json::parse(j.out);
  EXPECT_EQ(s["skipped"], 0);
  EXPECT_EQ(s["uploads"], s["n_tokens"]);
  EXPECT_GT(s["uplink_bytes_per_upload"].get<uint64_t>(), 0u);
  EXPECT_GE(s["standard_hlm_uplink_bytes"].get<uint64_t>(), s["uplink_bytes"].get<uint64_t>());
}

// Pair profiles as a user meets them: without one the run falls back to U-HLM's values and says
// so once on stderr (never in --json stdout); `calibrate --save` writes one the next run finds;
// explicit flags override it; a profile of other models or a malformed one is refused by name.
// Cost profiles: none matches a new model (measured, said once per side), `hlm bench engine
// --save-cost` makes one per side, and then `auto` picks them; --json names what was used.
TEST(HlmCli, CostProfilesMadeByBenchAndPickedByShape) {
  ScopedTempDir dir;
  ScopedEnv cache("HLM_MODELS_DIR", dir.path());
  ScopedEnv costs("HLM_COSTS_DIR", dir / "costs");
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  const std::string run =
      "run --slm '" + model + "' --llm '" + model + "' --prompt hi --max-tokens 4 --json ";
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };

  Outcome none = hlm(run + "--threads 1", "2>" + (dir / "err.txt"));
  ASSERT_EQ(none.code, 0) << none.out;
  const std::string err = read(dir / "err.txt");
  EXPECT_TRUE(contains(err, "no device cost profile matches")) << err;
  EXPECT_TRUE(contains(err, "no cloud cost profile matches")) << err;
  auto j = nlohmann::json::parse(none.out);
  EXPECT_EQ(j["cost"], nlohmann::json({{"device", "measured"}, {"cloud", "measured"}}));

  for (const char* role : {"device", "cloud"}) {
    const std::string file = dir / (std::string("costs/") + role + "/tiny-" + role + ".json");
    Outcome made = hlm("bench engine --model '" + model + "' --threads 1 --reps 1 --save-cost '" +
                           file + "' --cost-role " + role,
                       "2>/dev/null");
    ASSERT_EQ(made.code, 0) << made.out;
    const auto p = nlohmann::json::parse(read(file));
    EXPECT_EQ(p["role"], role);
    EXPECT_TRUE(contains(p["command"].get<std::string>(), "--save-cost")) << p["command"];
    EXPECT_EQ(p["model"]["n_layer"], 2);
  }
  Outcome found = hlm(run + "--threads 1", "2>" + (dir / "err2.txt"));
  ASSERT_EQ(found.code, 0) << found.out;
  EXPECT_FALSE(contains(read(dir / "err2.txt"), "cost profile")) << read(dir / "err2.txt");
  j = nlohmann::json::parse(found.out);
  EXPECT_EQ(j["cost"]["device"], "tiny-device");
  EXPECT_EQ(j["cost"]["cloud"], "tiny-cloud");
  EXPECT_EQ(j["cost"]["device_sha256"].get<std::string>().size(), 12u) << j["cost"];
  // Profiles made at one thread, a run at two: the figures are the profile's, and a note says so.
  Outcome two = hlm(run + "--threads 2", "2>&1 >/dev/null");
  EXPECT_TRUE(contains(two.out,
                       "cost profile tiny-device was measured at 1 thread(s); this run "
                       "uses 2"))
      << two.out;
  j = nlohmann::json::parse(hlm(run + "--threads 1 --device-cost measured", "2>/dev/null").out);
  EXPECT_EQ(j["cost"]["device"], "measured");
  EXPECT_EQ(j["cost"]["cloud"], "tiny-cloud");
  Outcome unknown = hlm(run + "--threads 1 --cloud-cost nope");
  EXPECT_EQ(unknown.code, 1);
  EXPECT_TRUE(contains(unknown.out, "--cloud-cost nope: no such cloud cost profile"))
      << unknown.out;
}

TEST(HlmCli, PairProfileDefaultsOverridesAndFallback) {
  ScopedTempDir dir;
  ScopedEnv cache("HLM_MODELS_DIR", dir.path());
  ScopedEnv profiles("HLM_PROFILES_DIR", std::nullopt);
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  const std::string pair = "--slm '" + model + "' --llm '" + model + "' ";
  const std::string run = "run " + pair + "--prompt hi --max-tokens 4 --json ";

  Outcome fallback = hlm(run + "--policy uhlm", "2>" + (dir / "err.txt"));
  ASSERT_EQ(fallback.code, 0) << fallback.out;
  std::ifstream err_in(dir / "err.txt");
  const std::string err((std::istreambuf_iterator<char>(err_in)), std::istreambuf_iterator<char>());
  const size_t first = err.find("no pair profile");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("no pair profile", first + 1), std::string::npos) << "said twice: " << err;
  const auto f = nlohmann::json::parse(fallback.out);  // stdout is JSON alone
  EXPECT_EQ(f["profile"]["fallback"], "U-HLM");
  EXPECT_TRUE(f["profile"]["path"].is_null());

  std::ofstream(dir / "prompts.jsonl") << "{\"id\": \"a\", \"prompt\": \"hi\"}\n"
                                       << "{\"id\": \"b\", \"prompt\": \"ho\"}\n";
  Outcome cal = hlm("calibrate " + pair + "--prompts '" + (dir / "prompts.jsonl") +
                        "' --chat false --max-tokens 4 --json --save",
                    "2>/dev/null");
  ASSERT_EQ(cal.code, 0) << cal.out;
  const std::string saved = nlohmann::json::parse(cal.out)["profile"];
  EXPECT_EQ(saved.rfind(dir / "profiles/", 0), 0u) << saved;  // the cache's profiles/
  std::ifstream saved_in(saved);
  auto p = nlohmann::json::parse(saved_in);
  // `hlm models fingerprint` prints what the profile matches the model by.
  Outcome fp = hlm("models fingerprint '" + model + "'", "2>&1");
  ASSERT_EQ(fp.code, 0) << fp.out;
  EXPECT_EQ(fp.out, p["slm"]["fingerprint"].get<std::string>() + "  " + model + "\n");
  // Set a recognisable u_th in the saved profile.
  p["u_th"] = 0.42;
  std::ofstream(saved) << p.dump(2);

  Outcome found = hlm(run + "--policy uhlm", "2>&1 >/dev/null");
  EXPECT_FALSE(contains(found.out, "no pair profile")) << found.out;
  const auto j = nlohmann::json::parse(hlm(run + "--policy uhlm", "2>/dev/null").out);
  EXPECT_EQ(j["profile"]["path"], saved);
  EXPECT_EQ(j["policy"], "uhlm:u_th=0.42");
  const auto flag = nlohmann::json::parse(hlm(run + "--policy uhlm --u-th 0.9", "2>/dev/null").out);
  EXPECT_EQ(flag["policy"], "uhlm:u_th=0.9");
  const auto inline_arg =
      nlohmann::json::parse(hlm(run + "--policy 'uhlm(0.7)'", "2>/dev/null").out);
  EXPECT_EQ(inline_arg["policy"], "uhlm:u_th=0.7");
  const auto none =
      nlohmann::json::parse(hlm(run + "--policy uhlm --profile none", "2>/dev/null").out);
  EXPECT_EQ(none["profile"]["fallback"], "U-HLM");

  // The profile of another device model, and a malformed one.
  const std::string other = dir / "other.gguf";
  hlm::TinyModelSpec spec;
  spec.seed = 7;
  ASSERT_TRUE(hlm::write_tiny_model(other, spec).ok());
  Outcome wrong =
      hlm("run --slm '" + other + "' --llm '" + other + "' --prompt hi --profile '" + saved + "'");
  EXPECT_EQ(wrong.code, 1) << wrong.out;
  EXPECT_TRUE(contains(wrong.out, "another device model")) << wrong.out;
  EXPECT_TRUE(contains(wrong.out, saved)) << wrong.out;
  p.erase("importance");
  std::ofstream(dir / "bad.json") << p.dump(2);
  Outcome bad = hlm(run + "--profile '" + (dir / "bad.json") + "'");
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_TRUE(contains(bad.out, dir / "bad.json")) << bad.out;
  EXPECT_TRUE(contains(bad.out, "'importance' is missing")) << bad.out;
}

// `hlm bench serve` on a tiny model: every round of every device count is reported, the figure
// is the median of the rounds, the batches grow with the devices, and no call fails.
TEST(HlmCli, BenchServeReportsMediansOverRounds) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  Outcome r = hlm("bench serve --llm '" + model +
                      "' --devices 1,3 --seconds 0.3 --repeat 3 --max-context 256 --json",
                  "2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rounds"], 3);
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& point : j["results"]) {
    std::vector<double> runs = point["verifications_per_s_runs"].get<std::vector<double>>();
    ASSERT_EQ(runs.size(), 3u);
    std::sort(runs.begin(), runs.end());
    EXPECT_EQ(point["verifications_per_s"].get<double>(), runs[1]);
    EXPECT_GT(runs[0], 0.0);
    EXPECT_EQ(point["errors"], 0);
  }
  EXPECT_EQ(j["results"][0]["mean_batch"].get<double>(), 1.0);
  EXPECT_GT(j["results"][1]["mean_batch"].get<double>(), 1.0);
}

// `hlm models derive` on bad input: the corrupt teacher or delta is named, nothing is written.
TEST(HlmCli, ModelsDeriveNamesBadInputs) {
  ScopedTempDir dir;
  const std::string bad = dir / "bad.gguf", out = dir / "student.gguf";
  std::ofstream(bad) << "this is not a gguf file";
  Outcome t =
      hlm("models derive --teacher '" + bad + "' --delta '" + bad + "' --out '" + out + "'");
  EXPECT_EQ(t.code, 1) << t.out;
  EXPECT_TRUE(contains(t.out, bad)) << t.out;
  Outcome d = hlm("models derive --teacher '" + bad + "' --delta '" + dir / "missing.gguf" +
                  "' --out '" + out + "'");
  EXPECT_EQ(d.code, 1) << d.out;
  EXPECT_TRUE(contains(d.out, "hlm: error:")) << d.out;
  EXPECT_FALSE(std::ifstream(out).good());
  Outcome m = hlm("models derive --delta x.gguf");
  EXPECT_EQ(m.code, 1) << m.out;
  EXPECT_TRUE(contains(m.out, "--out")) << m.out;
}

// models shortlist writes a model whose head keeps the listed ids plus the end-of-generation ids,
// which then generates; bad id files are named with what is wrong.
TEST(HlmCli, ModelsShortlist) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf", out = dir / "short.gguf", ids = dir / "ids.txt";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  std::ofstream(ids) << "7, 3 100\n3 200\n";
  Outcome r = hlm("models shortlist --json --model '" + model + "' --ids '" + ids + "' --out '" +
                  out + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["ids_listed"], 5);
  EXPECT_GE(j["ids_kept"].get<int>(), 5);  // 3, 7, 100, 200 and the end-of-generation ids
  EXPECT_LT(j["ids_kept"].get<int>(), 10);
  Outcome gen =
      hlm("run --slm '" + out + "' --llm '" + model + "' --policy slm --prompt hi --max-tokens 4");
  EXPECT_EQ(gen.code, 0) << gen.out;

  std::ofstream(ids) << "7 x3\n";
  Outcome bad = hlm("models shortlist --model '" + model + "' --ids '" + ids + "' --out '" +
                    dir / "b.gguf" + "'");
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_TRUE(contains(bad.out, "'x3' is not a token id")) << bad.out;
  std::ofstream(ids) << "7 99999\n";
  Outcome range = hlm("models shortlist --model '" + model + "' --ids '" + ids + "' --out '" +
                      dir / "c.gguf" + "'");
  EXPECT_EQ(range.code, 1) << range.out;
  EXPECT_TRUE(contains(range.out, "id 99999 is outside")) << range.out;
  Outcome twice = hlm("models shortlist --model '" + out + "' --ids '" + ids + "' --out '" +
                      dir / "d.gguf" + "'");
  EXPECT_EQ(twice.code, 1) << twice.out;
  Outcome missing = hlm("models shortlist --model '" + model + "' --ids '" + dir / "none.txt" +
                        "' --out '" + dir / "e.gguf" + "'");
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_TRUE(contains(missing.out, "none.txt")) << missing.out;
}

// models agreement: a model against itself agrees everywhere; a bad line of the text is named.
TEST(HlmCli, ModelsAgreement) {
  ScopedTempDir dir;
  const std::string model = dir / "tiny.gguf", text = dir / "text.jsonl";
  ASSERT_TRUE(hlm::write_tiny_model(model, {}).ok());
  std::ofstream(text) << "{\"id\": 0, \"n_prompt\": 2, \"tokens\": [1, 100, 101, 102, 103]}\n"
                      << "{\"id\": 1, \"n_prompt\": 0, \"tokens\": [1, 200, 201]}\n";
  Outcome r = hlm("models agreement --json --llm '" + model + "' --slm '" + model + "' --tokens '" +
                  text + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["positions"], 3 + 2);
  EXPECT_NEAR(j["accept"].get<double>(), 1.0, 1e-9);
  EXPECT_EQ(j["top1"].get<double>(), 1.0);
  std::ofstream(text) << "{\"id\": 0, \"n_prompt\": 2, \"tokens\": [1, 100]}\n{\"id\": 1}\n";
  Outcome bad =
      hlm("models agreement --llm '" + model + "' --slm '" + model + "' --tokens '" + text + "'");
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_TRUE(contains(bad.out, "--tokens " + text + " line 2")) << bad.out;
}

// teacher-text names what is wrong: the model, its vocabulary, the output directory, the counts.
TEST(HlmCli, ModelsTeacherTextNamesBadInputs) {
  ScopedTempDir dir;
  const std::string bad = dir / "bad.gguf", tiny = dir / "tiny.gguf";
  std::ofstream(bad) << "this is not a gguf file";
  ASSERT_TRUE(hlm::write_tiny_model(tiny, hlm::TinyModelSpec{}).ok());
  const std::string out = dir / "text";
  Outcome b = hlm("models teacher-text --model '" + bad + "' --out '" + out + "' --count 2");
  EXPECT_EQ(b.code, 1) << b.out;
  EXPECT_TRUE(contains(b.out, bad)) << b.out;
  Outcome v = hlm("models teacher-text --model '" + tiny + "' --out '" + out + "' --count 2");
  EXPECT_EQ(v.code, 1) << v.out;
  EXPECT_TRUE(contains(v.out, "<|im_start|>")) << v.out;
  std::ofstream(dir / "file") << "x";
  Outcome o =
      hlm("models teacher-text --model '" + tiny + "' --out '" + dir / "file" + "/sub' --count 2");
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_TRUE(contains(o.out, "--out")) << o.out;
  Outcome c = hlm("models teacher-text --model '" + tiny + "' --out '" + out + "' --count 0");
  EXPECT_NE(c.code, 0) << c.out;
  EXPECT_TRUE(contains(c.out, "--count")) << c.out;
  Outcome none = hlm("models teacher-text --model '" + tiny + "' --out '" + out + "'");
  EXPECT_EQ(none.code, 1) << none.out;
  EXPECT_TRUE(contains(none.out, "--count")) << none.out;

  // --score: text kept as tokens gets its rows (no ChatML needed); a bad line is named.
  const std::string lines = dir / "text.jsonl";
  std::ofstream(lines) << R"({"id": 3, "n_prompt": 1, "tokens": [1, 2, 3, 4]})"
                       << "\n"
                       << R"({"id": 5, "n_prompt": 2, "tokens": [4, 3]})"
                       << "\n";
  Outcome s = hlm("models teacher-text --model '" + tiny + "' --out '" + out + "' --score '" +
                      lines + "' --top 4 --json",
                  "2>/dev/null");
  EXPECT_EQ(s.code, 0) << s.out;
  EXPECT_TRUE(contains(s.out, "\"written\":2")) << s.out;
  EXPECT_TRUE(std::filesystem::exists(out + "/00003.npz"));
  EXPECT_TRUE(std::filesystem::exists(out + "/00005.npz"));
  Outcome again = hlm("models teacher-text --model '" + tiny + "' --out '" + out + "' --score '" +
                          lines + "' --json",
                      "2>/dev/null");
  EXPECT_TRUE(contains(again.out, "\"already\":2")) << again.out;
  std::ofstream(lines, std::ios::app) << R"({"id": 6, "tokens": "abc"})"
                                      << "\n";
  Outcome m =
      hlm("models teacher-text --model '" + tiny + "' --out '" + out + "' --score '" + lines + "'");
  EXPECT_EQ(m.code, 1) << m.out;
  EXPECT_TRUE(contains(m.out, "line 3")) << m.out;
}

// synth writes a loadable file with the given vocabulary, and names what is wrong otherwise.
TEST(HlmCli, ModelsSynth) {
  ScopedTempDir dir;
  const std::string vocab = dir / "vocab.gguf", out = dir / "synth.gguf";
  ASSERT_TRUE(hlm::write_tiny_model(vocab, hlm::TinyModelSpec{}).ok());
  Outcome ok = hlm("models synth --shape test-llama --type Q4_K_M --vocab '" + vocab + "' --out '" +
                       out + "' --threads 2 --json",
                   "2>/dev/null");
  ASSERT_EQ(ok.code, 0) << ok.out;
  const auto j = nlohmann::json::parse(ok.out);
  EXPECT_EQ(j["shape"], "test-llama");
  EXPECT_EQ(j["type"], "Q4_K_M");
  EXPECT_GT(j["size"].get<int64_t>(), 0);
  Outcome run = hlm("generate --model '" + out + "' -p hi -n 2 --temp 0");
  EXPECT_EQ(run.code, 0) << run.out;

  for (const auto& [args, says] :
       {std::pair{"--shape llama-9b --out x.gguf", "unknown shape 'llama-9b'"},
        {"--shape test-llama --type Q3_K --out x.gguf", "unknown --type 'Q3_K'"},
        {"--shape test-llama --arch qwen2 --out x.gguf", "is a 'llama' model"},
        {"--shape test-llama --vocab /nonexistent.gguf --out x.gguf", "/nonexistent.gguf"},
        {"--shape test-llama --vocab VOCAB --out /nonexistent/x.gguf", "/nonexistent"}}) {
    std::string a = args;
    if (auto p = a.find("VOCAB"); p != std::string::npos) a.replace(p, 5, vocab);
    Outcome r = hlm("models synth " + a);
    EXPECT_EQ(r.code, 1) << a << ": " << r.out;
    EXPECT_TRUE(contains(r.out, says)) << a << ": " << r.out;
  }
}

TEST(HlmCli, ModelsListJson) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  Outcome r = hlm("models list --json", "2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["dir"], dir.path());
  ASSERT_GE(j["models"].size(), 1u);
  const auto& m = j["models"][0];
  EXPECT_EQ(m["name"], "llm");
  EXPECT_EQ(m["file"], "SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(m["size"], 98362432);
  EXPECT_EQ(m["present"], false);
  EXPECT_EQ(m["sha_ok"], false);
  Outcome t = hlm("models list");
  EXPECT_EQ(t.code, 0) << t.out;
  EXPECT_TRUE(contains(t.out, "SmolLM2-135M-Instruct.Q4_1.gguf")) << t.out;
}

TEST(HlmCli, ModelsFetchErrors) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  Outcome u = hlm("models fetch no-such-model");
  EXPECT_EQ(u.code, 1) << u.out;
  EXPECT_TRUE(contains(u.out, "no-such-model")) << u.out;
  ScopedEnv py("HLM_PYTHON", "/nonexistent/python3");
  Outcome r = hlm("models fetch llm");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "/nonexistent/python3 not found")) << r.out;
}

}  // namespace
