// ApiService (see service.h): routing, one generation per deferred request, OpenAI's answer
// and chunk shapes, and the endpoint's metrics.
#include "api/service.h"

#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <random>

#include "eval/report.h"

namespace hlm::api {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

http::Response error(int status, std::string_view message) {
  return http::json_response(status, http::error_body(status, message));
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

// One request's state, owned by its deferred work; holds a concurrency slot until its answer is
// about to be sent (release()) or it is dropped unrun.
struct ApiService::Job {
  ApiService* service = nullptr;
  bool chat = false;
  std::string body;
  std::string id;
  int64_t created = 0;
  bool holding = true;

  Job(ApiService* s, bool c, std::string b) : service(s), chat(c), body(std::move(b)) {
    service->active_++;
  }
  ~Job() { release(); }
  // Called before the last bytes go out: a client that sends its next request as soon as it has
  // the answer must find the slot free, not wait for this thread to unwind.
  void release() {
    if (holding) service->active_--;
    holding = false;
  }
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
};

ApiService::ApiService(ApiBackend backend, ApiOptions options)
    : backend_(std::move(backend)), options_(std::move(options)) {}

http::Reply ApiService::handle(const http::Request& r) {
  const bool get = r.method == "GET" || r.method == "HEAD";
  if (r.path == "/v1/chat/completions" || r.path == "/v1/completions") {
    if (r.method != "POST") return error(405, fmt::format("{} takes POST", r.path));
    return completions(r, r.path == "/v1/chat/completions");
  }
  if (r.path == "/v1/models") {
    if (!get) return error(405, "/v1/models takes GET");
    json m = {{"id", options_.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "hlm"}};
    return http::json_response(200, dump({{"object", "list"}, {"data", json::array({m})}}));
  }
  if (r.path == "/health") {
    if (!get) return error(405, "/health takes GET");
    const int cs = cloud_state_.load();
    json h = {{"status", "ok"},
              {"slm", backend_.slm->path()},
              {"cloud", backend_.cloud ? backend_.cloud_name : "none"},
              {"cloud_state", !backend_.cloud ? "none"
                              : cs > 0        ? "reachable"
                              : cs < 0        ? "unreachable"
                                              : "unknown"},
              {"active_requests", active_.load()},
              {"max_concurrent_requests", options_.max_concurrent}};
    return http::json_response(200, dump(h));
  }
  if (r.path == "/metrics") {
    if (!get) return error(405, "/metrics takes GET");
    http::Response res;
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
    res.body = render_metrics();
    return res;
  }
  return error(404, fmt::format("no route {} {}: try POST /v1/chat/completions", r.method, r.path));
}

http::Reply ApiService::completions(const http::Request& r, bool chat) {
  requests_++;
  if (active_.load() >= options_.max_concurrent) {
    refused_busy_++;
    return error(429, fmt::format("{} requests are already running, the limit of this server "
                                  "(hlm api --max-concurrent); retry later",
                                  options_.max_concurrent));
  }
  // The slot is held from here until the work ends (or is dropped unrun).
  auto job = std::make_shared<Job>(this, chat, r.body);
  job->id = fmt::format("{}-{:x}", chat ? "chatcmpl" : "cmpl", next_id_++);
  job->created = int64_t(std::time(nullptr));
  return http::Deferred([this, job](http::Exchange& ex) { run(*job, ex); });
}

void ApiService::run(Job& job, http::Exchange& ex) {
  auto answer = [&](http::Response res) {
    job.release();
    ex.respond(std::move(res));
  };
  auto req = parse_completion_request(job.body, job.chat);
  if (!req) {
    refused_invalid_++;
    return answer(error(400, req.error().message));
  }
  const Model& slm = *backend_.slm;
  const Tokenizer& tok = slm.tokenizer();
  auto cfg = run_config_for(*req, backend_.base, options_.default_max_tokens,
                            options_.max_tokens_limit, std::random_device{}());
  if (!cfg) {
    refused_invalid_++;
    return answer(error(400, cfg.error().message));
  }
  if (!backend_.cloud) cfg->policy.kind = PolicyKind::kSlm;
  std::string text;
  if (job.chat) {
    const auto& tmpl = slm.chat_template();
    if (!tmpl) return answer(error(400, tmpl.error().message));
    text = tmpl->apply(req->messages, /*add_generation_prompt=*/true);
  } else {
    text = req->prompt;
  }
  const std::vector<int32_t> prompt = tok.encode(text, /*add_special=*/true,
                                                 /*parse_special=*/job.chat);
  if (prompt.empty()) return answer(error(400, "the prompt is empty"));
  // The device loop also needs room for its look-ahead and drafts.
  const int headroom = cfg->policy.importance.lookahead + 1 + cfg->policy.draft;
  if (int(prompt.size()) + cfg->max_tokens + headroom > cfg->n_ctx) {
    refused_invalid_++;
    return answer(
        error(400, fmt::format("the prompt has {} tokens; with max_tokens {} it does not fit the "
                               "context of {} (hlm api --ctx)",
                               prompt.size(), cfg->max_tokens, cfg->n_ctx)));
  }
  const std::string model = req->model.empty() ? options_.model_id : req->model;
  const char* object = job.chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [&](const std::string& piece, const json& finish) {
    json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
    if (job.chat) {
      choice["delta"] =
          piece.empty() && !finish.is_null() ? json::object() : json{{"content", piece}};
    } else {
      choice["text"] = piece;
    }
    return json{{"id", job.id},
                {"object", object},
                {"created", job.created},
                {"model", model},
                {"choices", json::array({choice})}};
  };
  const int cloud_was = cloud_state_.load();
  const std::string cloud_header = !backend_.cloud ? "none"
                                   : cloud_was < 0 ? "unreachable"
                                                   : "verified";
  bool client_gone = false;
  if (req->stream) {
    http::Response head;
    head.content_type = "text/event-stream";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-HLM-Cloud", cloud_header}};
    if (job.chat) {
      json first = chunk("", nullptr);
      first["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
      head.body = sse(first);
    }
    ex.begin_stream(std::move(head));
  }

  Utf8Stream utf8;
  StopMatcher stop(req->stop);
  std::string out;
  int emitted = 0;
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return true;
    out += piece;
    ++emitted;
    return !req->stream || ex.write(sse(chunk(piece, nullptr)));
  };
  auto on_token = [&](const TokenTrace& t) {
    if (!tok.is_eog(t.token) && !emit(stop.push(utf8.push(t.piece)))) {
      client_gone = true;
      return false;
    }
    if (stop.stopped()) return false;
    if (!ex.client_connected()) {
      client_gone = true;
      return false;
    }
    return true;
  };
  auto generate = [&](const RunConfig& c) {
    Device device(backend_.slm, *backend_.pool, c);
    auto result = device.generate(
        prompt, c.policy.kind == PolicyKind::kSlm ? nullptr : backend_.cloud, on_token);
    if (device.session() && backend_.cloud) (void)backend_.cloud->close(device.session());
    return result;
  };
  auto result = generate(*cfg);
  bool fell_back = false;
  if (!result && emitted == 0 && !client_gone && cfg->policy.kind != PolicyKind::kSlm) {
    // llm and spec need the cloud for every token: answer from the SLM alone instead.
    RunConfig alone = *cfg;
    alone.policy.kind = PolicyKind::kSlm;
    const std::string why = result.error().message;
    result = generate(alone);
    if (result) result->cloud_error = why;
    fell_back = true;
  }
  if (!result) {
    failed_++;
    if (req->stream) {
      job.release();
      ex.write(sse(json::parse(http::error_body(500, result.error().message))));
      ex.write("data: [DONE]\n\n");
      return;
    }
    return answer(error(500, result.error().message));
  }
  if (client_gone) {
    cancelled_++;
    return;
  }
  emit(stop.push(utf8.flush()));
  emit(stop.flush());

  const RunResult& r = *result;
  const bool unverified = r.slm_only > 0 || fell_back;
  if (backend_.cloud && cfg->policy.kind != PolicyKind::kSlm) cloud_state_ = unverified ? -1 : 1;
  const bool eog = !r.tokens.empty() && tok.is_eog(r.tokens.back());
  const std::string finish =
      stop.stopped() || eog || int(r.tokens.size()) < cfg->max_tokens ? "stop" : "length";
  const json s = summary_json(r);
  json usage = {{"prompt_tokens", prompt.size()},
                {"completion_tokens", r.tokens.size()},
                {"total_tokens", prompt.size() + r.tokens.size()},
                {"hlm",
                 {{"policy", to_string(fell_back ? PolicyKind::kSlm : cfg->policy.kind)},
                  {"encoding", to_string(cfg->encoding)},
                  {"channel", cfg->channel.name},
                  {"uploads", r.uploads},
                  {"upload_rate", s["upload_rate"]},
                  {"uplink_bytes", s["uplink_bytes"]},
                  {"downlink_bytes", s["downlink_bytes"]},
                  {"accepted", r.accepted},
                  {"resampled", r.resampled},
                  {"slm_only", r.slm_only},
                  {"energy_j", s["energy_j"]},
                  {"cost", {{"device", cfg->cost.device_name}, {"cloud", cfg->cost.cloud_name}}},
                  {"modelled_tokens_per_s", s["tokens_per_s"]},
                  {"wall_s", r.wall_s}}}};
  const std::string cloud = !backend_.cloud ? "none" : unverified ? "unreachable" : "verified";
  json hlm_field = {{"cloud", cloud}};
  if (unverified) hlm_field["cloud_error"] = r.cloud_error;
  completed_++;
  prompt_tokens_ += prompt.size();
  completion_tokens_ += r.tokens.size();
  uploads_ += uint64_t(r.uploads);
  uplink_bytes_ += s["uplink_bytes"].get<uint64_t>();
  slm_only_tokens_ += uint64_t(r.slm_only);

  if (req->stream) {
    json last = chunk("", finish);
    last["usage"] = usage;
    last["hlm"] = hlm_field;
    job.release();
    ex.write(sse(last));
    ex.write("data: [DONE]\n\n");
    return;
  }
  json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
  if (job.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", out}};
  } else {
    choice["text"] = out;
  }
  json body = {{"id", job.id},
               {"object", job.chat ? "chat.completion" : "text_completion"},
               {"created", job.created},
               {"model", model},
               {"choices", json::array({choice})},
               {"usage", usage},
               {"hlm", hlm_field}};
  http::Response res = http::json_response(200, dump(body));
  res.headers = {{"X-HLM-Cloud", cloud}};
  answer(std::move(res));
}

std::string ApiService::render_metrics() const {
  std::string o;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
  };
  o += fmt::format(
      "# HELP hlm_api_active_requests Completion requests running now.\n"
      "# TYPE hlm_api_active_requests gauge\nhlm_api_active_requests {}\n",
      active_.load());
  counter("hlm_api_requests_total", "Completion requests received.", requests_);
  counter("hlm_api_completed_total", "Completion requests answered in full.", completed_);
  counter("hlm_api_cancelled_total", "Generations ended because the client went away.", cancelled_);
  o += fmt::format(
      "# HELP hlm_api_refused_total Completion requests refused, by reason.\n"
      "# TYPE hlm_api_refused_total counter\nhlm_api_refused_total{{reason=\"busy\"}} {}\n"
      "hlm_api_refused_total{{reason=\"invalid\"}} {}\n",
      refused_busy_.load(), refused_invalid_.load());
  counter("hlm_api_failed_total", "Generations that failed.", failed_);
  counter("hlm_api_prompt_tokens_total", "Prompt tokens of answered requests.", prompt_tokens_);
  counter("hlm_api_completion_tokens_total", "Tokens generated for answered requests.",
          completion_tokens_);
  counter("hlm_api_uploads_total", "Verification requests sent to the cloud.", uploads_);
  counter("hlm_api_uplink_bytes_total", "Modelled uplink bytes of the verifications.",
          uplink_bytes_);
  counter("hlm_api_slm_only_tokens_total",
          "Tokens the policy chose to verify but kept unverified: the cloud was unreachable.",
          slm_only_tokens_);
  return o;
}

}  // namespace hlm::api
