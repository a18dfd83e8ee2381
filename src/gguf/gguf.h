// GgufFile: a validated, memory-mapped view of a GGUF v2/v3 file: metadata and tensor table.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "gguf/tensor_type.h"
#include "util/mapped_file.h"
#include "util/result.h"

namespace hlm {

// A metadata value. Arrays of strings and numbers are kept whole (vocabularies are arrays).
struct GgufValue {
  using Array = std::vector<GgufValue>;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<Array>> v;

  bool is_string() const { return v.index() == 4; }
  bool is_array() const { return v.index() == 5; }
  bool is_number() const { return v.index() <= 2; }
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const Array* as_array() const { return is_array() ? std::get<5>(v).get() : nullptr; }
};

// hlm's metadata key for a shortlist output head: the token ids (strictly increasing) whose rows
// output.weight holds, in that order; every other id has probability 0. A draft model spends much
// of each step on a 49,152-row head, and a shortlist of the ids it predicts is far cheaper.
inline constexpr const char* kOutputTokenIdsKey = "hlm.output.token_ids";

struct GgufTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // relative to the data section
  const void* data = nullptr;  // inside the mapping
  size_t n_bytes = 0;

  int64_t n_elements() const;
  int64_t rows() const { return n_elements() / shape[0]; }
};

class GgufFile {
 public:
  // Maps and validates the file: magic, version, every string and array length, every tensor's
  // type, shape, alignment and extent. Errors name the file and the offending key or tensor.
  static Result<GgufFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  // String array (e.g. tokenizer.ggml.tokens); empty when absent.
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<double> get_numbers(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  // See MappedFile::release: drops bytes of the mapping that are no longer read.
  void release(const void* p, size_t n) const { file_.release(p, n); }
  const GgufTensor* tensor(const std::string& name) const;

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace hlm
