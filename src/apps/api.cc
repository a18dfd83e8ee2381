// hlm api: the device's OpenAI-compatible HTTP endpoint. Apps talk to it as to any local LLM
// server (POST /v1/chat/completions, /v1/completions, streamed or not); every request runs the
// hybrid loop with the device SLM here and the cloud LLM in this process (--llm) or behind
// `hlm serve` (--cloud). Stops on SIGINT/SIGTERM.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "api/service.h"
#include "apps/command.h"
#include "apps/options.h"
#include "apps/run_options.h"
#include "cloud/cloud_verifier.h"
#include "server/scheduler.h"
#include "server/security.h"

namespace hlm::apps {
namespace {

struct ApiCommandOptions {
  std::string listen = "127.0.0.1:8080";
  PairOptions models;
  MethodOptions method;
  ProfileOptions profile;
  CostOptions cost;
  ThreadOptions threads;
  CloudLinkOptions link;
  api::ApiOptions api;
  size_t max_body_bytes = 1 << 20;
  unsigned idle_timeout_s = 15;
};

int serve_api(const ApiCommandOptions& o) {
  const StopSignals stop_signals;

  auto pair = o.link.cloud.empty() ? o.models.load() : load_device_only(o.models);
  if (!pair) return fail(pair.error());
  auto profile = o.profile.resolve(*pair);
  if (!profile) return fail(profile.error());
  auto cost = o.cost.resolve(*pair, o.threads.threads);
  if (!cost) return fail(cost.error());
  auto cfg = o.method.config(o.api.default_max_tokens, o.models.ctx, profile->policy, *cost);
  if (!cfg) return fail(cfg.error());
  ThreadPool pool(o.threads.threads);
  std::unique_ptr<CloudVerifier> local;
  std::unique_ptr<Verifier> cloud;
  std::string cloud_name;
  if (o.link.cloud.empty()) {
    // Concurrent requests' verifications share batched forwards, as in `hlm serve`.
    local = std::make_unique<CloudVerifier>(pair->llm, pool,
                                            CloudOptions{o.api.max_concurrent, o.models.ctx});
    cloud = std::make_unique<server::ScheduledVerifier>(*local);
    cloud_name = pair->llm->path();
  } else {
    auto ro = o.link.remote(cfg->channel);
    if (!ro) return fail(ro.error());
    auto remote = std::make_unique<RemoteVerifier>(*ro);
    if (auto note = adopt_server_power(*remote, o.method, *cfg); !note.empty())
      std::fprintf(stderr, "%s\n", note.c_str());
    cloud = std::move(remote);
    cloud_name = o.link.cloud;
  }
  api::ApiOptions ao = o.api;
  ao.max_tokens_limit = std::min(ao.max_tokens_limit, o.models.ctx);
  api::ApiService service({pair->slm, cloud.get(), &pool, *cfg, cloud_name}, ao);
  http::ServerOptions ho;
  ho.listen = o.listen;
  ho.max_body_bytes = o.max_body_bytes;
  ho.idle_timeout_s = o.idle_timeout_s;
  ho.max_deferred = unsigned(ao.max_concurrent) + 16;
  auto srv =
      http::Server::start(ho, [&service](const http::Request& r) { return service.handle(r); });
  if (!srv) return fail(srv.error());
  const std::string host = server::host_of(o.listen);
  std::fprintf(stderr,
               "hlm api: listening on http://%s:%d/v1 (slm %s, cloud %s, policy %s from %s, "
               "encoding %s, device cost %s, cloud cost %s, up to %d requests at once)\n",
               host.c_str(), (*srv)->port(), pair->slm->path().c_str(), cloud_name.c_str(),
               to_string(cfg->policy).c_str(),
               profile->path.empty() ? "U-HLM's defaults" : profile->path.c_str(),
               to_string(cfg->encoding).c_str(), cfg->cost.device_name.c_str(),
               cfg->cost.cloud_name.c_str(), ao.max_concurrent);
  if (!server::is_loopback(o.listen)) {
    std::fprintf(stderr, "hlm api: warning: %s is reachable from other machines and has no key\n",
                 o.listen.c_str());
  }
  std::fflush(stderr);
  std::fprintf(stderr, "hlm api: %s, shutting down\n", stop_signals.wait());
  (*srv)->stop();
  return 0;
}

}  // namespace

void add_api_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand(
      "api", "OpenAI-compatible HTTP API on the device: apps call it as a local LLM server");
  auto o = std::make_shared<ApiCommandOptions>();
  sub->add_option("--listen", o->listen, "host:port to listen on (port 0 picks one)")
      ->capture_default_str();
  o->models.add(sub);
  o->method.add(sub);
  o->profile.add(sub);
  o->cost.add(sub);
  o->threads.add(sub);
  o->link.add(sub);
  sub->add_option("--max-concurrent", o->api.max_concurrent,
                  "Generations at once (each its own sequence); more get 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--max-tokens", o->api.default_max_tokens,
                  "Tokens generated when a request names no max_tokens")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-tokens-limit", o->api.max_tokens_limit,
                  "Largest max_tokens a request may ask for (at most --ctx); more get 400")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-body", o->max_body_bytes, "Largest request body in bytes; more get 413")
      ->capture_default_str()
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  sub->add_option("--idle-timeout", o->idle_timeout_s,
                  "Seconds a connection may move no byte (a half-sent request, a client that "
                  "stops reading a stream) before it is closed")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3600u));
  sub->add_option("--model-id", o->api.model_id, "The model name /v1/models lists")
      ->capture_default_str();
  commands.on(sub, [o] { return serve_api(*o); });
}

}  // namespace hlm::apps
