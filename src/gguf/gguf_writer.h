// GgufWriter: builds a GGUF v3 file from metadata and tensors (test models, derived models).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "util/result.h"

namespace hlm {

class GgufWriter {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // Copies every metadata key of an existing file whose name starts with `prefix` (all keys by
  // default; "tokenizer." takes a vocabulary), types preserved where representable.
  void copy_metadata(const GgufFile& from, const std::string& prefix = "");

  // shape in ggml order (shape[0] is the row length); data is row_bytes(type, shape[0]) * rows.
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                  const void* data, size_t n_bytes);
  // A tensor whose n_bytes are produced by fill(dst) while write() streams the file, in tensor
  // order, so that a multi-gigabyte model never has to be held in memory whole.
  using Fill = std::function<Status(uint8_t* dst)>;
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                  size_t n_bytes, Fill fill);

  // Writes atomically (to path + ".tmp", then rename).
  Status write(const std::string& path, uint32_t alignment = 32) const;

 private:
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    size_t n_bytes;
    std::vector<uint8_t> data;  // the bytes, or empty when fill makes them
    Fill fill;
  };
  void put_key(const std::string& key, uint32_t type, std::vector<uint8_t> payload);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> kv_;  // key -> type + payload
  std::vector<Tensor> tensors_;
};

}  // namespace hlm
