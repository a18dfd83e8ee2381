#!/usr/bin/env python3
"""Pipelined drafting against waiting for every reply (docs/pipelining.md).

Runs `hlm run --json` on the first N dev prompts for each policy, channel and pipeline setting
(`--no-pipeline`, or `--pipeline-depth D`), alternating the settings prompt by prompt so that
load drift on a shared machine hits them alike, and prints per setting the tokens, uploads,
replacements, dropped requests, modelled tokens/s (and wall-clock tokens/s with --cloud),
device energy and uplink bytes per token, the ratio to --no-pipeline, and whether every
output equals the one without pipelining.

  python3 tools/eval/pipeline_compare.py --hlm build/hlm --depths 1,2,3,4,8
  build/hlm serve --listen 127.0.0.1:7391 &
  python3 tools/eval/pipeline_compare.py --hlm build/hlm --cloud 127.0.0.1:7391 --prompts 2
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hlm", default=str(ROOT / "build" / "hlm"))
    ap.add_argument("--prompts", type=int, default=4, help="first N prompts of data/prompts/dev.jsonl")
    ap.add_argument("--policies", default="hlm,uhlm")
    ap.add_argument("--channels", default="lte,narrowband")
    ap.add_argument("--depths", default="3", help="pipeline depths to compare with --no-pipeline")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--cloud", help="host:port of `hlm serve`: verify there, channel emulated")
    ap.add_argument("extra", nargs="*", help="more `hlm run` arguments (after --)")
    a = ap.parse_args()
    lines = (ROOT / "data" / "prompts" / "dev.jsonl").read_text().splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines[: a.prompts]]
    settings = [None] + [int(d) for d in a.depths.split(",")]

    def run(prompt, policy, channel, depth):
        cmd = [a.hlm, "run", "--chat", "--prompt", prompt, "--policy", policy, "--channel", channel,
               "--max-tokens", str(a.max_tokens), "--json"] + a.extra
        cmd += ["--no-pipeline"] if depth is None else ["--pipeline-depth", str(depth)]
        if a.cloud:
            cmd += ["--cloud", a.cloud, "--emulate-channel"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        return json.loads(r.stdout)

    for policy in a.policies.split(","):
        for channel in a.channels.split(","):
            runs = {s: [] for s in settings}
            for p in prompts:
                for s in settings:
                    runs[s].append(run(p, policy, channel, s))
            base_tps = None
            for s in settings:
                rs = runs[s]
                n = sum(r["n_tokens"] for r in rs)
                tps = n / sum(r["latency_s"] for r in rs)
                wall = n / sum(r["wall_s"] for r in rs)
                if s is None:
                    base_tps, base_wall = tps, wall
                same = all(r["text"] == b["text"] for r, b in zip(rs, runs[None]))
                print(f"{policy} {channel} {'no-pipeline' if s is None else f'depth {s}':11}"
                      f" tokens {n} uploads {sum(r['uploads'] for r in rs)}"
                      f" replaced {sum(r['resampled'] for r in rs)}"
                      f" dropped {sum(r.get('discarded', 0) for r in rs)}"
                      f" | modelled {tps:.2f} tokens/s (x{tps / base_tps:.2f})"
                      + (f" wall-clock {wall:.2f} tokens/s (x{wall / base_wall:.2f})" if a.cloud else "")
                      + f" | device {sum(r['energy_j']['device'] for r in rs) / n:.3f} J/token"
                      f" uplink {sum(r['uplink_bytes'] for r in rs) // n} B/token | same outputs {same}",
                      flush=True)


if __name__ == "__main__":
    main()
