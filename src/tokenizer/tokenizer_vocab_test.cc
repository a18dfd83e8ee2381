// Tokenizers on real vocabularies: llama.cpp's own test vocabularies (ggml-vocab-*.gguf, vocab-only
// GGUF files) and their cases (.inp texts, .out ids, as llama.cpp's tests/test-tokenizer-0 reads
// them), taken from the sdist of the pinned oracle llama-cpp-python. For every family hlm claims,
// each case must encode to llama.cpp's ids and decode back to its text; families hlm does not
// support must be refused with an error naming the file and the tokenizer field.
//
// Enable: tools/reference/fetch_vocabs.sh (downloads the sdist with pip into $HLM_VOCAB_DIR, else
// ${XDG_CACHE_HOME:-~/.cache}/hlm/llama-vocab). Without the files the tests skip, saying so; with
// CI=true they fail instead, so CI cannot pass without running them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;

// $HLM_VOCAB_DIR, else $XDG_CACHE_HOME/hlm/llama-vocab, else ~/.cache/hlm/llama-vocab.
std::string vocab_dir() {
  if (const char* d = std::getenv("HLM_VOCAB_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    return std::string(x) + "/hlm/llama-vocab";
  }
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/hlm/llama-vocab";
  return "llama-vocab";
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && *ci && std::string(ci) != "false" && std::string(ci) != "0";
}

std::string vocab_path(const std::string& family) {
  return vocab_dir() + "/ggml-vocab-" + family + ".gguf";
}

// Skips (or, in CI, fails) when a vocabulary file is absent. Returns true when it is present.
#define REQUIRE_VOCAB_FILE(path)                                                \
  do {                                                                          \
    if (!fs::exists(path)) {                                                    \
      std::string msg_ = (path) +                                               \
                         " not found: run tools/reference/fetch_vocabs.sh (or " \
                         "set HLM_VOCAB_DIR) to run the real-vocabulary tests"; \
      if (in_ci()) FAIL() << msg_ << " (CI=true: the CI job must fetch them)";  \
      GTEST_SKIP() << msg_;                                                     \
    }                                                                           \
  } while (0)

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// As llama.cpp's read_tests(): .inp holds the texts separated by "\n__ggml_vocab_test__\n"; .out
// has one line per case, the ids separated by spaces.
std::vector<Case> read_cases(const std::string& gguf, std::string* error) {
  const std::string inp = read_file(gguf + ".inp");
  const std::string out = read_file(gguf + ".out");
  std::vector<std::string> texts;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<int32_t>> ids;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<int32_t> v;
    for (std::string w; words >> w;) v.push_back(std::stoi(w));
    ids.push_back(std::move(v));
  }
  if (texts.empty() || texts.size() != ids.size()) {
    *error = gguf + ".inp has " + std::to_string(texts.size()) + " cases, " + gguf + ".out " +
             std::to_string(ids.size());
    return {};
  }
  std::vector<Case> cases;
  for (size_t i = 0; i < texts.size(); ++i) cases.push_back({texts[i], ids[i]});
  return cases;
}

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return "[" + s + "]";
}

// Printable form of a test text (control characters escaped).
std::string show_text(const std::string& t) {
  std::string s = "'";
  for (unsigned char c : t) {
    if (c == '\n') {
      s += "\\n";
    } else if (c == '\t') {
      s += "\\t";
    } else if (c == '\r') {
      s += "\\r";
    } else if (c < 0x20) {
      s += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    } else {
      s += static_cast<char>(c);
    }
  }
  return s + "'";
}

// --- families hlm supports: every case equals llama.cpp's ids and round-trips --------------------

struct Family {
  const char* name;    // ggml-vocab-<name>.gguf
  const char* model;   // tokenizer.ggml.model
  const char* pre;     // tokenizer.ggml.pre
  const char* models;  // who uses it
};

const Family kSupported[] = {
    {"llama-spm", "llama", "default", "SentencePiece: Llama-2, TinyLlama, Mistral v0.1"},
    {"phi-3", "llama", "default", "SentencePiece: Phi-3"},
    {"llama-bpe", "gpt2", "llama-bpe", "byte-level BPE: Llama-3.x"},
    {"qwen2", "gpt2", "qwen2", "byte-level BPE: Qwen2, Qwen2.5"},
    {"gpt-2", "gpt2", "gpt-2", "byte-level BPE: GPT-2"},
    {"mpt", "gpt2", "mpt", "byte-level BPE: MPT"},
    {"starcoder", "gpt2", "starcoder", "byte-level BPE: StarCoder2"},
    {"refact", "gpt2", "refact", "byte-level BPE: Refact"},
    {"command-r", "gpt2", "command-r", "byte-level BPE: Command-R"},
};

void PrintTo(const Family& f, std::ostream* os) { *os << f.name; }

class SupportedVocab : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    path_ = vocab_path(GetParam().name);
    REQUIRE_VOCAB_FILE(path_);
    auto f = GgufFile::open(path_);
    ASSERT_TRUE(f.ok()) << f.error().message;
    auto t = Tokenizer::from_gguf(f.value());
    ASSERT_TRUE(t.ok()) << t.error().message;
    tok_ = std::make_unique<Tokenizer>(std::move(t).value());
    ASSERT_EQ(tok_->model_type(), GetParam().model) << path_;
    ASSERT_EQ(tok_->pre_type(), GetParam().pre) << path_;
  }
  std::string path_;
  std::unique_ptr<Tokenizer> tok_;
};

// What llama.cpp's test-tokenizer-0 checks: tokenize(text, add_special=false,
// parse_special=false) equals the .out ids. Besides, detokenisation round-trips: decoding
// llama.cpp's ids (as llama_detokenize, special tokens rendered) gives back the text. Vocabularies
// with llama.cpp's space clean-up (" ?" -> "?", " 's" -> "'s") cannot round-trip through decode by
// design; for them the token pieces must concatenate to the text instead.
TEST_P(SupportedVocab, MatchesLlamaCppCases) {
  std::string error;
  std::vector<Case> cases = read_cases(path_, &error);
  ASSERT_FALSE(cases.empty()) << error;
  const bool clean = tok_->clean_spaces();
  int encoded = 0, round_trips = 0, cleaned = 0;
  for (const Case& c : cases) {
    std::vector<int32_t> got = tok_->encode(c.text, false, false);
    if (got == c.ids) {
      ++encoded;
    } else {
      ADD_FAILURE() << path_ << ": " << show_text(c.text) << "\n  llama.cpp: " << show_ids(c.ids)
                    << "\n  hlm:       " << show_ids(got);
    }
    std::string text = tok_->decode(c.ids, true);
    if (clean) {
      std::string pieces;
      for (int32_t id : c.ids) pieces += tok_->token_to_piece(id, true);
      text.swap(pieces);
      cleaned += tok_->decode(c.ids, true) != c.text;
    }
    if (text == c.text) {
      ++round_trips;
    } else {
      ADD_FAILURE() << path_ << ": " << (clean ? "the pieces of" : "decoding") << " llama.cpp's "
                    << show_ids(c.ids) << " give " << show_text(text) << ", not "
                    << show_text(c.text);
    }
  }
  const int n = static_cast<int>(cases.size());
  std::printf(
      "[ vocab    ] %-10s %2d/%2d cases encode as llama.cpp, %2d/%2d round-trip%s (%s)\n",
      GetParam().name, encoded, n, round_trips, n,
      clean ? (" through the pieces; decode cleans spaces in " + std::to_string(cleaned)).c_str()
            : " through decode",
      GetParam().models);
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, SupportedVocab, ::testing::ValuesIn(kSupported),
                         [](const ::testing::TestParamInfo<Family>& p) {
                           std::string n = p.param.name;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

// What llama.cpp's test-tokenizer-1-spm checks on its SentencePiece vocabulary: every token's
// text, tokenized again (special tokens parsed), decodes to the same text; and every codepoint
// (but surrogates, U+40000..U+E0000 and U+2581 itself) survives tokenize + decode.
TEST(SpmVocab, EveryTokenAndCodepointRoundTrips) {
  const std::string path = vocab_path("llama-spm");
  REQUIRE_VOCAB_FILE(path);
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  auto t = Tokenizer::from_gguf(f.value());
  ASSERT_TRUE(t.ok()) << t.error().message;
  const Tokenizer& tok = t.value();
  int bad = 0;
  for (int32_t id = 0; id < tok.n_vocab() && bad < 10; ++id) {
    const int32_t one[] = {id};
    std::string str = tok.decode(one, true);
    std::string check = tok.decode(tok.encode(str, false, true), true);
    if (check != str) {
      ADD_FAILURE() << path << ": token " << id << " decodes to " << show_text(str)
                    << ", which tokenizes and decodes to " << show_text(check);
      ++bad;
    }
  }
  for (uint32_t cp = 0; cp < 0x110000 && bad < 10; ++cp) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x40000 && cp <= 0xE0000) || cp == 0x2581) {
      continue;
    }
    std::string str;
    unicode::append_utf8(str, cp);
    std::string check = tok.decode(tok.encode(str, false, true), true);
    if (check != str) {
      ADD_FAILURE() << path << ": codepoint U+" << std::hex << cp << std::dec << " decodes to "
                    << show_text(check);
      ++bad;
    }
  }
}

// --- families hlm does not support: refused with an error naming the file and the field ---------

struct Unsupported {
  const char* name;   // ggml-vocab-<name>.gguf
  const char* field;  // the tokenizer field hlm refuses
  const char* value;  // its value
};

const Unsupported kUnsupported[] = {
    {"bert-bge", "tokenizer.ggml.model", "bert"},
    {"gemma-4", "tokenizer.ggml.model", "gemma4"},
    {"nomic-bert-moe", "tokenizer.ggml.model", "t5"},
    {"deepseek-coder", "tokenizer.ggml.pre", "deepseek-coder"},
    {"deepseek-llm", "tokenizer.ggml.pre", "deepseek-llm"},
    {"falcon", "tokenizer.ggml.pre", "falcon"},
    {"qwen35", "tokenizer.ggml.pre", "qwen35"},
};

void PrintTo(const Unsupported& u, std::ostream* os) { *os << u.name; }

class UnsupportedVocab : public ::testing::TestWithParam<Unsupported> {};

TEST_P(UnsupportedVocab, RefusedNamingFileFieldAndSupportedList) {
  const std::string path = vocab_path(GetParam().name);
  REQUIRE_VOCAB_FILE(path);
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  auto t = Tokenizer::from_gguf(f.value());
  ASSERT_FALSE(t.ok()) << path << " loaded; if hlm supports it now, move it to kSupported";
  const std::string& msg = t.error().message;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(GetParam().field), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::string("'") + GetParam().value + "'"), std::string::npos) << msg;
  // The supported list: every model type, or every pre-tokenizer of the families above.
  if (std::string(GetParam().field) == "tokenizer.ggml.model") {
    EXPECT_NE(msg.find("supports 'llama'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'gpt2'"), std::string::npos) << msg;
  } else {
    for (const Family& fam : kSupported) {
      if (std::string(fam.model) != "gpt2") continue;
      EXPECT_NE(msg.find(std::string("'") + fam.pre + "'"), std::string::npos)
          << msg << " does not list " << fam.pre;
    }
  }
  std::printf("[ vocab    ] %-14s refused: %s\n", GetParam().name, msg.c_str());
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, UnsupportedVocab, ::testing::ValuesIn(kUnsupported),
                         [](const ::testing::TestParamInfo<Unsupported>& p) {
                           std::string n = p.param.name;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

// Every vocabulary in the directory, listed above or not (aquila, baichuan, gpt-neox have no
// cases), either loads and encodes its cases' texts, or is refused with an error naming the file.
TEST(AllVocabs, LoadOrRefuseCleanly) {
  const std::string dir = vocab_dir();
  const std::string any = vocab_path("llama-spm");
  REQUIRE_VOCAB_FILE(any);
  int loaded = 0, refused = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string path = e.path().string();
    const std::string file = e.path().filename().string();
    if (!file.starts_with("ggml-vocab-") || !file.ends_with(".gguf")) continue;
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    auto t = Tokenizer::from_gguf(f.value());
    if (!t.ok()) {
      EXPECT_NE(t.error().message.find(path), std::string::npos) << t.error().message;
      ++refused;
      continue;
    }
    ++loaded;
    EXPECT_GT(t.value().n_vocab(), 0) << path;
    if (fs::exists(path + ".inp") && fs::exists(path + ".out")) {
      std::string error;
      for (const Case& c : read_cases(path, &error)) (void)t.value().encode(c.text, true, true);
    }
  }
  std::printf("[ vocab    ] %s: %d vocabularies load, %d are refused\n", dir.c_str(), loaded,
              refused);
  EXPECT_GT(loaded, 0);
}

}  // namespace
}  // namespace hlm
