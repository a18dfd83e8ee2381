#!/usr/bin/env python3
"""tools/vllm/measure.py: what one-token requests cost a running vLLM server, cold and cached.

Plain python 3 (standard library only). Against a server started by tools/vllm/serve.sh:

    python3 tools/vllm/measure.py --url http://127.0.0.1:8100 [--contexts 64,1500]
        [--repeats 9] [--logprobs 64] [--concurrency 5] [--json]

Prompts are token ids (random ids, seeded, so no two sessions share a prefix). For each context
length N it measures, each as the median of --repeats requests with max_tokens 1:
- cold: a prompt of N tokens vLLM has never seen;
- cached: a session's requests, each extending the previous prompt by one token (what a
  verification does: the prefix is in vLLM's prefix cache, the new tokens and the partly
  filled last cache block are computed), plain and with `logprobs` (top --logprobs);
- concurrent: --concurrency sessions each sending such a request at once (wall time per round,
  and its ratio to one request);
and once, at the shortest context, full-vocabulary log-probabilities (`logprobs: -1`) with their
response size. For every phase it reads vLLM's /metrics before and after and reports the prefix
cache's queries and hits (tokens) and the prompt tokens computed, so a cache miss shows.
"""

import argparse
import http.client
import json
import os
import platform
import random
import re
import statistics
import sys
import threading
import time
import urllib.parse

SPECIAL_IDS = 100  # SmolLM2's special tokens are the first ids; random prompts stay above


class Failure(Exception):
    """A reply that makes the measurement meaningless; main() prints it and exits 1."""


class Client:
    """One persistent HTTP/1.1 connection to the server."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def request(self, method, path, body=None, timeout=600):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                headers = {"Content-Type": "application/json"} if data else {}
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                if r.status != 200:
                    raise Failure(f"{method} {path} answered {r.status}: {raw[:300]!r}")
                return raw
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def metrics(client):
    """vLLM's prefix-cache and prompt-token counters (summed over engines)."""
    text = client.request("GET", "/metrics").decode()
    block = re.search(r'^vllm:cache_config_info\{[^}]*\bblock_size="(\d+)"', text, re.M)
    out = {"block_size": int(block.group(1)) if block else None}
    for key, name in (("queries", "vllm:prefix_cache_queries_total"),
                      ("hits", "vllm:prefix_cache_hits_total"),
                      ("prompt_tokens", "vllm:prompt_tokens_total")):
        vals = re.findall(r"^" + re.escape(name) + r"(?:\{[^}]*\})? ([0-9.e+-]+)$", text, re.M)
        out[key] = sum(float(v) for v in vals) if vals else None
    return out


def delta(before, after):
    d = {k: (after[k] - before[k]) if after[k] is not None and before[k] is not None else None
         for k in ("queries", "hits", "prompt_tokens")}
    if d["queries"]:
        d["hit_rate"] = d["hits"] / d["queries"]
    return d


class Measure:
    def __init__(self, args):
        self.args = args
        self.client = Client(args.url)
        self.rng = random.Random(args.seed)
        models = json.loads(self.client.request("GET", "/v1/models"))
        self.model = args.model or models["data"][0]["id"]
        self.vocab = args.vocab

    def ids(self, n):
        return [self.rng.randrange(SPECIAL_IDS, self.vocab) for _ in range(n)]

    def complete(self, client, prompt, logprobs=None):
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        if logprobs is not None:
            # Keys "token_id:N": without it top_logprobs is keyed by decoded text, and tokens
            # that decode alike (UTF-8 byte pieces all decode to "") collapse into one entry.
            body.update(logprobs=logprobs, return_tokens_as_token_ids=True)
        t = time.perf_counter()
        raw = client.request("POST", "/v1/completions", body)
        ms = (time.perf_counter() - t) * 1e3
        reply = json.loads(raw)
        if logprobs is not None:
            top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
            want = self.vocab if logprobs == -1 else logprobs
            if len(top) < min(want, self.vocab) * 0.99:
                raise Failure(f"asked for {want} log-probabilities, got {len(top)}")
        return ms, len(raw)

    def timed(self):
        """Marks the end of a phase's warm-up: its cache counters count from here."""
        self.before = metrics(self.client)

    def phase(self, name, context, fn):
        self.before = None
        row = fn()
        row.update(name=name, context=context, cache=delta(self.before, metrics(self.client)))
        print(f"measure: {name:<28} @{context:>5}: median {row['median_ms']:8.1f} ms"
              + (f" (ratio {row['ratio']:.2f})" if "ratio" in row else ""), file=sys.stderr)
        return row

    @staticmethod
    def summary(ms, **extra):
        row = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
               "n": len(ms)}
        row.update(extra)
        return row

    def cold(self, n):
        self.timed()
        return self.summary([self.complete(self.client, self.ids(n))[0]
                             for _ in range(self.args.repeats)])

    def cached(self, n, logprobs=None, repeats=None):
        prompt = self.ids(n)
        self.complete(self.client, prompt)  # fills the cache with the session's prefix
        self.timed()
        ms, size = [], 0
        for _ in range(repeats or self.args.repeats):
            prompt.append(self.ids(1)[0])
            t, size = self.complete(self.client, prompt, logprobs)
            ms.append(t)
        return self.summary(ms, response_bytes=size)

    def concurrent(self, n, logprobs=None):
        c = self.args.concurrency
        clients = [Client(self.args.url) for _ in range(c)]
        prompts = [self.ids(n) for _ in range(c)]
        for cl, p in zip(clients, prompts):
            self.complete(cl, p)
        self.timed()
        rounds, each = [], []
        for _ in range(self.args.repeats):
            for p in prompts:
                p.append(self.ids(1)[0])
            results = [None] * c

            def run(i):
                try:
                    results[i] = self.complete(clients[i], prompts[i], logprobs)[0]
                except Exception as e:  # noqa: BLE001 - re-raised by the caller's thread
                    results[i] = e

            threads = [threading.Thread(target=run, args=(i,)) for i in range(c)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rounds.append((time.perf_counter() - t) * 1e3)
            for r in results:
                if isinstance(r, Exception):
                    raise r
            each.extend(results)
        return self.summary(rounds, concurrency=c, request_median_ms=statistics.median(each))

    def run(self):
        a = self.args
        rows = []
        for n in a.contexts:
            rows.append(self.phase("cold, plain", n, lambda: self.cold(n)))
            plain = self.phase("cached, plain", n, lambda: self.cached(n))
            rows.append(plain)
            lp = self.phase(f"cached, logprobs={a.logprobs}", n,
                            lambda: self.cached(n, a.logprobs))
            lp["ratio"] = lp["median_ms"] / plain["median_ms"]
            rows.append(lp)
            if a.concurrency > 1:
                for logprobs, label in ((None, "plain"), (a.logprobs, f"logprobs={a.logprobs}")):
                    r = self.phase(f"{a.concurrency} concurrent, {label}", n,
                                   lambda: self.concurrent(n, logprobs))
                    base = plain if logprobs is None else lp
                    r["ratio"] = r["median_ms"] / base["median_ms"]
                    rows.append(r)
        if a.full_vocab:
            n = min(a.contexts)
            full = self.phase("cached, logprobs=-1 (full)", n,
                              lambda: self.cached(n, -1, max(3, a.repeats // 3)))
            rows.append(full)
        return rows


def machine():
    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "python": platform.python_version()}


def table(rows, ratios_by_context):
    lines = ["| context | request | median ms | min–max ms | ratio | prefix-cache hits / queries "
             "(tokens) | prompt tokens | reply bytes |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cache"]
        hits = (f"{c['hits']:.0f} / {c['queries']:.0f}" if c["queries"] is not None else "n/a")
        ratio = f"{r['ratio']:.2f}×" if "ratio" in r else ""
        lines.append(f"| {r['context']} | {r['name']} | {r['median_ms']:.1f} | "
                     f"{r['min_ms']:.1f}–{r['max_ms']:.1f} | {ratio} | {hits} | "
                     f"{c['prompt_tokens']:.0f} | {r.get('response_bytes', '')} |")
    for name, v in ratios_by_context.items():
        lines.append(f"\n{name}: {v:.2f}×")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8100")
    ap.add_argument("--model", help="served model name (default: the first of /v1/models)")
    ap.add_argument("--contexts", default="64,1500", help="context lengths in tokens")
    ap.add_argument("--repeats", type=int, default=9, help="requests per median")
    ap.add_argument("--logprobs", type=int, default=64, help="top log-probabilities asked for")
    ap.add_argument("--concurrency", type=int, default=5, help="sessions at once (1: skip)")
    ap.add_argument("--no-full-vocab", dest="full_vocab", action="store_false",
                    help="skip the logprobs=-1 request")
    ap.add_argument("--vocab", type=int, default=49152, help="vocabulary size of the model")
    ap.add_argument("--seed", type=int,
                    help="seed of the random prompts (default: fresh; a rerun with the same seed "
                         "against the same server finds its prompts cached, so 'cold' is not)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON to FILE")
    args = ap.parse_args()
    args.contexts = [int(x) for x in args.contexts.split(",")]
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")

    try:
        m = Measure(args)
        version = json.loads(m.client.request("GET", "/version")).get("version")
        block = metrics(m.client)["block_size"]
        t0 = time.monotonic()
        rows = m.run()
        took = time.monotonic() - t0
    except (Failure, OSError, http.client.HTTPException) as e:
        sys.exit(f"measure: {args.url}: {e}")

    def med(name, n):
        return next((r["median_ms"] for r in rows if r["name"] == name and r["context"] == n), None)

    ratios = {}
    lo, hi = min(args.contexts), max(args.contexts)
    if lo != hi:
        for name in ("cached, plain", f"cached, logprobs={args.logprobs}"):
            if med(name, lo) and med(name, hi):
                ratios[f"{name}: {hi} vs {lo} tokens of context"] = med(name, hi) / med(name, lo)
    out = {"url": args.url, "model": m.model, "vllm_version": version, "block_size": block,
           "machine": machine(),
           "args": {k: v for k, v in vars(args).items() if k not in ("json", "json_out")},
           "seconds": round(took, 1), "rows": rows, "context_ratios": ratios}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        mc = out["machine"]
        print(f"vLLM {version} at {args.url}, model {m.model}; {mc['cpu']}, {mc['cores']} cores "
              f"({' '.join(mc['simd'])}); prefix-cache block {block} tokens; median of "
              f"{args.repeats} requests, {took:.0f}s in all\n")
        print(table(rows, ratios))


if __name__ == "__main__":
    main()
