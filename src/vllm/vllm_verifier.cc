// VllmVerifier implementation.
#include "vllm/vllm_verifier.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace hlm::vllm {
namespace {

using Clock = std::chrono::steady_clock;

// Strings whose tokenisation must agree between hlm and vLLM: words with and without a leading
// space, digits, punctuation, code, whitespace runs and non-ASCII text.
constexpr const char* kProbes[] = {
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "  def f(x):\n\treturn x ** 2  # 1234567890\n",
    "naïve café — 日本語のテキスト, emoji 🙂 and ümlaut",
};

std::string trim_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

struct Served {
  std::string id;
  int max_model_len = 0;
};

Result<Served> served_model(HttpClient& http, const std::string& url) {
  const std::string at = url + "/v1/models";
  auto r = http.get(at);
  if (!r) return r.error();
  const auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].size() != 1 ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    return make_error("{}: expected \"data\" with exactly one model and its \"id\"", at);
  }
  return Served{j["data"][0]["id"].get<std::string>(), j["data"][0].value("max_model_len", 0)};
}

}  // namespace

VllmVerifier::VllmVerifier(std::shared_ptr<const Model> vocab, VllmOptions options,
                           std::string model_id)
    : vocab_(std::move(vocab)),
      options_(std::move(options)),
      model_id_(std::move(model_id)),
      model_json_(nlohmann::json(model_id_).dump()),
      http_(HttpOptions{options_.connect_timeout_s, options_.timeout_s,
                        HttpOptions{}.max_response_bytes, options_.max_in_flight}),
      down_until_(options_.urls.size()) {}

Result<std::unique_ptr<VllmVerifier>> VllmVerifier::connect(std::shared_ptr<const Model> vocab,
                                                            VllmOptions o) {
  if (!vocab) return make_error("vllm: no model for the vocabulary (--llm)");
  if (o.urls.empty()) return make_error("--vllm-url: give at least one vLLM server URL");
  if (o.max_in_flight < 1) return make_error("--vllm-max-in-flight must be at least 1");
  for (std::string& u : o.urls) u = trim_slash(u);
  const double startup_s = std::max(o.timeout_s, o.startup_timeout_s);
  HttpClient probe(
      HttpOptions{o.connect_timeout_s, startup_s, HttpOptions{}.max_response_bytes, 1});
  std::vector<Served> served;
  for (const std::string& url : o.urls) {
    auto s = served_model(probe, url);
    if (!s) return s.error();
    if (!served.empty() && s->id != served[0].id) {
      return make_error(
          "{} serves model \"{}\" but {} serves \"{}\"; every --vllm-url must serve the same "
          "model",
          o.urls[0], served[0].id, url, s->id);
    }
    if (s->max_model_len > 0 && o.max_context > s->max_model_len) {
      return make_error(
          "--max-context {} exceeds {}'s max_model_len {}; lower --max-context or start vLLM "
          "with a larger --max-model-len",
          o.max_context, url, s->max_model_len);
    }
    served.push_back(*std::move(s));
  }
  const Tokenizer& tok = vocab->tokenizer();
  for (const std::string& url : o.urls) {
    for (const char* text : kProbes) {
      const std::string at = url + "/tokenize";
      nlohmann::json body = {
          {"model", served[0].id}, {"prompt", text}, {"add_special_tokens", false}};
      auto r = probe.post(at, body.dump());
      if (!r) return r.error();
      const auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (j.is_discarded() || !j.contains("tokens") || !j["tokens"].is_array()) {
        return make_error("{}: expected \"tokens\", a list of ids", at);
      }
      const auto theirs = j["tokens"].get<std::vector<int32_t>>();
      const auto ours = tok.encode(text, false, false);
      if (theirs != ours) {
        return make_error(
            "vocabulary mismatch: {} ({}) tokenizes \"{}\" as [{}], the vocabulary of {} as [{}]; "
            "serve the LLM whose GGUF is given with --llm",
            at, served[0].id, text, fmt::join(theirs, ", "), vocab->path(), fmt::join(ours, ", "));
      }
    }
  }
  // Log-probabilities as verification asks for them: refused unless vLLM allows that many. This
  // also warms each replica up, under the start-up timeout.
  VllmOptions warm = o;
  warm.timeout_s = startup_s;
  VllmVerifier warming(vocab, std::move(warm), served[0].id);
  SamplingParams defaults;
  for (size_t i = 0; i < o.urls.size(); ++i) {
    auto q = warming.distributions({tok.encode(kProbes[0], false, false)}, defaults, i);
    if (!q && q.error().code == ErrorCode::kFailed) {
      return make_error("{} (start vLLM with --max-logprobs -1)", q.error().message);
    }
    if (!q) return q.error();
  }
  return std::unique_ptr<VllmVerifier>(
      new VllmVerifier(std::move(vocab), std::move(o), served[0].id));
}

Result<SessionId> VllmVerifier::open(const SessionParams& params) {
  const Model& m = *vocab_;
  if (auto st =
          check_open(params, m.config().n_vocab, m.tokenizer().fingerprint(),
                     fmt::format("{} ({})", model_id_, options_.urls[0]), options_.max_context);
      !st) {
    return st.error();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (int(sessions_.size()) >= options_.max_sessions) {
    return make_error("open: all {} sessions are in use (raise --max-sessions)",
                      options_.max_sessions);
  }
  const SessionId id = next_id_++;
  sessions_.emplace(id, Session{CloudSession(params), pick_replica()});
  return id;
}

Status VllmVerifier::close(SessionId session) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.erase(session) == 0) return make_error("close: unknown session {}", session);
  return ok_status();
}

size_t VllmVerifier::pick_replica() {
  const size_t n = options_.urls.size();
  const auto now = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    const size_t r = (next_replica_ + i) % n;
    if (down_until_[r] <= now) {
      next_replica_ = (r + 1) % n;
      return r;
    }
  }
  return next_replica_++ % n;  // all have failed lately: spread the sessions anyway
}

void VllmVerifier::failed(size_t replica) {
  down_until_[replica] = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(options_.retry_after_s));
  stats_.failures++;
}

VllmStats VllmVerifier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::string VllmVerifier::completion_body(const std::vector<std::vector<int32_t>>& prompts,
                                          int logprobs) const {
  // Temperature 0: vLLM's own sample is not used, the greedy one is the cheapest to make.
  std::string prompt_list = "[";
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompt_list += fmt::format("{}[{}]", i ? "," : "", fmt::join(prompts[i], ","));
  }
  prompt_list += "]";
  return fmt::format(R"({{"model":{},"prompt":{},"max_tokens":1,"temperature":0,"logprobs":{},)"
                     R"("return_tokens_as_token_ids":true}})",
                     model_json_, prompt_list, logprobs);
}

std::vector<Result<std::vector<TopLogprobs>>> VllmVerifier::fetch_once(
    const std::vector<Prompts>& prompts, const std::vector<size_t>& replicas,
    const std::vector<int>& logprobs, std::vector<double>& seconds) {
  std::vector<HttpRequest> http(prompts.size());
  for (size_t b = 0; b < prompts.size(); ++b) {
    http[b] = {options_.urls[replicas[b]] + "/v1/completions",
               completion_body(prompts[b], logprobs[b])};
  }
  const auto t0 = Clock::now();
  auto replies = http_.perform(http);
  const int V = vocab_->config().n_vocab;
  std::vector<Result<std::vector<TopLogprobs>>> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.requests += prompts.size();
    stats_.http_s += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  for (size_t b = 0; b < prompts.size(); ++b) {
    if (!replies[b]) {
      out.push_back(replies[b].error());
      continue;
    }
    seconds[b] += replies[b]->seconds;
    out.push_back(
        parse_completion(replies[b]->body, prompts[b].size(), logprobs[b], V, http[b].url));
  }
  return out;
}

std::vector<Result<std::vector<TopLogprobs>>> VllmVerifier::fetch(
    const std::vector<Prompts>& prompts, const std::vector<size_t>& replicas,
    const std::vector<SamplingParams>& sampling, std::vector<double>& seconds) {
  std::vector<int> logprobs(prompts.size());
  for (size_t b = 0; b < prompts.size(); ++b) {
    logprobs[b] = logprobs_to_request(sampling[b], options_.n_top);
  }
  auto out = fetch_once(prompts, replicas, logprobs, seconds);
  const int V = vocab_->config().n_vocab;
  // Where a top N leaves q undetermined, ask again for the whole vocabulary.
  std::vector<size_t> again;
  for (size_t b = 0; b < prompts.size(); ++b) {
    if (!out[b] || logprobs[b] < 0) continue;
    if (!std::all_of(out[b]->begin(), out[b]->end(),
                     [&](const TopLogprobs& t) { return top_suffices(t, sampling[b], V); })) {
      again.push_back(b);
    }
  }
  if (again.empty()) return out;
  std::vector<Prompts> p;
  std::vector<size_t> r;
  std::vector<double> s(again.size(), 0);
  for (size_t b : again) {
    p.push_back(prompts[b]);
    r.push_back(replicas[b]);
  }
  auto full = fetch_once(p, r, std::vector<int>(again.size(), -1), s);
  for (size_t i = 0; i < again.size(); ++i) {
    out[again[i]] = std::move(full[i]);
    seconds[again[i]] += s[i];
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.full_vocab += again.size();
  return out;
}

Result<std::vector<std::vector<float>>> VllmVerifier::to_q(Result<std::vector<TopLogprobs>> tops,
                                                           const SamplingParams& sampling) const {
  if (!tops) return tops.error();
  std::vector<std::vector<float>> q;
  std::vector<float> logits;
  for (const TopLogprobs& t : *tops) {
    q.emplace_back(size_t(vocab_->config().n_vocab));
    rebuild_q(t, sampling, q.back(), logits);
  }
  return q;
}

Result<std::vector<std::vector<float>>> VllmVerifier::distributions(
    const std::vector<std::vector<int32_t>>& contexts, const SamplingParams& sampling,
    size_t replica) {
  std::vector<double> seconds(1, 0);
  return to_q(std::move(fetch({contexts}, {replica}, {sampling}, seconds).front()), sampling);
}

Result<std::vector<std::vector<float>>> VllmVerifier::distributions_full(
    const std::vector<std::vector<int32_t>>& contexts, const SamplingParams& sampling,
    size_t replica) {
  std::vector<double> seconds(1, 0);
  return to_q(std::move(fetch_once({contexts}, {replica}, {-1}, seconds).front()), sampling);
}

Result<std::vector<int32_t>> VllmVerifier::greedy(const std::vector<int32_t>& prompt,
                                                  int max_tokens, size_t replica) {
  const std::string url = options_.urls[replica] + "/v1/completions";
  const std::string body =
      fmt::format(R"({{"model":{},"prompt":[{}],"max_tokens":{},"temperature":0,"logprobs":1,)"
                  R"("return_tokens_as_token_ids":true}})",
                  model_json_, fmt::join(prompt, ","), max_tokens);
  auto r = http_.post(url, body);
  if (!r) return r.error();
  const auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("choices") || j["choices"].size() != 1 ||
      !j["choices"][0].contains("logprobs") || !j["choices"][0]["logprobs"].contains("tokens")) {
    return make_error("{}: expected one choice with logprobs.tokens", url);
  }
  std::vector<int32_t> ids;
  for (const auto& t : j["choices"][0]["logprobs"]["tokens"]) {
    const std::string s = t.get<std::string>();
    if (s.rfind("token_id:", 0) != 0)
      return make_error("{}: token \"{}\" is not token_id:N", url, s);
    ids.push_back(int32_t(std::stol(s.substr(9))));
  }
  return ids;
}

std::vector<Result<VerifyReply>> VllmVerifier::verify_batch(
    std::span<const VerifyRequest> requests) {
  std::vector<Result<VerifyReply>> results(requests.size(), Error{"not served"});
  std::vector<size_t> served;  // request index of each HTTP request
  std::vector<Prompts> prompts;
  std::vector<size_t> replicas;
  std::vector<SamplingParams> sampling;
  const int V = vocab_->config().n_vocab;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<SessionId> batch;
    for (size_t i = 0; i < requests.size(); ++i) {
      const VerifyRequest& r = requests[i];
      auto it = sessions_.find(r.session);
      if (auto early = admit(r, it == sessions_.end() ? nullptr : &it->second.state, batch, V,
                             options_.max_context)) {
        results[i] = std::move(*early);
        continue;
      }
      const Session& s = it->second;
      // q at each draft, and after the last for a bonus or a generated token: the context,
      // then the context extended by each draft in turn (all extend what vLLM has cached).
      Prompts p(size_t(n_queries(r)), s.state.tokens);
      for (size_t j = 0; j < p.size(); ++j) {
        p[j].insert(p[j].end(), r.pending.begin(), r.pending.end());
        p[j].insert(p[j].end(), r.drafts.begin(), r.drafts.begin() + j);
      }
      prompts.push_back(std::move(p));
      replicas.push_back(s.replica);
      sampling.push_back(s.state.params.sampling);
      served.push_back(i);
    }
  }
  if (served.empty()) return results;
  std::vector<double> seconds(served.size(), 0);
  auto tops = fetch(prompts, replicas, sampling, seconds);
  std::vector<float> p_hat;
  for (size_t b = 0; b < served.size(); ++b) {
    const VerifyRequest& r = requests[served[b]];
    auto q = to_q(std::move(tops[b]), sampling[b]);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(r.session);
    if (!q) {
      // A replica that failed gets no new sessions for a while, and this session moves on:
      // its next request rebuilds the context on the next replica.
      if (q.error().code != ErrorCode::kFailed) {
        failed(replicas[b]);
        if (it != sessions_.end()) it->second.replica = (replicas[b] + 1) % options_.urls.size();
      }
      results[served[b]] = q.error();
      continue;
    }
    if (it == sessions_.end()) {
      results[served[b]] = make_error("session {} was closed during its verification", r.session);
      continue;
    }
    std::vector<float> rows;
    rows.reserve(q->size() * size_t(V));
    for (const auto& row : *q) rows.insert(rows.end(), row.begin(), row.end());
    const int64_t cached = int64_t(it->second.state.tokens.size()) - 1;
    VerifyReply reply = decide(r, it->second.state, rows, V, p_hat);
    reply.t_llm_s = seconds[b];
    reply.positions = int64_t(r.pending.size()) + n_queries(r);  // as the engine backend feeds
    reply.context = cached;
    results[served[b]] = reply;
  }
  return results;
}

}  // namespace hlm::vllm
