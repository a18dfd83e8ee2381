// npz: writes NumPy's .npz (an uncompressed zip of .npy arrays), the format tools/distill reads
// its training sequences in, so data written by hlm and by llama-cpp-python train the same way.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace hlm::npz {

// One array: its name in the archive (".npy" is appended), NumPy's dtype string ("<i4", "<i8",
// "<f2", "<f4"), its shape (empty for a scalar) and its bytes in C order, little-endian.
struct Array {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
};

template <class T, size_t N>
std::span<const uint8_t> bytes_of(std::span<T, N> v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()};
}

// The .npy encoding of one array (format 1.0, header padded to 64 bytes).
std::vector<uint8_t> npy(const Array& a);

// Writes the archive to path + ".tmp" and renames it, so a reader never sees half a file.
// Errors name the file, or the array whose size does not match its dtype and shape.
Status write(const std::string& path, std::span<const Array> arrays);

}  // namespace hlm::npz
