// OpenAI request parsing, the per-request settings and stop sequences.
#include "api/openai.h"

#include <gtest/gtest.h>

namespace hlm::api {
namespace {

CompletionRequest chat(const std::string& body) {
  auto r = parse_completion_request(body, true);
  EXPECT_TRUE(r) << r.error().message;
  return r ? *r : CompletionRequest{};
}

std::string refusal(const std::string& body, bool is_chat = true) {
  auto r = parse_completion_request(body, is_chat);
  EXPECT_FALSE(r) << body;
  return r ? "" : r.error().message;
}

TEST(OpenAiRequest, ParsesChatFields) {
  auto r = chat(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
      "max_tokens":12,"temperature":0,"top_p":0.9,"seed":7,"stop":["\n\n","END"],"stream":true,
      "n":1,"presence_penalty":0,"hlm":{"policy":"uhlm","u_th":0.5}})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_FLOAT_EQ(*r.top_p, 0.9f);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.hlm["policy"], "uhlm");
}

TEST(OpenAiRequest, ParsesCompletionPrompts) {
  auto a =
      parse_completion_request(R"({"prompt":"Once","max_completion_tokens":3,"stop":"x"})", false);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->prompt, "Once");
  EXPECT_EQ(a->max_tokens, 3);
  EXPECT_EQ(a->stop, std::vector<std::string>{"x"});
  auto b = parse_completion_request(R"({"prompt":["Once"]})", false);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->prompt, "Once");
}

TEST(OpenAiRequest, RefusalsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not valid JSON"},
      {"[1]", "JSON object"},
      {R"({"messages":[]})", "'messages'"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role"},
      {R"({"messages":[{"role":"tool","content":"x"}]})", "messages[0].role"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content[0]"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":2})", "'n' must be 1"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})", "'max_tokens'"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"9"})", "'max_tokens'"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":3})", "'temperature'"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":0})", "'top_p'"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]})", "'stop'"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":""})", "'stop'"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})", "'stream'"},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":true})", "'logprobs'"},
      {R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", "'tools'"},
      {R"({"messages":[{"role":"user","content":"x"}],"frequency_penalty":0.5})",
       "'frequency_penalty'"},
      {R"({"messages":[{"role":"user","content":"x"}],"hlm":3})", "'hlm'"},
  };
  for (auto [body, want] : cases) {
    const std::string msg = refusal(body);
    EXPECT_NE(msg.find(want), std::string::npos) << body << " -> " << msg;
  }
  EXPECT_NE(refusal(R"({"prompt":""})", false).find("'prompt'"), std::string::npos);
  EXPECT_NE(refusal(R"({"prompt":[1,2]})", false).find("'prompt'"), std::string::npos);
}

TEST(OpenAiRequest, SettingsApplyToTheRunConfig) {
  RunConfig base;
  base.sampling.temperature = 0.8f;
  auto r = chat(R"J({"messages":[{"role":"user","content":"x"}],"temperature":0.2,"seed":9,
      "hlm":{"policy":"iuhlm","u_th":0.6,"lambda":0.3,"estimator":"focus",
             "encoding":"topk(32,8)","channel":"lte"}})J");
  auto c = run_config_for(r, base, 100, 500, 1);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->max_tokens, 100);
  EXPECT_FLOAT_EQ(c->sampling.temperature, 0.2f);
  EXPECT_EQ(c->sampling.seed, 9u);
  EXPECT_EQ(c->policy.kind, PolicyKind::kIuhlm);
  EXPECT_FLOAT_EQ(c->policy.u_th, 0.6f);
  EXPECT_FLOAT_EQ(c->policy.importance.lambda_value(), 0.3f);
  EXPECT_EQ(c->policy.importance.estimator, ImportanceEstimator::kFocus);
  EXPECT_EQ(c->encoding.kind, Encoding::kTopK);
  EXPECT_EQ(c->channel.name, "lte");
  // Without a seed the fallback is used; the default max_tokens is capped by the limit.
  auto d =
      run_config_for(chat(R"({"messages":[{"role":"user","content":"x"}]})"), base, 100, 50, 77);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sampling.seed, 77u);
  EXPECT_EQ(d->max_tokens, 50);
  EXPECT_FLOAT_EQ(d->sampling.temperature, 0.8f);
}

TEST(OpenAiRequest, BadSettingsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"max_tokens":600})", "limit of 500"},
      {R"({"hlm":{"policy":"nope"}})", "'hlm.policy'"},
      {R"({"hlm":{"u_th":"high"}})", "'hlm.u_th'"},
      {R"({"hlm":{"encoding":"zip"}})", "'hlm.encoding'"},
      {R"({"hlm":{"channel":"5g"}})", "'hlm.channel'"},
      {R"({"hlm":{"estimator":"x"}})", "'hlm.estimator'"},
      {R"({"hlm":{"draft":0}})", "'hlm.draft'"},
      {R"({"hlm":{"rate":2}})", "'hlm.rate'"},
      {R"({"hlm":{"colour":"blue"}})", "'hlm.colour' is not a setting"},
  };
  for (auto [extra, want] : cases) {
    nlohmann::json j = nlohmann::json::parse(extra);
    j["messages"] = {{{"role", "user"}, {"content", "x"}}};
    auto c = run_config_for(chat(j.dump()), RunConfig{}, 100, 500, 1);
    ASSERT_FALSE(c) << extra;
    EXPECT_NE(c.error().message.find(want), std::string::npos)
        << extra << " -> " << c.error().message;
  }
}

// Feeds text in pieces and returns what was emitted.
std::string run_stops(const std::vector<std::string>& stops, const std::vector<std::string>& in,
                      bool* stopped = nullptr) {
  StopMatcher m(stops);
  std::string out;
  for (const auto& p : in) out += m.push(p);
  out += m.flush();
  if (stopped) *stopped = m.stopped();
  return out;
}

TEST(StopMatcher, CutsAtTheEarliestStopAcrossPieces) {
  bool stopped = false;
  EXPECT_EQ(run_stops({"END"}, {"one E", "N", "D two"}, &stopped), "one ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run_stops({"\n\n", "two"}, {"a two\n", "\nb"}), "a ");
  EXPECT_EQ(run_stops({"xyz"}, {"ab", "xy"}, &stopped), "abxy");  // a held prefix is released
  EXPECT_FALSE(stopped);
  EXPECT_EQ(run_stops({}, {"a", "b"}), "ab");
}

TEST(StopMatcher, HoldsBackOnlyWhatCouldStillMatch) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("hello S"), "hello ");
  EXPECT_EQ(m.push("T"), "");
  EXPECT_EQ(m.push("x"), "STx");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("STOP and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("later"), "");
}

}  // namespace
}  // namespace hlm::api
