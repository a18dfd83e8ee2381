// Unit tests for the tokenizers on synthetic vocabularies built in-test, the pre-tokenizer
// splits, UTF-8 streaming, vocabulary compatibility and the chat templates.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>

#include "tokenizer/unicode.h"

namespace hlm {
namespace {

// Timing limits hold for optimised builds only (not Debug or sanitizer builds).
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

using Ids = std::vector<int32_t>;
using Words = std::vector<std::string>;

// --- pre-tokenizer ------------------------------------------------------------------------------

TEST(Unicode, Classes) {
  using namespace unicode;
  EXPECT_EQ(cp_flags('a') & kClassMask, kLetter);
  EXPECT_EQ(cp_flags('7') & kClassMask, kNumber);
  EXPECT_EQ(cp_flags(' '), kSeparator | kWhitespaceBit);
  EXPECT_EQ(cp_flags('\n'), kControl | kWhitespaceBit);
  EXPECT_EQ(cp_flags(0x00E9) & kClassMask, kLetter);   // é
  EXPECT_EQ(cp_flags(0x4F60) & kClassMask, kLetter);   // 你
  EXPECT_EQ(cp_flags(0x0663) & kClassMask, kNumber);   // Arabic-Indic three
  EXPECT_EQ(cp_flags(0x1F355) & kClassMask, kSymbol);  // pizza
  EXPECT_EQ(cp_flags(0x0301) & kClassMask, kMark);     // combining acute
  EXPECT_EQ(cp_flags(0x3000), kSeparator | kWhitespaceBit);
  EXPECT_EQ(cp_flags(0x0378), kUndefined);  // unassigned
  EXPECT_EQ(cp_flags(0x110000), kUndefined);
}

TEST(Unicode, DecodeReplacesInvalidBytes) {
  auto cps = unicode::decode_utf8("a\xC3\xA9\xFF\xE4\xBD");
  EXPECT_EQ(cps, (std::vector<uint32_t>{'a', 0xE9, 0xFFFD, 0xFFFD, 0xFFFD}));
}

TEST(PreTokenizer, Gpt2) {
  using unicode::PreTokenizer;
  EXPECT_EQ(unicode::pre_tokenize("Hello world", PreTokenizer::kGpt2), (Words{"Hello", " world"}));
  EXPECT_EQ(unicode::pre_tokenize("I'm don't", PreTokenizer::kGpt2),
            (Words{"I", "'m", " don", "'t"}));
  EXPECT_EQ(unicode::pre_tokenize("a   b  ", PreTokenizer::kGpt2), (Words{"a", "  ", " b", "  "}));
  EXPECT_EQ(unicode::pre_tokenize("x += 12;", PreTokenizer::kGpt2),
            (Words{"x", " +=", " 12", ";"}));
  EXPECT_EQ(unicode::pre_tokenize("\n\nhi", PreTokenizer::kGpt2), (Words{"\n", "\n", "hi"}));
}

TEST(PreTokenizer, DigitsSplitAlone) {
  using unicode::PreTokenizer;
  EXPECT_EQ(unicode::pre_tokenize("in 2024!", PreTokenizer::kDigits),
            (Words{"in", " ", "2", "0", "2", "4", "!"}));
  EXPECT_EQ(unicode::pre_tokenize("3.14", PreTokenizer::kDigits), (Words{"3", ".", "1", "4"}));
}

TEST(PreTokenizer, Llama3) {
  using unicode::PreTokenizer;
  EXPECT_EQ(unicode::pre_tokenize("I'LL pay 12345 now\n\n  ok", PreTokenizer::kLlama3),
            (Words{"I", "'LL", " pay", " ", "123", "45", " now", "\n\n", " ", " ok"}));
  EXPECT_EQ(unicode::pre_tokenize("(hi)", PreTokenizer::kLlama3), (Words{"(hi", ")"}));
}

TEST(PreTokenizer, Default) {
  using unicode::PreTokenizer;
  EXPECT_EQ(unicode::pre_tokenize("a+b 12345", PreTokenizer::kDefault),
            (Words{"a", "+", "b", " ", "123", "45"}));
}

// --- synthetic SentencePiece vocabulary ----------------------------------------------------------

VocabSpec spm_spec() {
  VocabSpec v;
  v.name = "synthetic-spm";
  v.model = "llama";
  auto add = [&](std::string t, float score, int32_t type = kTokenNormal) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, kTokenUnknown);                                                  // 0
  add("<s>", 0, kTokenControl);                                                    // 1
  add("</s>", 0, kTokenControl);                                                   // 2
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0, kTokenByte);  // 3..258
  const char* pieces[] = {"\xE2\x96\x81",
                          "h",
                          "e",
                          "l",
                          "o",
                          "w",
                          "r",
                          "d",
                          "he",
                          "ll",
                          "hell",
                          "hello",
                          "\xE2\x96\x81hello",
                          "\xE2\x96\x81w",
                          "or",
                          "\xE2\x96\x81wor",
                          "\xE2\x96\x81world",
                          "ld"};
  float s = -1;
  for (const char* p : pieces) add(p, s -= 1);  // 259..
  // Scores: longer merges score higher than their parts.
  auto set = [&](const char* t, float sc) {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == t) v.scores[i] = sc;
  };
  set("he", -5), set("ll", -4), set("hell", -3), set("hello", -2), set("\xE2\x96\x81hello", -1);
  set("\xE2\x96\x81w", -6), set("or", -7), set("\xE2\x96\x81wor", -3), set("ld", -8);
  set("\xE2\x96\x81world", -1);
  return v;
}

TEST(SpmTokenizer, EncodeDecode) {
  auto tok = Tokenizer::from_vocab(spm_spec());
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const int32_t hello = tok->find_token("\xE2\x96\x81hello");
  const int32_t world = tok->find_token("\xE2\x96\x81world");
  ASSERT_GE(hello, 0);
  ASSERT_GE(world, 0);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->encode("hello world", true, false), (Ids{1, hello, world}));
  EXPECT_EQ(tok->encode("hello world", false, false), (Ids{hello, world}));
  EXPECT_EQ(tok->encode("", true, false), (Ids{1}));
  EXPECT_EQ(tok->decode(tok->encode("hello world", false, false)), "hello world");
  // Byte fallback: 'z' and 'é' are not pieces.
  Ids z = tok->encode("z\xC3\xA9", false, false);
  const int32_t sp = tok->find_token("\xE2\x96\x81");
  EXPECT_EQ(z, (Ids{sp, 3 + 'z', 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode(z), "z\xC3\xA9");
  EXPECT_EQ(tok->token_to_piece(3 + 0xC3), "\xC3");
}

TEST(SpmTokenizer, SpecialTokensAndSpacePrefix) {
  auto tok = Tokenizer::from_vocab(spm_spec());
  ASSERT_TRUE(tok.ok());
  const int32_t hello = tok->find_token("\xE2\x96\x81hello");
  // parse_special: "</s>" becomes the control token and the next text gets a space prefix.
  EXPECT_EQ(tok->encode("hello</s>hello", false, true), (Ids{hello, 2, hello}));
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_FALSE(tok->is_eog(hello));
  EXPECT_EQ(tok->token_to_piece(2), "");
  EXPECT_EQ(tok->token_to_piece(2, true), "</s>");
  // Without parse_special the text is spelled out.
  Ids plain = tok->encode("</s>", false, false);
  EXPECT_GT(plain.size(), 1u);
}

TEST(SpmTokenizer, ExplicitFlags) {
  VocabSpec v = spm_spec();
  v.add_bos = false;
  v.add_eos = true;
  v.add_space_prefix = false;
  auto tok = Tokenizer::from_vocab(v);
  ASSERT_TRUE(tok.ok());
  Ids ids = tok->encode("hello", true, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(ids.front(), tok->find_token("hello"));
}

// --- synthetic byte-level BPE vocabulary ---------------------------------------------------------

// The GPT-2 image of a byte, as UTF-8.
std::string gpt2_char(uint8_t b) {
  bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  uint32_t cp = b;
  if (!printable) {
    int n = 0;
    for (int c = 0; c < b; ++c) {
      bool pc = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      if (!pc) ++n;
    }
    cp = 256 + n;
  }
  std::string s;
  unicode::append_utf8(s, cp);
  return s;
}

VocabSpec bpe_spec() {
  VocabSpec v;
  v.name = "synthetic-bpe";
  v.model = "gpt2";
  v.pre = "smollm";
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  v.types = {kTokenControl, kTokenControl, kTokenControl};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(gpt2_char(static_cast<uint8_t>(b)));  // 3 + b
    v.types.push_back(kTokenNormal);
  }
  const std::string G = gpt2_char(' ');  // "Ġ"
  // Rank = index. "e l" is ranked below "l l", so "hello" never goes through "el".
  v.merges = {"h e",      "l l",        "he ll", "hell o",     G + " w", "o r",
              G + "w or", G + "wor ld", "l d",   G + " hello", "e l"};
  for (const auto& m : v.merges) {
    size_t sp = m.find(' ');
    v.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
    v.types.push_back(kTokenNormal);
  }
  return v;
}

TEST(BpeTokenizer, MergesByRank) {
  auto tok = Tokenizer::from_vocab(bpe_spec());
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const std::string G = gpt2_char(' ');
  const int32_t hello = tok->find_token("hello");
  const int32_t ghello = tok->find_token(G + "hello");
  const int32_t gworld = tok->find_token(G + "world");
  ASSERT_GE(hello, 0);
  ASSERT_GE(gworld, 0);
  // " hello" is pre-tokenized as one word "Ġhello": Ġ is not mergeable with h, "hello" forms
  // first (ranks 0..3), then "Ġ hello" (rank 9).
  EXPECT_EQ(tok->encode("hello world hello", false, false), (Ids{hello, gworld, ghello}));
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->encode("hello", true, false), (Ids{hello}));  // gpt2: no BOS unless asked
  EXPECT_EQ(tok->decode(tok->encode("hello world hello", false, false)), "hello world hello");
}

TEST(BpeTokenizer, ByteLevelRoundTrip) {
  auto tok = Tokenizer::from_vocab(bpe_spec());
  ASSERT_TRUE(tok.ok());
  for (std::string s : {"Caf\xC3\xA9 na\xC3\xAFve", "\xF0\x9F\x8D\x95 \xE4\xBD\xA0\xE5\xA5\xBD",
                        "tabs\tand\nnewlines\r\n", "  lead and trail  ", "x<<=1; y->z"}) {
    EXPECT_EQ(tok->decode(tok->encode(s, false, false)), s) << s;
  }
  // Digits are split one per word (smollm pre-tokenizer).
  EXPECT_EQ(tok->encode("123", false, false), (Ids{3 + '1', 3 + '2', 3 + '3'}));
  // Invalid UTF-8 is encoded as U+FFFD, as llama.cpp does.
  EXPECT_EQ(tok->decode(tok->encode("a\xFF", false, false)), "a\xEF\xBF\xBD");
}

TEST(BpeTokenizer, SpecialTokens) {
  auto tok = Tokenizer::from_vocab(bpe_spec());
  ASSERT_TRUE(tok.ok());
  const int32_t hello = tok->find_token("hello");
  EXPECT_EQ(tok->encode("<|im_start|>hello<|im_end|>", false, true), (Ids{1, hello, 2}));
  Ids plain = tok->encode("<|im_start|>", false, false);
  EXPECT_EQ(plain.size(), 12u);  // every character a byte token
  EXPECT_EQ(tok->decode(plain), "<|im_start|>");
  EXPECT_EQ(tok->decode(Ids{1, hello, 2}), "hello");
  EXPECT_EQ(tok->decode(Ids{1, hello, 2}, true), "<|im_start|>hello<|im_end|>");
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_TRUE(tok->is_eog(0));
  EXPECT_FALSE(tok->is_eog(1));
}

TEST(BpeTokenizer, UnknownPreTokenizerIsAnError) {
  VocabSpec v = bpe_spec();
  v.pre = "no-such-pre";
  auto tok = Tokenizer::from_vocab(v);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.error().message.find("no-such-pre"), std::string::npos);
  EXPECT_NE(tok.error().message.find("synthetic-bpe"), std::string::npos);
}

TEST(BpeTokenizer, SpeedWellUnderAMillisecondPerKilobyte) {
  auto tok = Tokenizer::from_vocab(bpe_spec());
  ASSERT_TRUE(tok.ok());
  std::string text;
  while (text.size() < 8192) text += "hello world, caf\xC3\xA9 12345 \xF0\x9F\x8D\x95\n";
  auto t0 = std::chrono::steady_clock::now();
  size_t n = 0;
  for (int i = 0; i < 10; ++i) n += tok->encode(text, false, false).size();
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  double ms_per_kb = ms / 10 / (text.size() / 1024.0);
  EXPECT_GT(n, 0u);
  if (kOptimizedBuild) {
    EXPECT_LT(ms_per_kb, 1.0) << ms_per_kb << " ms/KB";
  }
}

// --- fingerprint / compatibility ----------------------------------------------------------------

TEST(Vocab, FingerprintAndCompatibility) {
  auto a = Tokenizer::from_vocab(bpe_spec());
  auto b = Tokenizer::from_vocab(bpe_spec());
  VocabSpec cs = bpe_spec();
  cs.tokens[100] = "changed";
  auto c = Tokenizer::from_vocab(cs);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  EXPECT_NE(a->fingerprint(), c->fingerprint());
  EXPECT_TRUE(check_vocab_compatible(*a, "a.gguf", *b, "b.gguf").ok());
  Status s = check_vocab_compatible(*a, "draft.gguf", *c, "target.gguf");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("draft.gguf"), std::string::npos);
  EXPECT_NE(s.error().message.find("target.gguf"), std::string::npos);
  EXPECT_NE(s.error().message.find("token 100"), std::string::npos);
  auto d = Tokenizer::from_vocab(spm_spec());
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(check_vocab_compatible(*a, "a", *d, "d").ok());
}

// --- UTF-8 streaming ----------------------------------------------------------------------------

TEST(Utf8Stream, HoldsBackSplitSequences) {
  Utf8Stream s;
  EXPECT_EQ(s.push("ab\xE4"), "ab");
  EXPECT_TRUE(s.has_pending());
  EXPECT_EQ(s.push("\xBD"), "");
  EXPECT_EQ(s.push("\xA0!"), "\xE4\xBD\xA0!");
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.push("\x8D"), "");
  EXPECT_EQ(s.push("\x95"), "\xF0\x9F\x8D\x95");
  EXPECT_EQ(s.flush(), "");
}

TEST(Utf8Stream, EveryByteSplitReassembles) {
  const std::string text = "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x8D\x95 \xCE\xB3";
  Utf8Stream s;
  std::string out;
  for (char c : text) {
    std::string piece = s.push(std::string_view(&c, 1));
    // Every emitted chunk is itself valid UTF-8 (never a partial sequence).
    EXPECT_EQ(unicode::decode_utf8(piece).size(),
              static_cast<size_t>(std::count_if(piece.begin(), piece.end(), [](char ch) {
                return (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
              })));
    out += piece;
  }
  out += s.flush();
  EXPECT_EQ(out, text);
}

TEST(Utf8Stream, InvalidBytesBecomeReplacement) {
  Utf8Stream s;
  EXPECT_EQ(s.push("a\xFF"
                   "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(s.push("\xC3"), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.push("\xC3(x"), "\xEF\xBF\xBD(x");  // a lead byte not followed by a continuation
}

// --- chat templates -----------------------------------------------------------------------------

constexpr const char* kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplate, ChatMLWithSmolLMDefaultSystem) {
  auto t = ChatTemplate::from_template(kSmolTemplate, "smol");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->format(), ChatFormat::ChatML);
  EXPECT_EQ(t->default_system(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(t->apply({{"user", "What is the capital of France?"}}),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(t->apply({{"system", "Be brief."}, {"user", "Hi"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  // Escaped newlines in the template text are understood too.
  auto t2 =
      ChatTemplate::from_template("{{ '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}", "q");
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(t2->default_system(), "You are Qwen.");
  // A plain ChatML template has no default system prompt.
  auto t3 = ChatTemplate::from_template(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
      "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
      "c");
  ASSERT_TRUE(t3.ok());
  EXPECT_EQ(t3->default_system(), "");
}

TEST(ChatTemplate, Llama2) {
  const char* tmpl =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
      "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
      "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
      "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
      "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
      "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' "
      "+ content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
      "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  auto t = ChatTemplate::from_template(tmpl, "llama2");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->format(), ChatFormat::Llama2);
  EXPECT_EQ(
      t->apply({{"system", "Be nice."}, {"user", " Hi "}, {"assistant", "Hello"}, {"user", "Bye"}}),
      "[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\nHi [/INST]Hello</s>[INST] Bye [/INST]");
}

TEST(ChatTemplate, MistralZephyrLlama3) {
  auto m = ChatTemplate::from_template(
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' "
      "+ message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token}}{% endif "
      "%}{% endfor %}",
      "mistral");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->format(), ChatFormat::Mistral);
  EXPECT_EQ(m->apply({{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Q"}}),
            "[INST] Hi [/INST]Yo</s>[INST] Q [/INST]");

  // TinyLlama-1.1B-Chat's template.
  auto z = ChatTemplate::from_template(
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
      "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
      "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
      "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
      "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% "
      "endfor %}",
      "tinyllama");
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->format(), ChatFormat::Zephyr);
  EXPECT_EQ(z->apply({{"system", "S"}, {"user", "Hi"}}),
            "<|system|>\nS</s>\n<|user|>\nHi</s>\n<|assistant|>\n");

  auto l3 = ChatTemplate::from_template(
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ "
      "message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}",
      "llama3");
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(l3->format(), ChatFormat::Llama3);
  EXPECT_EQ(l3->apply({{"user", " Hi "}}),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Gemma's turns, as llama.cpp renders them: the system text opens the first user turn, the
// assistant is "model", contents are trimmed.
TEST(ChatTemplate, Gemma) {
  auto g = ChatTemplate::from_template(
      "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' "
      "+ message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}",
      "gemma");
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->format(), ChatFormat::Gemma);
  EXPECT_EQ(
      g->apply(
          {{"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello"}, {"user", "Bye"}}),
      "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello"
      "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
}

// Qwen2.5 and Qwen3 templates are ChatML (their tool and <think> branches aside, which
// llama.cpp's template rendering does not reproduce either).
TEST(ChatTemplate, QwenIsChatML) {
  auto q = ChatTemplate::from_template(
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + "
      "messages[0]['content'] + '<|im_end|>\n' }}{%- endif %}{%- for message in messages %}"
      "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
      "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}",
      "qwen");
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(q->format(), ChatFormat::ChatML);
  EXPECT_EQ(q->apply({{"user", "Hi"}}), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, UnknownTemplateIsAnError) {
  auto t = ChatTemplate::from_template("{{ messages }}", "odd.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("odd.gguf"), std::string::npos);
}

}  // namespace
}  // namespace hlm
