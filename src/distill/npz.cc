#include "distill/npz.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>

namespace hlm::npz {
namespace {

size_t dtype_size(const std::string& dtype) {
  if (dtype.size() != 3 || dtype[0] != '<') return 0;
  return size_t(dtype[2] - '0');
}

void put16(std::vector<uint8_t>& o, uint32_t v) {
  o.push_back(uint8_t(v));
  o.push_back(uint8_t(v >> 8));
}
void put32(std::vector<uint8_t>& o, uint32_t v) {
  put16(o, v & 0xffff);
  put16(o, v >> 16);
}

}  // namespace

std::vector<uint8_t> npy(const Array& a) {
  std::string shape;
  for (int64_t d : a.shape) shape += fmt::format("{}, ", d);
  if (a.shape.size() > 1) shape.resize(shape.size() - 2);  // "(n, k)"; a 1-d shape keeps "(n,)"
  if (a.shape.size() == 1) shape.resize(shape.size() - 1);
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", a.dtype, shape);
  const size_t fixed = 10;  // magic, version, header length
  header.append((64 - (fixed + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> o = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  put16(o, uint32_t(header.size()));
  o.insert(o.end(), header.begin(), header.end());
  o.insert(o.end(), a.data.begin(), a.data.end());
  return o;
}

Status write(const std::string& path, std::span<const Array> arrays) {
  // Stored (uncompressed) zip entries: numpy.load reads them without inflating.
  std::vector<uint8_t> out, central;
  for (const Array& a : arrays) {
    int64_t n = 1;
    for (int64_t d : a.shape) n *= d;
    const size_t es = dtype_size(a.dtype);
    if (es == 0 || a.data.size() != size_t(n) * es) {
      return make_error("{}: array '{}' has {} bytes; dtype {} and {} elements need {}", path,
                        a.name, a.data.size(), a.dtype, n, size_t(n) * es);
    }
    const std::vector<uint8_t> body = npy(a);
    const std::string name = a.name + ".npy";
    const uint32_t crc = uint32_t(crc32(0L, body.data(), uInt(body.size())));
    const uint32_t offset = uint32_t(out.size());
    const uint32_t dos_date = (0 << 9) | (1 << 5) | 1;  // 1980-01-01: no clock in the data
    auto entry = [&](std::vector<uint8_t>& o, bool in_central) {
      put32(o, in_central ? 0x02014b50 : 0x04034b50);
      if (in_central) put16(o, 20);  // made by
      put16(o, 20);                  // needed to extract
      put16(o, 0);                   // flags
      put16(o, 0);                   // stored
      put16(o, 0);                   // time
      put16(o, dos_date);
      put32(o, crc);
      put32(o, uint32_t(body.size()));
      put32(o, uint32_t(body.size()));
      put16(o, uint32_t(name.size()));
      put16(o, 0);  // extra
      if (in_central) {
        put16(o, 0);  // comment
        put16(o, 0);  // disk
        put16(o, 0);  // internal attributes
        put32(o, 0);  // external attributes
        put32(o, offset);
      }
      o.insert(o.end(), name.begin(), name.end());
    };
    entry(out, false);
    out.insert(out.end(), body.begin(), body.end());
    entry(central, true);
  }
  const uint32_t cd_offset = uint32_t(out.size());
  out.insert(out.end(), central.begin(), central.end());
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, uint32_t(arrays.size()));
  put16(out, uint32_t(arrays.size()));
  put32(out, uint32_t(central.size()));
  put32(out, cd_offset);
  put16(out, 0);

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return make_error("{}: cannot write (the directory must exist and be writable)", tmp);
  const bool written = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    return make_error("{}: write failed (disk full?)", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return make_error("{}: cannot rename to {}: {}", tmp, path, ec.message());
  return ok_status();
}

}  // namespace hlm::npz
