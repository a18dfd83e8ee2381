// Two real processes on loopback: the built `hlm serve` (spawned with posix_spawn) and a device
// in this process. Network output equals in-process output; killing the server mid-generation
// and restarting it on the same port still completes the generation; SIGTERM stops it cleanly;
// a non-loopback listener without a key is refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "apps/run_options.h"
#include "cloud/cloud_verifier.h"
#include "device/device.h"
#include "engine/model_writer.h"
#include "models/testing.h"
#include "protocol/remote_verifier.h"

extern char** environ;

namespace hlm {
namespace {

using Clock = std::chrono::steady_clock;

struct Fixture {
  hlm::testing::ScopedTempDir dir;
  std::string llm_path, slm_path;
  std::shared_ptr<const Model> slm, llm;
  Fixture() {
    llm_path = dir / "llm.gguf";
    slm_path = dir / "slm.gguf";
    TinyModelSpec spec;
    spec.n_layer = 3;
    EXPECT_TRUE(write_tiny_model(llm_path, spec).ok());
    spec.perturb = 0.6f;
    EXPECT_TRUE(write_tiny_model(slm_path, spec).ok());
    slm = Model::load(slm_path).value();
    llm = Model::load(llm_path).value();
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// `hlm serve` as a child process; its stderr goes to a file we read for the bound port.
class ServeProcess {
 public:
  ServeProcess(std::vector<std::string> args, std::string log) : log_(std::move(log)) {
    std::vector<std::string> argv = {HLM_BINARY, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, HLM_BINARY, &fa, nullptr, cargv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~ServeProcess() { kill(SIGKILL); }

  // Waits for "listening on host:PORT"; 0 when the process exits or times out first.
  int wait_port(double timeout_s = 30) {
    const auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
    const std::regex re("listening on [^ ]*:([0-9]+)");
    while (Clock::now() < until) {
      std::smatch m;
      const std::string text = log();
      if (std::regex_search(text, m, re)) return std::stoi(m[1]);
      if (exited()) return 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  void kill(int sig) {
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, sig);
      wait_exit();
    }
  }
  // Exit status (or 128 + signal); waits at most `timeout_s`.
  int wait_exit(double timeout_s = 20) {
    const auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (status_ < 0 && Clock::now() < until) {
      if (!exited()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
  }
  bool exited() {
    if (pid_ <= 0) return true;
    if (status_ >= 0) return true;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_;
};

const std::vector<int32_t> kPrompt = {1, 70, 80, 65, 100, 101, 77};

RunConfig config(const std::string& policy, uint64_t seed) {
  RunConfig c;
  c.policy = parse_policy(policy).value();
  c.sampling.temperature = 0.8f;
  c.sampling.seed = seed;
  c.max_tokens = 40;
  c.n_ctx = 128;
  return c;
}

TEST(ServeProcess, NetworkOutputEqualsInProcessOutput) {
  Fixture& f = fixture();
  ServeProcess server({"--llm", f.llm_path, "--listen", "127.0.0.1:0", "--threads", "1",
                       "--max-context", "256", "--max-sessions", "4"},
                      f.dir / "serve1.log");
  const int port = server.wait_port();
  ASSERT_GT(port, 0) << server.log();
  for (const char* policy : {"hlm", "uhlm(0.2)", "spec", "llm"}) {
    ThreadPool pool(1);
    const RunConfig cfg = config(policy, 77);
    CloudVerifier local(f.llm, pool, {1, 256});
    auto a = Device(f.slm, pool, cfg).generate(kPrompt, &local);
    RemoteOptions ro;
    ro.target = fmt::format("127.0.0.1:{}", port);
    RemoteVerifier remote(ro);
    auto b = Device(f.slm, pool, cfg).generate(kPrompt, &remote);
    ASSERT_TRUE(a.ok()) << a.error().message;
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ(a->tokens, b->tokens) << policy;
    EXPECT_EQ(a->resampled, b->resampled) << policy;
  }
  server.kill(SIGTERM);
  EXPECT_EQ(server.wait_exit(), 0) << server.log();
  EXPECT_NE(server.log().find("shutting down"), std::string::npos) << server.log();
}

TEST(ServeProcess, DevicesPriceTheCloudAtTheServersProfilePower) {
  Fixture& f = fixture();
  ServeProcess server(
      {"--llm", f.llm_path, "--listen", "127.0.0.1:0", "--threads", "1", "--max-context", "256",
       "--cloud-cost", std::string(HLM_SOURCE_DIR) + "/costs/cloud/a100-llama-2-7b-fp16.json"},
      f.dir / "serve-power.log");
  ServeProcess measured(
      {"--llm", f.llm_path, "--listen", "127.0.0.1:0", "--threads", "1", "--max-context", "256"},
      f.dir / "serve-measured.log");
  const int port = server.wait_port(), port_measured = measured.wait_port();
  ASSERT_GT(port, 0) << server.log();
  ASSERT_GT(port_measured, 0) << measured.log();
  const auto client = [](int p) {
    RemoteOptions ro;
    ro.target = fmt::format("127.0.0.1:{}", p);
    return std::make_unique<RemoteVerifier>(ro);
  };
  auto remote_ptr = client(port), remote_measured = client(port_measured);
  RemoteVerifier& remote = *remote_ptr;
  auto h = remote.health(), hm = remote_measured->health();
  ASSERT_TRUE(h.ok()) << h.error().message;
  ASSERT_TRUE(hm.ok()) << hm.error().message;
  EXPECT_EQ(h->cloud_cost, "a100-llama-2-7b-fp16");
  ASSERT_TRUE(h->cloud_power_w.has_value());
  EXPECT_EQ(*h->cloud_power_w, 400.0);

  apps::MethodOptions method;  // narrowband: the preset's cloud power is 300 W
  method.policy = "hlm";
  RunConfig cfg = method.config(24, 256).value();
  ASSERT_EQ(cfg.channel.p_cloud_w, 300.0);
  EXPECT_NE(apps::adopt_server_power(remote, method, cfg).find("400 W"), std::string::npos);
  EXPECT_EQ(cfg.channel.p_cloud_w, 400.0);
  EXPECT_EQ(cfg.cost.cloud_name, "a100-llama-2-7b-fp16");
  ThreadPool pool(1);
  auto run = Device(f.slm, pool, cfg).generate(kPrompt, &remote);
  ASSERT_TRUE(run.ok()) << run.error().message;
  int priced = 0;
  for (const auto& t : run->trace) {
    if (t.t_llm <= 0) continue;
    EXPECT_NEAR(t.e_cloud, 400.0 * t.t_llm, 1e-9 * t.e_cloud) << "at " << t.position;
    priced++;
  }
  EXPECT_GT(priced, 0);

  // An explicit p_cloud, or a cloud profile the device names itself, wins; a measuring server
  // reports no power, and the preset's stays.
  method.channel = "narrowband:p_cloud=50";
  cfg = method.config(24, 256).value();
  apps::adopt_server_power(remote, method, cfg);
  EXPECT_EQ(cfg.channel.p_cloud_w, 50.0);
  method.channel = "narrowband";
  cfg = method.config(24, 256).value();
  cfg.cost.powers.p_cloud_w = 123.0;
  EXPECT_EQ(apps::adopt_server_power(remote, method, cfg), "");
  EXPECT_EQ(cfg.channel.p_cloud_w, 300.0);
  EXPECT_EQ(hm->cloud_cost, "measured");
  EXPECT_FALSE(hm->cloud_power_w.has_value());
  cfg = method.config(24, 256).value();
  EXPECT_EQ(apps::adopt_server_power(*remote_measured, method, cfg), "");
  EXPECT_EQ(cfg.channel.p_cloud_w, 300.0);
}

TEST(ServeProcess, KillAndRestartMidGenerationStillCompletes) {
  Fixture& f = fixture();
  const std::vector<std::string> args = {"--llm", f.llm_path,      "--threads",
                                         "1",     "--max-context", "256"};
  auto with_listen = [&](const std::string& listen) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--listen", listen});
    return a;
  };
  auto server = std::make_unique<ServeProcess>(with_listen("127.0.0.1:0"), f.dir / "serve2.log");
  const int port = server->wait_port();
  ASSERT_GT(port, 0) << server->log();

  RunConfig cfg = config("hlm", 5);
  cfg.max_tokens = 60;
  cfg.retry_initial_s = 0.05;
  cfg.retry_max_s = 0.2;
  ThreadPool pool(1);
  RemoteOptions ro;
  ro.target = fmt::format("127.0.0.1:{}", port);
  ro.timeout_s = 5;
  RemoteVerifier remote(ro);
  Device dev(f.slm, pool, cfg);
  int n = 0;
  bool restarted = false;
  std::string restart_log;
  auto on_token = [&](const TokenTrace&) {
    ++n;
    if (n == 5) server->kill(SIGKILL);  // the cloud dies without a word
    if (n == 12) {
      server = std::make_unique<ServeProcess>(with_listen(fmt::format("127.0.0.1:{}", port)),
                                              f.dir / "serve3.log");
      restarted = server->wait_port() == port;
      restart_log = server->log();
    }
    if (n >= 5) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return true;
  };
  auto r = dev.generate(kPrompt, &remote, on_token);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(restarted) << restart_log;
  // No output token is lost: the generation runs to the limit or to end-of-sequence.
  EXPECT_TRUE(r->tokens.size() == 60u || f.slm->tokenizer().is_eog(r->tokens.back()))
      << r->tokens.size();
  EXPECT_GT(r->slm_only, 0) << "tokens while the server was down are kept SLM-only";
  EXPECT_GE(r->reconnects, 1) << r->tokens.size() << " tokens, " << r->slm_only << " SLM-only";
  int uploaded_late = 0;
  for (const auto& t : r->trace) {
    if (t.position >= int(kPrompt.size()) + 15) uploaded_late += t.uploaded;
  }
  EXPECT_GT(uploaded_late, 0) << "verification resumed on the restarted server";
}

TEST(ServeProcess, RefusesNonLoopbackWithoutKeyAndBadKeyFiles) {
  Fixture& f = fixture();
  ServeProcess open_world({"--llm", f.llm_path, "--listen", "0.0.0.0:0"}, f.dir / "serve4.log");
  EXPECT_EQ(open_world.wait_exit(), 1);
  EXPECT_NE(open_world.log().find("API key"), std::string::npos) << open_world.log();

  const std::string key_file = f.dir / "short.key";
  std::ofstream(key_file) << "short\n";
  ServeProcess bad_key({"--llm", f.llm_path, "--listen", "127.0.0.1:0", "--api-key-file", key_file},
                       f.dir / "serve5.log");
  EXPECT_EQ(bad_key.wait_exit(), 1);
  EXPECT_NE(bad_key.log().find("at least 16"), std::string::npos) << bad_key.log();
}

}  // namespace
}  // namespace hlm
