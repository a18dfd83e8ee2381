#!/usr/bin/env python3
"""Record llama.cpp's encodings of the weight types hlm writes, for hlm's tests.

llama.cpp is used ONLY as an oracle here; hlm never links it.  For each of
Q4_0, Q8_0, Q4_K and Q6_K this quantises the same four 256-element rows with
llama.cpp's own quantiser (ggml_quantize_chunk from the libggml-base that
llama-cpp-python ships, no importance matrix: what llama-quantize does without
--imatrix) and decodes the bytes with llama.cpp's Python reference (gguf-py's
gguf.quants.dequantize).  src/ops/quant_llamacpp_test.cc then checks that hlm
decodes those bytes to the same floats, and that hlm's own quantiser is about as
accurate as llama.cpp's on the same rows.

    ~/.cache/hlm/ref-venv/bin/python tools/reference/record_quant_fixture.py \
        --out tests/fixtures/quant_llamacpp.json

The rows are exact functions of the index (no random generator), computed in
float64 and rounded to float32 the same way in the C++ test:
    k = (i * 7919) % 1009 - 504;  x = k^3 / 504^3 * 2.5 * scale[r] + shift[r]
"""

import argparse
import ctypes
import glob
import json
import os
import sys

import numpy as np

N = 256
SCALES = [1.0, 1.0, 0.01, 3.0]
SHIFTS = [0.0, 1.5, 0.0, -2.0]
TYPES = {"Q4_0": 2, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}  # ggml_type ids


def rows():
    x = np.zeros((len(SCALES), N), dtype=np.float32)
    for r, (scale, shift) in enumerate(zip(SCALES, SHIFTS)):
        for i in range(N):
            k = float((i * 7919) % 1009 - 504)
            x[r, i] = np.float32(k * k * k / (504.0 * 504.0 * 504.0) * 2.5 * scale + shift)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import llama_cpp  # noqa: F401  (locates the shared libraries)
    from gguf.quants import GGMLQuantizationType, dequantize
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    libs = glob.glob(os.path.join(libdir, "libggml-base.so*"))
    if not libs:
        sys.exit("no libggml-base.so in %s" % libdir)
    ggml = ctypes.CDLL(sorted(libs)[0])
    ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p]
    ggml.ggml_row_size.restype = ctypes.c_size_t
    ggml.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

    x = rows()
    out = {"n_per_row": N, "scales": SCALES, "shifts": SHIFTS,
           "reference": "llama-cpp-python %s (ggml_quantize_chunk), gguf-py dequantize"
                        % llama_cpp.__version__,
           "types": {}}
    for name, tid in TYPES.items():
        size = ggml.ggml_row_size(tid, N) * len(SCALES)
        buf = ctypes.create_string_buffer(size)
        got = ggml.ggml_quantize_chunk(tid, x.ctypes.data, buf, 0, len(SCALES), N, None)
        assert got == size, (name, got, size)
        raw = np.frombuffer(buf.raw, dtype=np.uint8).reshape(len(SCALES), -1)
        y = dequantize(raw, GGMLQuantizationType[name]).astype(np.float32).reshape(len(SCALES), N)
        rms = float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2)))
        out["types"][name] = {"bytes_hex": buf.raw.hex(),
                              "dequant_f32_hex": y.tobytes().hex(),
                              "rms_error": rms}
        print("%s: %d bytes, rms error %.6g" % (name, size, rms))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
