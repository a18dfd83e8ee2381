// Activations requantised to int8 the way every quantised kernel consumes them.
#pragma once

#include <cstdint>

namespace hlm::ops {

// Activations of one token requantised in blocks of 32: value i is d[i / 32] * q[i].
struct ActQ8 {
  const int8_t* q;  // n values in [-127, 127]
  const float* d;   // n / 32 block scales
  const float* s;   // n / 32 values d * sum(q over the block)
};

}  // namespace hlm::ops
