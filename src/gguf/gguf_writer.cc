// GgufWriter implementation: little-endian serialisation of the GGUF v3 layout.
#include "gguf/gguf_writer.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace hlm {
namespace {

enum : uint32_t {
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12
};

template <class T>
void append(std::vector<uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void append_string(std::vector<uint8_t>& out, const std::string& s) {
  append(out, static_cast<uint64_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// Encodes one GgufValue (scalar) with its type tag chosen from the variant.
uint32_t encode_scalar(const GgufValue& v, std::vector<uint8_t>& out) {
  if (auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u <= UINT32_MAX) {
      append(out, static_cast<uint32_t>(*u));
      return kU32;
    }
    append(out, *u);
    return kU64;
  }
  if (auto* i = std::get_if<int64_t>(&v.v)) {
    if (*i >= INT32_MIN && *i <= INT32_MAX) {
      append(out, static_cast<int32_t>(*i));
      return kI32;
    }
    append(out, *i);
    return kI64;
  }
  if (auto* d = std::get_if<double>(&v.v)) {
    append(out, static_cast<float>(*d));
    return kF32;
  }
  if (auto* b = std::get_if<bool>(&v.v)) {
    append(out, static_cast<uint8_t>(*b));
    return kBool;
  }
  append_string(out, *v.as_string());
  return kString;
}

}  // namespace

void GgufWriter::put_key(const std::string& key, uint32_t type, std::vector<uint8_t> payload) {
  std::vector<uint8_t> rec;
  append(rec, type);
  rec.insert(rec.end(), payload.begin(), payload.end());
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(rec);
      return;
    }
  }
  kv_.emplace_back(key, std::move(rec));
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  std::vector<uint8_t> p;
  append(p, v);
  put_key(key, kU32, p);
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
  std::vector<uint8_t> p;
  append(p, v);
  put_key(key, kI32, p);
}
void GgufWriter::set_f32(const std::string& key, float v) {
  std::vector<uint8_t> p;
  append(p, v);
  put_key(key, kF32, p);
}
void GgufWriter::set_bool(const std::string& key, bool v) {
  std::vector<uint8_t> p;
  append(p, static_cast<uint8_t>(v));
  put_key(key, kBool, p);
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> p;
  append_string(p, v);
  put_key(key, kString, p);
}

void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> p;
  append(p, kString);
  append(p, static_cast<uint64_t>(v.size()));
  for (const auto& s : v) append_string(p, s);
  put_key(key, kArray, std::move(p));
}

void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> p;
  append(p, kF32);
  append(p, static_cast<uint64_t>(v.size()));
  for (float x : v) append(p, x);
  put_key(key, kArray, std::move(p));
}

void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> p;
  append(p, kI32);
  append(p, static_cast<uint64_t>(v.size()));
  for (int32_t x : v) append(p, x);
  put_key(key, kArray, std::move(p));
}

void GgufWriter::copy_metadata(const GgufFile& from, const std::string& prefix) {
  for (const auto& [key, value] : from.metadata()) {
    if (key == "general.alignment" || key.rfind(prefix, 0) != 0) continue;
    std::vector<uint8_t> p;
    if (const auto* arr = value.as_array()) {
      // Arrays are homogeneous; take the element type from the first element.
      std::vector<uint8_t> body;
      uint32_t elem = kU32;
      for (const auto& e : *arr) elem = encode_scalar(e, body);
      if (arr->empty()) elem = kI32;
      // Mixed widths (e.g. u32 vs u64) cannot occur in files we read, but re-encode safely.
      append(p, elem);
      append(p, static_cast<uint64_t>(arr->size()));
      p.insert(p.end(), body.begin(), body.end());
      put_key(key, kArray, std::move(p));
    } else {
      uint32_t t = encode_scalar(value, p);
      put_key(key, t, std::move(p));
    }
  }
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                            const void* data, size_t n_bytes) {
  Tensor t{name, type, std::move(shape), n_bytes, {}, {}};
  const auto* p = static_cast<const uint8_t*>(data);
  t.data.assign(p, p + n_bytes);
  tensors_.push_back(std::move(t));
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                            size_t n_bytes, Fill fill) {
  tensors_.push_back(Tensor{name, type, std::move(shape), n_bytes, {}, std::move(fill)});
}

Status GgufWriter::write(const std::string& path, uint32_t alignment) const {
  std::vector<uint8_t> head;
  append(head, 0x46554747u);
  append(head, static_cast<uint32_t>(3));
  append(head, static_cast<uint64_t>(tensors_.size()));
  append(head, static_cast<uint64_t>(kv_.size() + (alignment != 32 ? 1 : 0)));
  for (const auto& [k, rec] : kv_) {
    append_string(head, k);
    head.insert(head.end(), rec.begin(), rec.end());
  }
  if (alignment != 32) {
    append_string(head, "general.alignment");
    append(head, kU32);
    append(head, alignment);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    append_string(head, t.name);
    append(head, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) append(head, static_cast<uint64_t>(d));
    append(head, static_cast<uint32_t>(t.type));
    append(head, offset);
    offsets.push_back(offset);
    offset += (t.n_bytes + alignment - 1) / alignment * alignment;
  }
  // A name of this writer's own, so writers of the same path (parallel test processes) never
  // share a half-written file; the rename makes whichever finishes last the file, whole.
  static std::atomic<uint64_t> serial{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), serial++);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) return make_error("{}: cannot open for writing", tmp);
  out.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
  const std::vector<char> zeros(alignment, 0);
  auto pad_to = [&](uint64_t n) {
    uint64_t r = n % alignment;
    if (r) out.write(zeros.data(), static_cast<std::streamsize>(alignment - r));
  };
  pad_to(head.size());
  std::error_code ec;
  std::vector<uint8_t> filled;
  for (const auto& t : tensors_) {
    const uint8_t* bytes = t.data.data();
    if (t.fill) {
      filled.resize(t.n_bytes);
      if (Status st = t.fill(filled.data()); !st) {
        out.close();
        std::filesystem::remove(tmp, ec);
        return st;
      }
      bytes = filled.data();
    }
    out.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(t.n_bytes));
    pad_to(t.n_bytes);
  }
  out.close();
  if (!out) {
    std::filesystem::remove(tmp, ec);
    return make_error("{}: write failed (disk full?)", tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove(tmp, ec);
    return make_error("{}: cannot rename into place: {}", path, why);
  }
  return ok_status();
}

}  // namespace hlm
