// OpenAI request parsing and stop sequences (see openai.h).
#include "api/openai.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "method/channel.h"
#include "method/policy.h"
#include "method/upload.h"

namespace hlm::api {
namespace {

using nlohmann::json;

std::string type_name(const json& v) { return v.type_name(); }

Result<std::string> get_string(const json& v, std::string_view field) {
  if (!v.is_string()) return make_error("'{}' must be a string, not {}", field, type_name(v));
  return v.get<std::string>();
}

Result<double> get_number(const json& v, std::string_view field, double lo, double hi) {
  if (!v.is_number()) return make_error("'{}' must be a number, not {}", field, type_name(v));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    return make_error("'{}' must be between {:g} and {:g}, not {:g}", field, lo, hi, x);
  }
  return x;
}

Result<int64_t> get_integer(const json& v, std::string_view field, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) {
    return make_error("'{}' must be an integer, not {}", field,
                      v.is_number() ? "a fraction" : type_name(v));
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    return make_error("'{}' must be between {} and {}, not {}", field, lo, hi, x);
  return x;
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts.
Result<std::string> message_content(const json& c, std::string_view field) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return std::string();
  if (!c.is_array()) {
    return make_error("'{}' must be a string or an array of text parts, not {}", field,
                      type_name(c));
  }
  std::string text;
  for (size_t i = 0; i < c.size(); ++i) {
    const json& part = c[i];
    const std::string where = fmt::format("{}[{}]", field, i);
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return make_error(
          "'{}' must be {{\"type\": \"text\", \"text\": \"...\"}}: hlm's models read "
          "text only",
          where);
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// Fields of OpenAI's API that hlm does not implement: accepted only at their neutral values.
Status refuse_unsupported(const json& j) {
  for (const char* f : {"frequency_penalty", "presence_penalty"}) {
    if (j.contains(f) && !j[f].is_null() && !(j[f].is_number() && j[f].get<double>() == 0)) {
      return make_error("'{}' is not supported by hlm (only 0)", f);
    }
  }
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"] == 1)) {
    return make_error("'n' must be 1: hlm generates one choice per request");
  }
  if (j.contains("best_of") && !j["best_of"].is_null() &&
      !(j["best_of"].is_number_integer() && j["best_of"] == 1)) {
    return make_error("'best_of' must be 1: hlm generates one choice per request");
  }
  for (const char* f : {"logprobs", "top_logprobs", "echo"}) {
    if (j.contains(f) && !j[f].is_null() && !(j[f].is_boolean() && !j[f].get<bool>()) &&
        !(std::string_view(f) != "echo" && j[f].is_number_integer() && j[f] == 0)) {
      return make_error("'{}' is not supported by hlm", f);
    }
  }
  for (const char* f : {"tools", "functions", "logit_bias", "suffix"}) {
    if (j.contains(f) && !j[f].is_null() && !j[f].empty()) {
      return make_error("'{}' is not supported by hlm", f);
    }
  }
  if (j.contains("response_format") && j["response_format"].is_object() &&
      j["response_format"].value("type", "text") != "text") {
    return make_error("'response_format' must be text: hlm does not constrain output");
  }
  return ok_status();
}

// An "hlm" setting written as an option string (as on the command line), parsed into `out`.
template <class T, class Parse>
Status parse_setting(const json& h, const char* key, Parse parse, T& out) {
  if (!h.contains(key)) return ok_status();
  auto s = get_string(h[key], std::string("hlm.") + key);
  if (!s) return s.error();
  auto v = parse(*s);
  if (!v) return make_error("'hlm.{}': {}", key, v.error().message);
  out = *v;
  return ok_status();
}

}  // namespace

Result<CompletionRequest> parse_completion_request(std::string_view body, bool chat) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("the request body is not valid JSON");
  if (!j.is_object()) return make_error("the request body must be a JSON object");
  if (auto st = refuse_unsupported(j); !st) return st.error();
  CompletionRequest r;
  r.chat = chat;
  if (j.contains("model") && !j["model"].is_null()) {
    auto m = get_string(j["model"], "model");
    if (!m) return m.error();
    r.model = *m;
  }
  if (chat) {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
      return make_error("'messages' must be a non-empty array of {{\"role\", \"content\"}}");
    }
    const json& msgs = j["messages"];
    for (size_t i = 0; i < msgs.size(); ++i) {
      const std::string where = fmt::format("messages[{}]", i);
      if (!msgs[i].is_object()) return make_error("'{}' must be an object", where);
      auto role = msgs[i].contains("role")
                      ? get_string(msgs[i]["role"], where + ".role")
                      : Result<std::string>(make_error("'{}.role' is missing", where));
      if (!role) return role.error();
      if (*role == "developer") *role = "system";
      if (*role != "system" && *role != "user" && *role != "assistant") {
        return make_error("'{}.role' must be system, user or assistant, not '{}'", where, *role);
      }
      auto content = message_content(msgs[i].value("content", json()), where + ".content");
      if (!content) return content.error();
      r.messages.push_back({*role, *content});
    }
  } else {
    if (!j.contains("prompt")) return make_error("'prompt' is missing");
    const json& p = j["prompt"];
    if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.prompt = p[0].get<std::string>();
    } else if (p.is_string()) {
      r.prompt = p.get<std::string>();
    } else {
      return make_error("'prompt' must be a string (or an array of one string)");
    }
    if (r.prompt.empty()) return make_error("'prompt' is empty");
  }
  for (const char* f : {"max_tokens", "max_completion_tokens"}) {
    if (j.contains(f) && !j[f].is_null()) {
      auto n = get_integer(j[f], f, 1, 1 << 20);
      if (!n) return n.error();
      r.max_tokens = int(*n);
    }
  }
  if (j.contains("temperature") && !j["temperature"].is_null()) {
    auto t = get_number(j["temperature"], "temperature", 0, 2);
    if (!t) return t.error();
    r.temperature = float(*t);
  }
  if (j.contains("top_p") && !j["top_p"].is_null()) {
    auto p = get_number(j["top_p"], "top_p", 0, 1);
    if (!p) return p.error();
    if (*p <= 0) return make_error("'top_p' must be above 0");
    r.top_p = float(*p);
  }
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) return make_error("'seed' must be an integer");
    r.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>()
                                            : uint64_t(j["seed"].get<int64_t>());
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4 &&
               std::all_of(s.begin(), s.end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : s) r.stop.push_back(x.get<std::string>());
    } else {
      return make_error("'stop' must be a string or an array of up to 4 strings");
    }
    if (std::any_of(r.stop.begin(), r.stop.end(), [](const std::string& x) { return x.empty(); }))
      return make_error("'stop' sequences must not be empty");
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return make_error("'stream' must be true or false");
    r.stream = j["stream"].get<bool>();
  }
  if (j.contains("hlm") && !j["hlm"].is_null()) {
    if (!j["hlm"].is_object()) return make_error("'hlm' must be an object of hlm's settings");
    r.hlm = j["hlm"];
  }
  return r;
}

Result<RunConfig> run_config_for(const CompletionRequest& r, RunConfig c, int default_max_tokens,
                                 int max_tokens_limit, uint64_t fallback_seed) {
  c.max_tokens = r.max_tokens.value_or(std::min(default_max_tokens, max_tokens_limit));
  if (c.max_tokens > max_tokens_limit) {
    return make_error("'max_tokens' is {}, above this server's limit of {}", c.max_tokens,
                      max_tokens_limit);
  }
  if (r.temperature) c.sampling.temperature = *r.temperature;
  if (r.top_p) c.sampling.top_p = *r.top_p;
  c.sampling.seed = r.seed.value_or(fallback_seed);
  const json& h = r.hlm;
  for (const auto& [key, value] : h.items()) {
    static const char* kKnown[] = {"policy", "u_th",  "lambda",   "u_hi",   "estimator",
                                   "rate",   "draft", "encoding", "channel"};
    if (std::find_if(std::begin(kKnown), std::end(kKnown),
                     [&](const char* k) { return key == k; }) == std::end(kKnown)) {
      return make_error(
          "'hlm.{}' is not a setting: use policy, u_th, lambda, u_hi, estimator, "
          "rate, draft, encoding or channel",
          key);
    }
  }
  // A policy named per request starts from the server's settings (its flags and pair profile).
  const auto policy_from_server = [&c](std::string_view s) { return parse_policy(s, c.policy); };
  if (auto st = parse_setting(h, "policy", policy_from_server, c.policy); !st) return st.error();
  const std::pair<const char*, float*> knobs[] = {{"u_th", &c.policy.u_th},
                                                  {"u_hi", &c.policy.u_hi}};
  for (auto [key, field] : knobs) {
    if (!h.contains(key)) continue;
    auto x = get_number(h[key], std::string("hlm.") + key, -1e6, 1e6);
    if (!x) return x.error();
    *field = float(*x);
  }
  if (h.contains("lambda")) {
    auto x = get_number(h["lambda"], "hlm.lambda", -1e6, 1e6);
    if (!x) return x.error();
    c.policy.importance.lambda = float(*x);
  }
  if (h.contains("rate")) {
    auto x = get_number(h["rate"], "hlm.rate", 0, 1);
    if (!x) return x.error();
    c.policy.rate = *x;
  }
  if (h.contains("draft")) {
    auto x = get_integer(h["draft"], "hlm.draft", 1, 64);
    if (!x) return x.error();
    c.policy.draft = int(*x);
  }
  if (auto st = parse_setting(h, "estimator", parse_estimator, c.policy.importance.estimator); !st)
    return st.error();
  if (auto st = validate(c.policy); !st) return make_error("'hlm': {}", st.error().message);
  if (auto st = parse_setting(h, "encoding", parse_encoding, c.encoding); !st) return st.error();
  // A channel named per request keeps the server's cost profiles' powers.
  const auto channel_with_powers = [&c](std::string_view s) {
    return parse_channel(s, c.cost.powers);
  };
  if (auto st = parse_setting(h, "channel", channel_with_powers, c.channel); !st) return st.error();
  return c;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  held_.append(text);
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Keep the longest tail that is a proper prefix of some stop sequence.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() { return stopped_ ? std::string() : std::exchange(held_, {}); }

}  // namespace hlm::api
