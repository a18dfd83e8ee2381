// GGUF v2/v3 reader: parses the header, metadata and tensor table from a mapping, bounds-checking
// every read so that a truncated or corrupt file yields an error instead of a crash.
#include "gguf/gguf.h"

#include <cstring>
#include <limits>

namespace hlm {
namespace {

enum GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Strings and arrays beyond these sizes are treated as corruption, not allocation requests.
constexpr uint64_t kMaxString = 1ull << 26;
constexpr uint64_t kMaxArray = 1ull << 28;
constexpr int kMaxDims = 4;

class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path)
      : p_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }

  template <class T>
  bool read(T* out) {
    if (size_ - pos_ < sizeof(T)) return false;
    std::memcpy(out, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool read_string(std::string* out) {
    uint64_t n;
    if (!read(&n) || n > kMaxString || size_ - pos_ < n) return false;
    out->assign(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return true;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

bool read_scalar(Cursor& c, uint32_t type, GgufValue* out) {
  switch (type) {
#define HLM_READ_AS(T, STORE)      \
  {                                \
    T x;                           \
    if (!c.read(&x)) return false; \
    out->v = STORE(x);             \
    return true;                   \
  }
    case kU8:
      HLM_READ_AS(uint8_t, uint64_t)
    case kI8:
      HLM_READ_AS(int8_t, int64_t)
    case kU16:
      HLM_READ_AS(uint16_t, uint64_t)
    case kI16:
      HLM_READ_AS(int16_t, int64_t)
    case kU32:
      HLM_READ_AS(uint32_t, uint64_t)
    case kI32:
      HLM_READ_AS(int32_t, int64_t)
    case kU64:
      HLM_READ_AS(uint64_t, uint64_t)
    case kI64:
      HLM_READ_AS(int64_t, int64_t)
    case kF32:
      HLM_READ_AS(float, double)
    case kF64:
      HLM_READ_AS(double, double)
    case kBool: {
      uint8_t x;
      if (!c.read(&x)) return false;
      out->v = x != 0;
      return true;
    }
#undef HLM_READ_AS
    case kString: {
      std::string s;
      if (!c.read_string(&s)) return false;
      out->v = std::move(s);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

std::optional<int64_t> GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<int64_t>(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto i = as_int()) return static_cast<double>(*i);
  return std::nullopt;
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.error();
  GgufFile f;
  f.file_ = std::move(mapped).value();
  Cursor c(f.file_.data(), f.file_.size(), f.file_.path());

  uint32_t magic = 0;
  if (!c.read(&magic) || magic != 0x46554747u) {  // "GGUF" little-endian
    return make_error("{}: not a GGUF file (bad magic; expected the bytes 'GGUF' at offset 0)",
                      path);
  }
  if (!c.read(&f.version_)) return make_error("{}: truncated GGUF header", path);
  if (f.version_ != 2 && f.version_ != 3) {
    return make_error("{}: unsupported GGUF version {} (hlm reads versions 2 and 3)", path,
                      f.version_);
  }
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.read(&n_tensors) || !c.read(&n_kv)) return make_error("{}: truncated GGUF header", path);
  if (n_tensors > (1u << 20) || n_kv > (1u << 20)) {
    return make_error("{}: corrupt GGUF header ({} tensors, {} metadata keys)", path, n_tensors,
                      n_kv);
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    uint32_t type;
    if (!c.read_string(&key) || !c.read(&type)) {
      return make_error("{}: truncated or corrupt metadata at key #{} (offset {})", path, i,
                        c.pos());
    }
    GgufValue value;
    if (type == kArray) {
      uint32_t elem_type;
      uint64_t n;
      if (!c.read(&elem_type) || !c.read(&n) || n > kMaxArray || elem_type == kArray) {
        return make_error("{}: corrupt array header for metadata key '{}'", path, key);
      }
      auto arr = std::make_shared<GgufValue::Array>();
      arr->resize(n);
      for (uint64_t j = 0; j < n; ++j) {
        if (!read_scalar(c, elem_type, &(*arr)[j])) {
          return make_error("{}: truncated or corrupt array element {} of metadata key '{}'", path,
                            j, key);
        }
      }
      value.v = std::move(arr);
    } else if (!read_scalar(c, type, &value)) {
      return make_error("{}: truncated or corrupt value (type {}) for metadata key '{}'", path,
                        type, key);
    }
    f.kv_[key] = std::move(value);
  }
  if (auto a = f.get_int("general.alignment")) {
    if (*a <= 0 || (*a & (*a - 1)) != 0) {
      return make_error("{}: general.alignment = {} is not a power of two", path, *a);
    }
    f.alignment_ = static_cast<uint64_t>(*a);
  }

  f.tensors_.resize(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor& t = f.tensors_[i];
    uint32_t n_dims, type;
    if (!c.read_string(&t.name) || !c.read(&n_dims) || n_dims == 0 || n_dims > kMaxDims) {
      return make_error("{}: corrupt tensor table entry #{}", path, i);
    }
    t.shape.resize(n_dims);
    for (auto& d : t.shape) {
      uint64_t x;
      if (!c.read(&x) || x == 0 || x > (1ull << 40)) {
        return make_error("{}: tensor '{}' has a corrupt shape", path, t.name);
      }
      d = static_cast<int64_t>(x);
    }
    if (!c.read(&type) || !c.read(&t.offset)) {
      return make_error("{}: truncated tensor table at tensor '{}'", path, t.name);
    }
    const TensorTypeInfo* ti = tensor_type_info(type);
    if (!ti) return make_error("{}: tensor '{}' has unknown tensor type id {}", path, t.name, type);
    t.type = static_cast<TensorType>(type);
    if (t.shape[0] % ti->block_size != 0) {
      return make_error("{}: tensor '{}' of type {} has row length {} not a multiple of {}", path,
                        t.name, ti->name, t.shape[0], ti->block_size);
    }
    int64_t n = t.n_elements();
    if (n <= 0 || n > (int64_t{1} << 40)) {
      return make_error("{}: tensor '{}' has a corrupt shape", path, t.name);
    }
    t.n_bytes = static_cast<size_t>(n / ti->block_size) * ti->type_size;
    if (f.by_name_.count(t.name)) return make_error("{}: duplicate tensor '{}'", path, t.name);
    f.by_name_[t.name] = i;
  }

  const uint64_t data_start = (c.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (auto& t : f.tensors_) {
    if (t.offset % f.alignment_ != 0) {
      return make_error("{}: tensor '{}' offset {} is not aligned to {}", path, t.name, t.offset,
                        f.alignment_);
    }
    if (data_start > f.file_.size() || t.offset > f.file_.size() - data_start ||
        t.n_bytes > f.file_.size() - data_start - t.offset) {
      return make_error(
          "{}: file is truncated: tensor '{}' ({} bytes at data offset {}) extends past the end "
          "of the file ({} bytes)",
          path, t.name, t.n_bytes, t.offset, f.file_.size());
    }
    t.data = f.file_.data() + data_start + t.offset;
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : std::nullopt;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return *v->as_string();
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  std::vector<std::string> out;
  const GgufValue* v = find(key);
  if (!v || !v->as_array()) return out;
  out.reserve(v->as_array()->size());
  for (const auto& e : *v->as_array())
    out.push_back(e.as_string() ? *e.as_string() : std::string());
  return out;
}

std::vector<double> GgufFile::get_numbers(const std::string& key) const {
  std::vector<double> out;
  const GgufValue* v = find(key);
  if (!v || !v->as_array()) return out;
  out.reserve(v->as_array()->size());
  for (const auto& e : *v->as_array()) out.push_back(e.as_float().value_or(0.0));
  return out;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace hlm
