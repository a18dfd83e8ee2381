#!/usr/bin/env python3
"""The teacher's text survives pack and unpack: a few sequences written by `hlm models
teacher-text`, packed to tokens only, then scored back into a fresh work dir, give the same
tokens and n_prompt and the same rows up to rounding (the C++ test of teacher_score holds the
engine to this; here the Python side, ids, offsets and the JSON lines, is checked end to end).
Also: a resumed teacher-text skips the ids it dropped before.

    python3 tools/distill/pack_test.py HLM_BINARY TEACHER_GGUF
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    hlm, teacher = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        a, b, packed = (os.path.join(tmp, x) for x in ("a", "b", "packed.npz"))
        subprocess.run([hlm, "models", "teacher-text", "--model", teacher, "--out",
                        os.path.join(a, "gen", "self"), "--count", "5", "--batch", "3",
                        "--max-user", "48", "--max-new", "16", "--seed", "11"],
                       check=True, stderr=subprocess.DEVNULL)
        run = [sys.executable, os.path.join(HERE, "distill.py"), "--teacher", teacher, "--hlm",
               hlm, "--packed", packed, "--batch", "2"]
        subprocess.run(run + ["--work", a, "pack"], check=True)
        subprocess.run(run + ["--work", b, "unpack"], check=True, stderr=subprocess.DEVNULL)

        written = sorted(glob.glob(os.path.join(a, "gen", "self", "*.npz")))
        assert len(written) >= 3, f"only {len(written)} of 5 questions ended within 48 tokens"
        scored = sorted(os.path.basename(f) for f in glob.glob(os.path.join(b, "gen", "self", "*.npz")))
        assert scored == [os.path.basename(f) for f in written], (scored, written)
        z = np.load(packed)
        assert list(z["id"]) == [int(os.path.basename(f)[:-4]) for f in written]
        for f in written:
            x, y = np.load(f), np.load(os.path.join(b, "gen", "self", os.path.basename(f)))
            assert (x["toks"] == y["toks"]).all(), f
            assert int(x["n_prompt"]) == int(y["n_prompt"]), f
            assert x["idx"].shape == y["idx"].shape, (f, x["idx"].shape, y["idx"].shape)
            flips = int((x["idx"][:, 0] != y["idx"][:, 0]).sum())
            assert flips <= 1, f"{f}: top-1 differs at {flips} positions (at most one near-tie)"
            dl = float(np.abs(x["lse"] - y["lse"]).max())
            assert dl < 0.05, f"{f}: log-sum-exp differs by {dl}"

        # An id whose user turn did not end in time leaves a marker, and a resumed run skips it
        # instead of drawing (and dropping) the same turn again: under --max-user 4 a turn must
        # end at exactly 4 tokens, so most are dropped.
        tight = [hlm, "models", "teacher-text", "--model", teacher, "--out", os.path.join(tmp, "t"),
                 "--count", "4", "--batch", "2", "--max-user", "4", "--max-new", "4", "--json"]
        first = json.loads(subprocess.run(tight, check=True, capture_output=True, text=True).stdout)
        ids = [(os.path.exists(os.path.join(tmp, "t", f"{i:05d}.npz")),
                os.path.exists(os.path.join(tmp, "t", f"{i:05d}.dropped"))) for i in range(4)]
        assert all(n != d for n, d in ids), ids
        assert first["dropped"] == sum(d for _, d in ids) >= 1, (first, ids)
        again = json.loads(subprocess.run(tight, check=True, capture_output=True, text=True).stdout)
        assert (again["written"], again["dropped"]) == (0, 0), again
        assert (again["already"], again["dropped_before"]) == (first["written"], first["dropped"]), again

        # A pack written for another teacher is refused by name.
        bad = subprocess.run(run[:2] + ["--teacher", "/elsewhere/other.gguf", "--hlm", hlm,
                                        "--packed", packed, "--work", b, "unpack"],
                             capture_output=True, text=True)
        assert bad.returncode != 0 and "other.gguf" in bad.stderr, bad.stderr
    print(f"pack_test: {len(written)} sequences packed and scored back: OK")


if __name__ == "__main__":
    main()
