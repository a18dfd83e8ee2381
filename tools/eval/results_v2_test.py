#!/usr/bin/env python3
"""Checks of results_v2.py on a made-up work directory (numpy only, no models):

    python3 tools/eval/results_v2_test.py
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_v2 as r2  # noqa: E402

PROMPTS = [f"p{i}" for i in range(6)]
SEEDS = [1, 2]
# method, setting -> (fidelity, energy per token, upload rate)
POINTS = {("slm", "default"): (0.2, 0.01, 0.0), ("llm", "default"): (1.0, 1.0, 0.0),
          ("hlm", "default"): (1.0, 1.2, 1.0),
          ("uhlm", "u_th=0.3"): (0.97, 1.1, 0.9), ("uhlm", "u_th=0.7"): (0.5, 0.6, 0.4),
          ("iuhlm", "u_th=0.3,lambda=0.2,est=entropy"): (0.96, 1.05, 0.8),
          ("iuhlm", "u_th=0.7,lambda=0.2,est=entropy"): (0.6, 0.5, 0.3)}


def write(d, points, scored, cost=None, energy_scale=1.0):
    os.makedirs(d, exist_ok=True)
    res, sc = [], []
    for (m, s), (fid, e, up) in points.items():
        for i, p in enumerate(PROMPTS):
            for seed in SEEDS:
                key = f"{p}|{m}|{s}|{seed}"
                jitter = 0.01 * ((i + seed) % 3 - 1)
                res.append({"key": key, "id": p, "seed": seed, "method": m, "setting": s,
                            "e_per_token_j": energy_scale * e * (1 + jitter),
                            "tokens_per_s": 10.0, "upload_rate": up, "tsr": 1 - up,
                            "output_ids": [hash((m, s, p, seed)) % 1000]})
                sc.append({"key": key, "bertscore_f1_llm": min(1.0, fid + jitter)})
    with open(os.path.join(d, "results.jsonl"), "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in res)
    if scored:
        with open(os.path.join(d, "scores.jsonl"), "w") as f:
            f.writelines(json.dumps(x) + "\n" for x in sc)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"profile": {"u_th": 0.3}, "cost": cost}, f)


def main():
    with tempfile.TemporaryDirectory() as w:
        write(os.path.join(w, "test-t0"), POINTS, True)
        write(os.path.join(w, "test-t0-full"), {("llm", "default"): (1.0, 1.0, 0.0),
                                                ("hlm", "default"): (1.0, 4.0, 1.0)}, True)
        write(os.path.join(w, "win", "wifi--cloudA"), POINTS, False, {"cloud": "cloudA"})
        tables = r2.test_tables(w, ["0"])
        rows = {(r["method"], r["setting"]): r for r in tables["0"]["rows"]}
        # Savings are paired with hlm (same upload) and with hlm-full.
        sav = rows[("uhlm", "u_th=0.3")]["metrics"]["saving_vs_hlm"]["mean"]
        assert abs(sav - (1 - 1.1 / 1.2)) < 1e-3, sav
        full = rows[("uhlm", "u_th=0.3")]["metrics"]["saving_vs_hlm_full"]["mean"]
        assert abs(full - (1 - 1.1 / 4.0)) < 1e-3, full
        assert rows[("uhlm", "u_th=0.3")]["default_point"]
        # The bootstrap is deterministic and its interval holds the mean.
        b1 = r2.boot({p: float(i) for i, p in enumerate(PROMPTS)})
        b2 = r2.boot({p: float(i) for i, p in enumerate(PROMPTS)})
        assert b1 == b2 and b1["lo"] <= b1["mean"] <= b1["hi"], b1
        g = r2.goals(tables)["0"]
        # iuhlm u_th=0.3 (fidelity 0.96) saves 12.5 % vs hlm, uhlm u_th=0.3 8 %: below 40 %.
        assert not g["saving_at_095"]["met"]
        assert g["saving_at_095"]["best"]["method"] == "iuhlm"
        # iuhlm at upload rate 0.8 against uhlm interpolated between 0.4 and 0.9.
        pts = {p["setting"]: p for p in g["matched"]["points"]}
        at = pts["u_th=0.3,lambda=0.2,est=entropy"]["uhlm_quality_at_rate"]["mean"]
        assert abs(at - (0.5 + (0.8 - 0.4) / 0.5 * 0.47)) < 0.02, at
        assert pts["u_th=0.7,lambda=0.2,est=entropy"]["uhlm_quality_at_rate"] is None
        win = r2.win(w, tables, "0")
        assert win["outputs_compared"] > 0 and win["outputs_mismatched"] == 0
        c95 = next(c for c in win["cells"] if c["floor"] == 0.95)
        # At 0.95: llm (1.0 J), hlm (1.2), uhlm u_th=0.3 (1.1), iuhlm u_th=0.3 (1.05) qualify.
        assert c95["verdict"]["best"] == "llm", c95["verdict"]
        assert c95["methods"]["iuhlm"]["setting"] == "u_th=0.3,lambda=0.2,est=entropy"
        assert not c95["methods"]["slm"]["qualifies"]
        assert abs(c95["verdict"]["saving_vs_runner_up"] - (1 - 1.0 / 1.05)) < 5e-3
    print("results_v2_test: ok")


if __name__ == "__main__":
    main()
