"""JSON Lines as hlm eval writes them (results.jsonl, scores.jsonl, prompts.jsonl)."""

import json
import os


def read_jsonl(path):
    """The records of `path` (none if it does not exist), skipping blank lines and a partial last
    line from an interrupted write."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out
