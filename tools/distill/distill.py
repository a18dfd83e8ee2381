#!/usr/bin/env python3
"""Derive hlm's device model (SLM) from the cloud model SmolLM2-135M-Instruct by truncation +
knowledge distillation.  The whole pipeline, stage by stage, cached under --work so a rerun
resumes where it stopped:

  gen-heldout  the teacher (llama-cpp-python on the teacher GGUF, 1 thread) answers the first
            --eval-n prompts of data/prompts/{dev,test}.jsonl (T=0.7, top-p 0.95, seed = base +
            index): held-out text, never trained on
  gen-self  training text the teacher writes whole: a user turn it samples from the system
            prompt, then its answer.  Each sequence is scored by the teacher (logits_all); per
            position the top-64 logits + the log-sum-exp are kept (fp16/int32/fp32)
            -> gen/{heldout-dev,heldout-test,self}/NNNNN.npz.  --engine hlm (the default)
            writes it with `hlm models teacher-text` (--batch sequences per forward, hlm's
            sampler: no min-p or repeat penalty), about 5x faster per core than
            --engine llama-cpp (llama-cpp-python, one sequence at a time)
  probe     the UNTRAINED truncated students (first m layers, m in --probe-m) are written as
            GGUFs and scored against the teacher on held-out text (cheap, no training)
  probe-head  a trained student (--init DELTA, --m) with a cheaper output head, untrained:
            a vocabulary shortlist or a low-rank head, scored on held-out text
  train     the student = token_embd (frozen, tied output) + layers [0, m) + output_norm in
            PyTorch (fp32, Q4_1 fake-quantisation with a straight-through estimator so the
            trained weights survive Q4_1 export); loss = KL(teacher || student) at T=1 over
            the top-64 teacher tokens + one tail bucket; AdamW, cosine LR; checkpoints.
  export    writes the delta GGUF (blk.0..m-1 as Q4_1, norms F32, output_norm F32; no
            embedding) in parts of at most 19 MB (--delta, then -2, -3 ... before .gguf), and
            a full student GGUF built the same way the C++ builder does (teacher metadata
            with block_count = m, token_embd Q8_0 -> Q4_1).
  eval      top-1 agreement, mean acceptance sum_x min(p, q), perplexities, on held-out
            teacher text (--heldout dev|test) and on /usr/share/common-licenses/GPL-3; decode tok/s at 2 threads.

    python3 tools/distill/distill.py --work /tmp/distill all
    python3 tools/distill/distill.py --work /tmp/distill eval --student path.gguf
"""

import argparse
import glob
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np

TEACHER_DEFAULT = os.path.expanduser("~/.cache/hlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOPK = 64
OUTPUT_IDS = "hlm.output.token_ids"  # a shortlist head's ids (src/gguf/gguf.h)
N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF, ROPE_BASE, EPS = 576, 9, 3, 64, 1536, 100000.0, 1e-5
N_LAYER = 30  # the teacher's blocks
# A llama block's tensors in the teacher GGUF's order (the order the delta keeps).
LAYER_TENSORS = ("attn_norm", "ffn_down", "ffn_gate", "ffn_up", "ffn_norm", "attn_k",
                 "attn_output", "attn_q", "attn_v")


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Eta:
    def __init__(self, total, what, start=0):
        """start: units already done before this process (a resumed run)."""
        self.total, self.what, self.start, self.t0, self.last = total, what, start, time.time(), 0.0

    def tick(self, done, extra=""):
        now = time.time()
        if now - self.last < 20 and done < self.total:
            return
        self.last = now
        el = now - self.t0
        eta = el / max(done - self.start, 1) * (self.total - done)
        log(f"{self.what}: {done}/{self.total}  elapsed {el/60:.1f} min  ETA {eta/60:.1f} min {extra}")


def chat_text(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def stamp(work, stage, seconds, **extra):
    path = os.path.join(work, "timings.json")
    t = json.load(open(path)) if os.path.exists(path) else {}
    t[stage] = dict(seconds=round(seconds, 1), **extra)
    json.dump(t, open(path, "w"), indent=1)


# ------------------------------------------------------------------------------------ data
# Held-out text: the teacher's answers to the evaluation prompts of data/prompts (AlpacaEval),
# never trained on. Choices (depth, schedule) are made on "dev"; figures are judged on "test".
HELDOUT_SPLITS = ("dev", "test")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA_DIR = os.path.join(ROOT, "data", "prompts")


def load_prompts(a, split):
    ps = [json.loads(l) for l in open(os.path.join(DATA_DIR, f"{split}.jsonl"))]
    return [dict(i=i, prompt=p["prompt"]) for i, p in enumerate(ps[:a.eval_n])]


def llama(path, threads=1, logits_all=False, n_ctx=1024, seed=0):
    import llama_cpp
    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_threads=threads,
                           n_threads_batch=threads, logits_all=logits_all, seed=seed,
                           verbose=False)


def full_logits(llm, toks):
    llm.reset()
    llm.eval(toks)
    return np.array(llm.scores[:len(toks)], dtype=np.float32)


def topk_pack(logits):
    m = logits.max(1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(1))).astype(np.float32)
    idx = np.argpartition(-logits, TOPK, axis=1)[:, :TOPK]
    val = np.take_along_axis(logits, idx, 1)
    return idx.astype(np.int32), val.astype(np.float16), lse


def answer(a, llm, ptoks, seed):
    """The teacher's sampled answer to a chat-templated prompt (the settings of hlm's chat)."""
    llm.set_seed(seed)
    resp = []
    for t in llm.generate(ptoks, temp=0.7, top_p=0.95, top_k=40, min_p=0.05,
                          repeat_penalty=1.1, reset=True):
        resp.append(t)
        if t == llm.token_eos() or len(resp) >= a.max_new:
            break
    return resp


def save_seq(llm, path, toks, n_prompt):
    idx, val, lse = topk_pack(full_logits(llm, toks))
    tmp = path[:-len(".npz")] + f".{os.getpid()}.tmp.npz"
    np.savez(tmp, toks=np.array(toks, np.int32), n_prompt=n_prompt, idx=idx, val=val, lse=lse)
    os.rename(tmp, path)


def run_gen(a, split, ids, make):
    """Writes gen/<split>/NNNNN.npz for each id (make(llm, id) -> (toks, n_prompt) or None),
    skipping finished ones, so several workers (--reverse) and reruns share the work."""
    d = os.path.join(a.work, "gen", split)
    os.makedirs(d, exist_ok=True)
    path = lambda i: os.path.join(d, f"{i:05d}.npz")
    todo = [i for i in ids if not os.path.exists(path(i))]
    if a.reverse:
        todo = todo[::-1]
    if not todo:
        return
    t0 = time.time()
    llm = llama(a.teacher, threads=a.threads, logits_all=True, n_ctx=1024, seed=a.seed)
    eta = Eta(len(todo), f"gen[{split}]")
    ntok = 0
    for k, i in enumerate(todo):
        if os.path.exists(path(i)):  # another worker got here first
            continue
        made = make(llm, i)
        if made:
            save_seq(llm, path(i), *made)
            ntok += len(made[0])
        eta.tick(k + 1, f"({ntok} tokens)")
    stamp(a.work, f"gen_{split}_{os.getpid()}", time.time() - t0, sequences=len(todo), tokens=ntok)


def stage_gen_heldout(a, split):
    ps = load_prompts(a, split)

    def make(llm, i):
        ptoks = llm.tokenize(chat_text(ps[i]["prompt"]).encode(), add_bos=False, special=True)
        ptoks = ptoks[: a.max_prompt]
        return ptoks + answer(a, llm, ptoks, a.seed + i), len(ptoks)
    run_gen(a, "heldout-" + split, range(len(ps)), make)


def stage_gen_self_hlm(a):
    """gen-self through hlm's engine: the same files, sequences --batch at a time."""
    cmd = [a.hlm, "models", "teacher-text", "--model", a.teacher,
           "--out", os.path.join(a.work, "gen", "self"), "--count", str(a.n_self),
           "--batch", str(a.batch), "--threads", str(a.threads), "--max-user", str(a.max_prompt),
           "--max-new", str(a.max_new), "--seed", str(a.seed), "--system", SYSTEM]
    log("gen[self]: " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True)
    stamp(a.work, f"gen_self_hlm_{os.getpid()}", time.time() - t0, sequences=a.n_self)


def stage_gen_self(a):
    """Training text the teacher writes whole: from the system prompt it samples a user turn
    (T = 1, top-p 0.95, min-p 0.02; the model's own idea of what users ask), then answers it as
    hlm's chat does. Sequence i uses seeds 2i and 2i+1 above --seed; a user turn that does not
    end within --max-prompt tokens is dropped (its file is never written, so it is retried)."""
    prefix = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"

    def make(llm, i):
        head = llm.tokenize(prefix.encode(), add_bos=False, special=True)
        end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
        llm.set_seed(a.seed + 2 * i)
        user = []
        for t in llm.generate(head, temp=1.0, top_p=0.95, top_k=0, min_p=0.02, reset=True):
            user.append(t)
            if t == end or len(user) >= a.max_prompt:
                break
        if user[-1] != end or len(user) < 4:
            return None
        ptoks = head + user + llm.tokenize(b"\n<|im_start|>assistant\n", add_bos=False,
                                           special=True)
        return ptoks + answer(a, llm, ptoks, a.seed + 2 * i + 1), len(head)
    run_gen(a, "self", range(a.n_self), make)


# The teacher's text is what takes hours to write, and ~/.cache does not always outlive a
# session: `pack` keeps its tokens (a few MB, committed as PACKED) and `unpack` gets the rows
# back from one teacher forward per sequence (`hlm models teacher-text --score`), so text once
# written is never written again.
PACKED = os.path.join(ROOT, "data", "distill", "teacher-self.npz")


def stage_pack(a):
    files = sorted(glob.glob(os.path.join(a.work, "gen", "self", "*[0-9].npz")))
    if not files:
        sys.exit(f"pack: no sequences under {a.work}/gen/self (run gen-self first)")
    toks, ids, n_prompt, offsets = [], [], [], [0]
    for f in files:
        z = np.load(f)
        if z["toks"].max() > np.iinfo(np.uint16).max:
            sys.exit(f"pack: {f} has token ids beyond 16 bits")
        toks.append(z["toks"].astype(np.uint16))
        ids.append(int(os.path.basename(f)[:-4]))
        n_prompt.append(int(z["n_prompt"]))
        offsets.append(offsets[-1] + len(z["toks"]))
    meta = dict(teacher=os.path.basename(a.teacher), seed=a.seed, max_user=a.max_prompt,
                max_new=a.max_new, system=SYSTEM, engine=a.engine, written_by="distill.py gen-self")
    os.makedirs(os.path.dirname(a.packed), exist_ok=True)
    np.savez_compressed(a.packed, toks=np.concatenate(toks), offsets=np.array(offsets, np.int64),
                        id=np.array(ids, np.int64), n_prompt=np.array(n_prompt, np.int32),
                        meta=np.array(json.dumps(meta, sort_keys=True)))
    log(f"pack: {len(files)} sequences, {offsets[-1]} tokens -> {a.packed} "
        f"({os.path.getsize(a.packed) / 1e6:.1f} MB)")


def stage_unpack(a):
    z = np.load(a.packed)
    meta = json.loads(str(z["meta"]))
    if meta["teacher"] != os.path.basename(a.teacher):
        sys.exit(f"unpack: {a.packed} was written by {meta['teacher']}, not {a.teacher}")
    out = os.path.join(a.work, "gen", "self")
    os.makedirs(out, exist_ok=True)
    lines = os.path.join(a.work, "packed-self.jsonl")
    off, all_toks = z["offsets"], z["toks"]  # each z[key] decompresses the array again
    with open(lines, "w") as f:
        for i, (sid, n_prompt) in enumerate(zip(z["id"], z["n_prompt"])):
            toks = all_toks[off[i]:off[i + 1]].astype(int).tolist()
            f.write(json.dumps(dict(id=int(sid), n_prompt=int(n_prompt), tokens=toks)) + "\n")
    cmd = [a.hlm, "models", "teacher-text", "--model", a.teacher, "--out", out, "--score", lines,
           "--batch", str(a.batch), "--threads", str(a.threads)]
    log(f"unpack: {len(z['id'])} sequences of {a.packed} ({meta}): " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True)
    stamp(a.work, "unpack", time.time() - t0, sequences=int(len(z["id"])))


def gen_files(a, split):
    """The sequences of one split; for self, only ids >= --min-id (text a student has not seen)."""
    files = sorted(glob.glob(os.path.join(a.work, "gen", split, "*[0-9].npz")))
    if split == "self" and a.min_id > 0:
        files = [f for f in files if int(os.path.basename(f)[:-4]) >= a.min_id]
    return files


def load_gen(a, split):
    out = []
    for f in gen_files(a, split):
        z = np.load(f)
        out.append({k: z[k] for k in z.files})
    return out


# ------------------------------------------------------------------------------------ GGUF io
def teacher_reader(path):
    from gguf import GGUFReader
    return GGUFReader(path)


def deq(t):
    from gguf import quants
    return quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(
        [int(x) for x in reversed(t.shape)]).astype(np.float32)


def copy_metadata(reader, writer, block_count):
    from gguf import GGUFValueType
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = GGUFValueType(f.types[0])
        val = f.contents()
        if name == "llama.block_count":
            val = block_count
        if vt == GGUFValueType.ARRAY:
            writer.add_key_value(name, val, vt, sub_type=GGUFValueType(f.types[1]))
        else:
            writer.add_key_value(name, val, vt)


def write_gguf(path, reader, block_count, tensors, with_meta=True, ids=None):
    """tensors: list of (name, np array (raw bytes uint8 or f32), ggml type); ids: a shortlist
    head's (output.weight then holds their rows)."""
    import gguf
    w = gguf.GGUFWriter(path + ".tmp", arch="llama")
    if with_meta:
        copy_metadata(reader, w, block_count)
    else:
        w.add_uint32("llama.block_count", block_count)
    if ids is not None:
        w.add_array(OUTPUT_IDS, ids)
    for name, arr, typ in tensors:
        if typ == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, arr.astype(np.float32))
        else:
            w.add_tensor(name, arr, raw_dtype=typ)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".tmp", path)


def q41(arr):
    import gguf
    return gguf.quants.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q4_1)


def student_embedding(T):
    """The student's token_embd as the C++ builder makes it: the teacher's, requantised to Q4_1."""
    import gguf
    return ("token_embd.weight", q41(deq(T["token_embd.weight"])), gguf.GGMLQuantizationType.Q4_1)


def truncated_student(a, layers, path):
    """Untrained student: teacher layers `layers` renumbered 0.., embedding requantised Q4_1."""
    import gguf
    r = teacher_reader(a.teacher)
    T = {t.name: t for t in r.tensors}
    ts = [student_embedding(T)]
    for new, old in enumerate(layers):
        for t in r.tensors:
            if t.name.startswith(f"blk.{old}."):
                nm = f"blk.{new}." + t.name.split(".", 2)[2]
                if t.tensor_type == gguf.GGMLQuantizationType.F32:
                    ts.append((nm, np.asarray(t.data).reshape(-1), t.tensor_type))
                else:
                    ts.append((nm, np.asarray(t.data), t.tensor_type))
    ts.append(("output_norm.weight", np.asarray(T["output_norm.weight"].data), gguf.GGMLQuantizationType.F32))
    write_gguf(path, r, len(layers), ts)


# ------------------------------------------------------------------------------------ eval
def gpl_chunks(llm, n=512, max_chunks=4):
    text = open("/usr/share/common-licenses/GPL-3").read()
    toks = llm.tokenize(text.encode(), add_bos=False, special=False)
    return [toks[i:i + n] for i in range(0, min(len(toks), n * max_chunks), n)]


def score(a, student_path, heldout, gpl, tl_cache):
    """Returns metrics per corpus. heldout: list of (toks, n_prompt); gpl: list of toks."""
    st = llama(student_path, threads=a.threads, logits_all=True, n_ctx=1024)
    te = None
    res = {}
    for name, seqs in (("heldout", heldout), ("gpl3", gpl)):
        agree = acc = nll_t = nll_s = n = 0.0
        for k, (toks, start) in enumerate(seqs):
            key = (name, k)
            if key not in tl_cache:
                if te is None:
                    te = llama(a.teacher, threads=a.threads, logits_all=True, n_ctx=1024)
                tl_cache[key] = full_logits(te, toks)
            lt = tl_cache[key]
            ls = full_logits(st, toks)
            # position j predicts toks[j+1]; score predictions of tokens [start, len)
            s0 = max(start - 1, 0)
            lt_, ls_ = lt[s0:len(toks) - 1], ls[s0:len(toks) - 1]
            tgt = np.array(toks[s0 + 1:])
            pt = np.exp(lt_ - lt_.max(1, keepdims=True)); pt /= pt.sum(1, keepdims=True)
            ps = np.exp(ls_ - ls_.max(1, keepdims=True)); ps /= ps.sum(1, keepdims=True)
            agree += (lt_.argmax(1) == ls_.argmax(1)).sum()
            acc += np.minimum(pt, ps).sum()
            r = np.arange(len(tgt))
            nll_t += -np.log(pt[r, tgt] + 1e-30).sum()
            nll_s += -np.log(ps[r, tgt] + 1e-30).sum()
            n += len(tgt)
        res[name] = dict(top1=float(agree / n), accept=float(acc / n),
                         ppl_teacher=float(math.exp(nll_t / n)),
                         ppl_student=float(math.exp(nll_s / n)), positions=int(n))
    return res


def eval_sets(a, n_heldout):
    hd = load_gen(a, "heldout-" + a.heldout)[:n_heldout]
    heldout = [(list(map(int, g["toks"])), int(g["n_prompt"])) for g in hd]
    te = llama(a.teacher, threads=1, logits_all=False, n_ctx=1024)
    gpl = [(c, 1) for c in gpl_chunks(te)]
    return heldout, gpl


def stage_probe(a):
    out = os.path.join(a.work, "probe.json")
    res = json.load(open(out)) if os.path.exists(out) else {}
    t0 = time.time()
    heldout, gpl = eval_sets(a, a.probe_n)
    gpl = gpl[:2]
    cache = {}
    cands = {}
    for m in a.probe_m:
        for tail in a.probe_tail:  # the last layers map the residual stream onto the output
            head = m - tail
            name = f"first{head}" + (f"+last{tail}" if tail else "")
            cands[name] = list(range(head)) + list(range(N_LAYER - tail, N_LAYER))
    for name, layers in cands.items():
        if name in res:
            continue
        path = os.path.join(a.work, f"probe_{name}.gguf")
        truncated_student(a, layers, path)
        res[name] = dict(layers=layers, **score(a, path, heldout, gpl, cache))
        log(f"probe {name}: {json.dumps(res[name])}")
        os.remove(path)
        json.dump(res, open(out, "w"), indent=1)
    stamp(a.work, "probe", time.time() - t0)


def shortlist_ids(a, n):
    """A shortlist head's ids: the n ids most frequent in the committed text (--packed), plus the
    vocabulary's end-of-generation ids as `hlm models shortlist` adds them (one definition of
    those, hlm's), sorted. Cached in the work dir."""
    cache = os.path.join(a.work, f"shortlist-{n}.json")
    if os.path.exists(cache):
        return json.load(open(cache))
    import tempfile
    vocab = len(teacher_reader(a.teacher).fields["tokenizer.ggml.tokens"].contents())
    counts = np.bincount(np.load(a.packed)["toks"].astype(np.int64), minlength=vocab)
    top = sorted(np.argsort(-counts, kind="stable")[:n].tolist())
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "ids.txt"), "w").write(" ".join(map(str, top)))
        subprocess.run([a.hlm, "models", "shortlist", "--model", a.teacher, "--ids",
                        os.path.join(d, "ids.txt"), "--out", os.path.join(d, "t.gguf")],
                       check=True, stdout=subprocess.DEVNULL)
        ids = [int(x) for x in teacher_reader(os.path.join(d, "t.gguf")).fields[OUTPUT_IDS].contents()]
    json.dump(ids, open(cache, "w"))
    return ids


def stage_probe_head(a):
    """What a cheaper output head would cost a trained student before any further training: its
    held-out acceptance and top-1 with the logits (a) restricted to a shortlist (shortlist_ids:
    the N ids most frequent in the committed training text), the rest at probability 0, and (b) read
    through rank r, the final hidden state projected on its top-r principal directions measured
    on training text (gen/self), never on the held-out set. The 49,152 x 576 head costs about as
    much as 8 of the student's layers per token; what it can lose decides how much depth a
    cheaper one buys at the same speed. Acceptance here counts the teacher's top-64 ids exactly
    and the rest as one bucket (an upper bound of that part; accept_top64 leaves it out, a lower
    bound), so compare rows with each other, not with eval's figures."""
    import torch
    torch.set_num_threads(a.threads)
    t0 = time.time()
    if a.init and any(t.name == "output.weight" for part in init_parts(a.init)
                      for t in teacher_reader(part).tensors):
        a.lr_out = 1.0  # build_torch_student then makes the untied head the delta fills
    emb, P = build_torch_student(a, student_layers(a))
    Wq = quantized_view(P, a.m, a.fake_quant)
    out = Wq.get("output.weight", emb).detach()
    with torch.no_grad():
        def hidden(toks):
            return forward(P, emb, a.m, torch.from_numpy(toks.astype(np.int64)), a.fake_quant, Wq,
                           head=False)
        train = [g["toks"][:a.max_len] for g in load_gen(a, "self")[:60]]
        H = torch.cat([hidden(t) for t in train])
        _, vecs = torch.linalg.eigh(H.T @ H)  # ascending: the top directions are last
        held = []
        for g in load_gen(a, "heldout-" + a.heldout)[:a.eval_n]:
            s0, n = max(int(g["n_prompt"]) - 1, 0), len(g["toks"])
            held.append((hidden(g["toks"])[s0:n - 1], g["idx"][s0:n - 1].astype(np.int64),
                         g["val"][s0:n - 1].astype(np.float32), g["lse"][s0:n - 1]))

        def score_head(logits_of):
            acc = acc64 = agree = n = 0.0
            for h, idx, val, lse in held:
                q = torch.softmax(logits_of(h), -1).numpy()
                p = np.exp(val - lse[:, None])
                qk = np.take_along_axis(q, idx, 1)
                acc64 += np.minimum(p, qk).sum()
                acc += np.minimum(1 - p.sum(1), 1 - qk.sum(1)).clip(0).sum()
                agree += (q.argmax(1) == idx[np.arange(len(idx)), val.argmax(1)]).sum()
                n += len(idx)
            # accept_top64, the teacher's top-64 ids alone, is a lower bound of the acceptance
            return dict(accept=round(float((acc + acc64) / n), 4),
                        accept_top64=round(float(acc64 / n), 4), top1=round(float(agree / n), 4),
                        positions=int(n))

        res = {"full": score_head(lambda h: h @ out.T)}
        for N in a.probe_shortlist:
            off = torch.full((out.shape[0],), float("-inf"))
            off[shortlist_ids(a, N)] = 0
            res[f"shortlist{N}"] = score_head(lambda h: h @ out.T + off)
        for r in a.probe_rank:
            proj = vecs[:, -r:] @ vecs[:, -r:].T
            res[f"rank{r}"] = score_head(lambda h: h @ proj @ out.T)
    for k, v in res.items():
        log(f"probe-head {k}: {json.dumps(v)}")
    name = os.path.basename(a.init or a.teacher).replace(".gguf", "")
    json.dump(res, open(os.path.join(a.work, f"probe-head_{name}_{a.heldout}.json"), "w"), indent=1)
    stamp(a.work, "probe-head", time.time() - t0)


# ------------------------------------------------------------------------------------ train
def build_torch_student(a, layers):
    import torch
    r = teacher_reader(a.teacher)
    T = {t.name: t for t in r.tensors}
    # as shipped: the builder requantises the teacher's Q8_0 embedding to Q4_1
    emb = torch.from_numpy(dequant_q41(q41(deq(T["token_embd.weight"]))).reshape(-1, N_EMBD))
    params = {}
    # This order fixes the optimiser's parameter order, which its checkpoints rely on.
    for new, old in enumerate(layers):
        for nm in ("attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                   "ffn_gate", "ffn_up", "ffn_down"):
            params[f"blk.{new}.{nm}.weight"] = torch.nn.Parameter(
                torch.from_numpy(deq(T[f"blk.{old}.{nm}.weight"]).copy()))
    params["output_norm.weight"] = torch.nn.Parameter(
        torch.from_numpy(deq(T["output_norm.weight"]).copy()))
    if a.lr_out > 0:  # an untied output head of its own, read off the truncated residual stream
        params["output.weight"] = torch.nn.Parameter(emb.clone())
    if a.init:  # continue from a delta (e.g. the shipped student's), all its parts
        D = {t.name: t for part in init_parts(a.init) for t in teacher_reader(part).tensors}
        for k in params:
            if k in D:
                params[k].data.copy_(torch.from_numpy(deq(D[k]).reshape(params[k].shape).copy()))
            elif a.grow_identity and k.endswith((".attn_output.weight", ".ffn_down.weight")):
                # A layer the delta lacks adds nothing to the residual stream until trained, so
                # the deeper student starts exactly as the one it grows from.
                params[k].data.zero_()
    return emb, params


def init_parts(delta):
    """--init names part 1; parts 2.. are found beside it (see part_paths)."""
    parts = [delta]
    while os.path.exists(nxt := part_paths(delta, len(parts) + 1)[-1]):
        parts.append(nxt)
    return parts


def student_layers(a):
    """The teacher layers the student starts from: --layers, or the first --m."""
    layers = [int(x) for x in a.layers.split(",")] if a.layers else list(range(a.m))
    if len(layers) != a.m:
        sys.exit(f"--layers lists {len(layers)} layers but --m is {a.m}")
    return layers


def dequant_q41(raw):
    from gguf import quants, GGMLQuantizationType
    return quants.dequantize(raw, GGMLQuantizationType.Q4_1).astype(np.float32)


def fake_q41(w):
    """Q4_1 round trip (ggml reference quantiser, fp16 scale/min) with a straight-through grad."""
    import torch
    rows, cols = w.shape
    b = w.reshape(rows, cols // 32, 32)
    mn = b.amin(-1, keepdim=True)
    mx = b.amax(-1, keepdim=True)
    d = (mx - mn) / 15
    idv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.floor((b - mn) * idv + 0.5), 0, 15)
    deq_ = q * d.half().float() + mn.half().float()
    return (w + (deq_.reshape(rows, cols) - w).detach())


def forward(P, emb, n_layer, toks, fq, layer_weights=None, head=True):
    """toks: [B, n] (right-padded; padding only affects padded positions). Returns [B, n, V], or
    with head=False the final normed hidden state [B, n, N_EMBD] the output head reads."""
    import torch
    F = torch.nn.functional
    if toks.dim() == 1:
        return forward(P, emb, n_layer, toks[None], fq, layer_weights, head)[0]
    B, n = toks.shape
    if layer_weights is None:
        layer_weights = quantized_view(P, n_layer, fq)
    x = emb[toks]
    pos = torch.arange(n, dtype=torch.float32)
    inv = ROPE_BASE ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM)
    ang = pos[:, None] * inv[None, :]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def rope(t):  # ggml "normal" rope: adjacent pairs (2i, 2i+1) rotate together
        t = t.view(B, n, -1, HEAD_DIM // 2, 2)
        a_, b_ = t[..., 0], t[..., 1]
        return torch.stack((a_ * cos - b_ * sin, a_ * sin + b_ * cos), -1).view(B, n, -1, HEAD_DIM)

    def rms(v, w):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + EPS) * w

    W = layer_weights.__getitem__
    mask = torch.full((n, n), float("-inf")).triu(1)
    for l in range(n_layer):
        p = f"blk.{l}."
        h = rms(x, P[p + "attn_norm.weight"])
        q = rope((h @ W(p + "attn_q.weight").T).view(B, n, N_HEAD, HEAD_DIM))
        k = rope((h @ W(p + "attn_k.weight").T).view(B, n, N_KV, HEAD_DIM))
        v = (h @ W(p + "attn_v.weight").T).view(B, n, N_KV, HEAD_DIM)
        k = k.repeat_interleave(N_HEAD // N_KV, 2)
        v = v.repeat_interleave(N_HEAD // N_KV, 2)
        att = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(HEAD_DIM) + mask
        o = torch.einsum("bhqk,bkhd->bqhd", att.softmax(-1), v).reshape(B, n, N_EMBD)
        x = x + o @ W(p + "attn_output.weight").T
        h = rms(x, P[p + "ffn_norm.weight"])
        x = x + (F.silu(h @ W(p + "ffn_gate.weight").T) * (h @ W(p + "ffn_up.weight").T)) @ W(p + "ffn_down.weight").T
    x = rms(x, P["output_norm.weight"])
    return x @ layer_weights.get("output.weight", emb).T if head else x


def quantized_view(P, n_layer, fq):
    """The matrices as the forward pass sees them: Q4_1 fake-quantised (STE) when fq."""
    return {k: (fake_q41(v) if fq and v.dim() == 2 else v) for k, v in P.items()}


def kd_loss(logits, idx, val, lse, tvd_weight=0.0, inlist=None):
    """KL(teacher || student) over the teacher's top-k tokens + one tail bucket, per position,
    plus tvd_weight x their total variation distance: 1 - TVD is the acceptance rate the
    student is scored by (Σ min(p, q)), so that term optimises the figure itself. With a shortlist
    head (inlist: [V] bool, the other logits -inf), the teacher's top-k ids off the list count in
    the tail bucket, where the student can match them only as a whole."""
    import torch
    lt = val.float() - lse[:, None]                # teacher log-probs of its top-k
    pt = lt.exp()
    if inlist is not None:
        keep = inlist[idx]
        pt = torch.where(keep, pt, torch.zeros_like(pt))
        lt = torch.where(keep, lt, torch.zeros_like(lt))
    pt_tail = (1 - pt.sum(1)).clamp_min(1e-8)
    ls_all = logits.log_softmax(-1)
    ls = ls_all.gather(1, idx)
    if inlist is not None:
        ls = torch.where(keep, ls, torch.zeros_like(ls))  # weighed by pt = 0 there
    masked = logits.scatter(1, idx, float("-inf"))
    ls_tail = masked.logsumexp(-1) - logits.logsumexp(-1)
    kl = (pt * (lt - ls)).sum(1) + pt_tail * (pt_tail.log() - ls_tail)
    if tvd_weight == 0:
        return kl.mean()
    # The tail bucket's |p - q| is a lower bound of the tail's share of the distance.
    qs = ls.exp() if inlist is None else torch.where(keep, ls.exp(), torch.zeros_like(ls))
    tvd = 0.5 * ((pt - qs).abs().sum(1) + (pt_tail - ls_tail.exp()).abs())
    return kl.mean() + tvd_weight * tvd.mean()


def stage_train(a):
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    ck = os.path.join(a.work, f"student_{a.name}.pt")
    done_flag = ck + ".done"
    if os.path.exists(done_flag):
        return
    layers = student_layers(a)
    emb, P = build_torch_student(a, layers)
    data = load_gen(a, "self")
    log(f"train {a.name}: {len(data)} sequences"
        + (f" (ids >= {a.min_id})" if a.min_id > 0 else "")
        + f", {sum(len(g['toks']) for g in data)} tokens, "
        f"layers {layers}, output head {'its own' if a.lr_out > 0 else 'tied'}"
        + (f", from {a.init}" if a.init else ""))
    # norms (1-D) learn with a larger LR: the truncated residual stream needs a new output scale
    mats = [v for k, v in P.items() if v.dim() == 2 and k != "output.weight"]
    norms = [v for v in P.values() if v.dim() == 1]
    groups = [dict(params=mats, lr=a.lr, base=a.lr), dict(params=norms, lr=a.lr_norm, base=a.lr_norm)]
    if "output.weight" in P:
        groups.append(dict(params=[P["output.weight"]], lr=a.lr_out, base=a.lr_out))
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.0)
    inlist = None
    if a.shortlist:
        if "output.weight" not in P:
            sys.exit("train --shortlist: the head is the student's own (--lr-out > 0)")
        inlist = torch.zeros(P["output.weight"].shape[0], dtype=torch.bool)
        inlist[shortlist_ids(a, a.shortlist)] = True
        log(f"train {a.name}: shortlist head of {int(inlist.sum())} ids")
    step = 0
    t_used = 0.0
    if os.path.exists(ck):
        s = torch.load(ck)
        for k in P:
            P[k].data.copy_(s["params"][k])
        opt.load_state_dict(s["opt"])
        step, t_used = s["step"], s["t_used"]
        log(f"resumed at step {step}")
    per_step = a.accum
    total = a.steps
    eta = Eta(total, "train", step)
    t0 = time.time() - t_used
    run, ntok = 0.0, 0
    while step < total:
        sched = min(1.0, (step + 1) / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
        for g in opt.param_groups:
            g["lr"] = g["base"] * sched
        lr = a.lr * sched
        opt.zero_grad()
        if step % 50 == 0:  # gen-self may still be writing: train on what exists by now
            if len(gen_files(a, "self")) > len(data):
                data = load_gen(a, "self")
                log(f"train: now {len(data)} sequences")
        # sequences drawn at random (seeded by step), so a resumed run continues the same stream
        batch = random.Random(a.seed * 1_000_003 + step).sample(data, per_step)
        lens = [min(len(g["toks"]), a.max_len) for g in batch]
        n = max(lens)
        toks = torch.zeros(len(batch), n, dtype=torch.int64)
        for j, g in enumerate(batch):
            toks[j, :lens[j]] = torch.from_numpy(g["toks"][:lens[j]].astype(np.int64))
        logits = forward(P, emb, a.m, toks, a.fake_quant)
        if inlist is not None:
            logits = logits.masked_fill(~inlist, float("-inf"))
        # valid positions only (position t predicts token t+1 of the same sequence)
        lg = torch.cat([logits[j, :lens[j] - 1] for j in range(len(batch))])
        cat = lambda key, dt: torch.from_numpy(np.concatenate([g[key][:lens[j] - 1] for j, g in enumerate(batch)]).astype(dt))
        loss = kd_loss(lg, cat("idx", np.int64), cat("val", np.float32), cat("lse", np.float32),
                       a.tvd, inlist)
        loss.backward()
        tot = loss.item()
        ntok += sum(lens)
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
        step += 1
        run = tot if ntok == sum(lens) else 0.95 * run + 0.05 * tot  # first step of this process
        eta.tick(step, f"loss {run:.4f} lr {lr:.2e} tokens {ntok}")
        if step % 10 == 0 or step == total:
            torch.save(dict(params={k: v.data for k, v in P.items()}, opt=opt.state_dict(),
                            step=step, t_used=time.time() - t0), ck + ".tmp")
            os.replace(ck + ".tmp", ck)
    open(done_flag, "w").write("ok")
    stamp(a.work, f"train_{a.name}", time.time() - t0, steps=total, seqs_per_step=per_step, loss=run,
          tokens_seen=ntok)


# ------------------------------------------------------------------------------------ export
# No committed file may exceed 20 MB: the delta is written in parts of whole tensors, each at
# most this many bytes (hlm::build_student takes them all; each tensor is in exactly one part).
PART_MAX = 19_000_000


def part_paths(delta, n):
    """Part 1 is --delta itself; parts 2.. insert -2, -3, ... before .gguf."""
    stem = delta[:-len(".gguf")] if delta.endswith(".gguf") else delta
    return [delta] + [f"{stem}-{i}.gguf" for i in range(2, n + 1)]


def tensor_bytes_in_file(name, arr, typ):
    """An upper bound on what one tensor adds to a GGUF: its info (name, dims, type, offset) and
    its data padded to the 32-byte alignment."""
    import gguf
    n = arr.size * 4 if typ == gguf.GGMLQuantizationType.F32 else arr.nbytes
    return 8 + len(name.encode()) + 4 + 8 * 4 + 4 + 8 + n + 32


def write_delta_parts(a, ts, ids=None):
    """Writes the delta tensors `ts` (name, array, type), in order, into as few parts of at most
    PART_MAX bytes as that order allows; every part is a llama GGUF with llama.block_count = m.
    Prints each part's path, size and sha256, and the "deltas" list for models/slm-delta.json."""
    import gguf
    header = 4096  # magic, counts and this function's metadata, with room to spare
    groups, size = [[]], header
    for t in ts:
        n = tensor_bytes_in_file(*t)
        if n + header > PART_MAX:
            sys.exit(f"export: tensor {t[0]} ({n} bytes) does not fit in a {PART_MAX}-byte part")
        if groups[-1] and size + n > PART_MAX:
            groups.append([])
            size = header
        groups[-1].append(t)
        size += n
    paths = part_paths(a.delta, len(groups))
    listed = []
    for i, (path, group) in enumerate(zip(paths, groups)):
        w = gguf.GGUFWriter(path + ".tmp", arch="llama")
        w.add_uint32("llama.block_count", a.m)
        w.add_string("general.name", "hlm SLM delta (SmolLM2-135M-Instruct, first %d layers, distilled)" % a.m)
        w.add_string("hlm.delta.teacher", os.path.basename(a.teacher))
        w.add_string("hlm.delta.embedding", "token_embd.weight from the teacher, requantised Q8_0 -> Q4_1")
        # hlm::build_student refuses a part given without the others
        w.add_uint32("hlm.delta.part_index", i + 1)
        w.add_uint32("hlm.delta.part_count", len(groups))
        if ids is not None and any(name == "output.weight" for name, _, _ in group):
            w.add_array(OUTPUT_IDS, ids)
        for name, arr, typ in group:
            if typ == gguf.GGMLQuantizationType.F32:
                w.add_tensor(name, arr.astype(np.float32))
            else:
                w.add_tensor(name, arr, raw_dtype=typ)
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        size = os.path.getsize(path + ".tmp")
        if size > PART_MAX:
            sys.exit(f"export: {path} would be {size} bytes, over {PART_MAX}")
        os.replace(path + ".tmp", path)
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        names = group[0][0] if len(group) == 1 else f"{len(group)} tensors: {group[0][0]} .. {group[-1][0]}"
        log(f"delta part {i + 1} of {len(groups)}: {path} {size} bytes sha256 {sha} ({names})")
        listed.append({"file": os.path.basename(path), "sha256": sha, "size": size})
    stale = part_paths(a.delta, len(groups) + 1)[-1]
    if os.path.exists(stale):
        log(f"note: {stale} is from an earlier export, not part of this delta")
    print(json.dumps({"deltas": listed}, indent=2))


def stage_export(a):
    import gguf
    import torch
    P = torch.load(os.path.join(a.work, f"student_{a.name}.pt"))["params"]
    r = teacher_reader(a.teacher)
    ts = []
    for l in range(a.m):
        for nm in LAYER_TENSORS:
            k = f"blk.{l}.{nm}.weight"
            w = P[k].numpy().astype(np.float32)
            if w.ndim == 1:
                ts.append((k, w, gguf.GGMLQuantizationType.F32))
            else:
                ts.append((k, q41(w), gguf.GGMLQuantizationType.Q4_1))
    ts.append(("output_norm.weight", P["output_norm.weight"].numpy(), gguf.GGMLQuantizationType.F32))
    ids = None
    if "output.weight" in P:
        head = P["output.weight"].numpy().astype(np.float32)
        if a.shortlist:  # the rows of the shortlist only; hlm gives the other ids probability 0
            ids = shortlist_ids(a, a.shortlist)
            head = head[ids]
        ts.append(("output.weight", q41(head), gguf.GGMLQuantizationType.Q4_1))
    elif a.shortlist:
        sys.exit("export --shortlist: the run has no output head of its own (--lr-out)")
    write_delta_parts(a, ts, ids)
    # A Python-built full student (for scoring; the shipped one is rebuilt by the C++ builder).
    T = {t.name: t for t in r.tensors}
    full = [student_embedding(T)] + ts
    write_gguf(os.path.join(a.work, f"student_{a.name}.py.gguf"), r, a.m, full, ids=ids)


def bench(path, threads=2):
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.check_output([sys.executable, os.path.join(here, "..", "reference", "bench_llamacpp.py"),
                                   "--model", path, "--threads", str(threads), "--json"])
    return json.loads(out)


def score_hlm(a, student_path):
    """The held-out figures from `hlm models agreement` (hlm's engine: it also loads students
    llama.cpp cannot, such as those with a shortlist head). Same definitions as score()."""
    hd = load_gen(a, "heldout-" + a.heldout)[:a.eval_n]
    lines = os.path.join(a.work, f"heldout-{a.heldout}.jsonl")
    with open(lines, "w") as f:
        for i, g in enumerate(hd):
            f.write(json.dumps(dict(id=i, n_prompt=int(g["n_prompt"]),
                                    tokens=[int(t) for t in g["toks"]])) + "\n")
    out = json.loads(subprocess.check_output(
        [a.hlm, "models", "agreement", "--llm", a.teacher, "--slm", student_path, "--tokens", lines,
         "--threads", str(a.threads), "--json"]))
    return {"heldout": dict(top1=out["top1"], accept=out["accept"], ppl_teacher=out["ppl_llm"],
                            ppl_student=out["ppl_slm"], positions=out["positions"])}


def stage_eval(a):
    t0 = time.time()
    res = {"student": a.student, "teacher": a.teacher, "engine": a.engine}
    if a.engine == "hlm":
        res["metrics"] = score_hlm(a, a.student)
    else:
        heldout, gpl = eval_sets(a, a.eval_n)
        res["metrics"] = score(a, a.student, heldout, gpl, {})
    res["size_student"] = os.path.getsize(a.student)
    res["size_teacher"] = os.path.getsize(a.teacher)
    res["sha256_student"] = hashlib.sha256(open(a.student, "rb").read()).hexdigest()
    if not a.no_bench:
        res["bench_student"] = bench(a.student)
        res["bench_teacher"] = bench(a.teacher)
    res["eval_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))
    json.dump(res, open(os.path.join(a.work, "eval_" + os.path.basename(a.student) + ".json"), "w"), indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/hlm-distill")
    ap.add_argument("--teacher", default=TEACHER_DEFAULT)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-prompt", type=int, default=256)
    ap.add_argument("--max-new", type=int, default=160)
    ap.add_argument("--n-self", type=int, default=4000, help="gen-self: sequences to write")
    ap.add_argument("--engine", choices=["hlm", "llama-cpp"], default="hlm",
                    help="gen-self: who writes the text (hlm models teacher-text, or "
                         "llama-cpp-python); eval: who scores the student (hlm models agreement, "
                         "held-out text only, or llama-cpp-python, held-out and GPL-3 text)")
    ap.add_argument("--hlm", default=os.path.join(ROOT, "build", "hlm"),
                    help="gen-self --engine hlm: the hlm binary")
    ap.add_argument("--batch", type=int, default=8,
                    help="gen-self --engine hlm: sequences decoded together")
    ap.add_argument("--heldout", choices=HELDOUT_SPLITS, default="dev",
                    help="probe/eval: held-out answers to this split's prompts")
    ap.add_argument("--reverse", action="store_true",
                    help="gen: work through the list from the end (a second worker)")
    ap.add_argument("--probe-m", type=int, nargs="*", default=[4, 6, 8])
    ap.add_argument("--probe-tail", type=int, nargs="*", default=[0, 1],
                    help="probe: how many of the teacher's last layers each candidate keeps")
    ap.add_argument("--probe-n", type=int, default=40)
    ap.add_argument("--probe-shortlist", type=int, nargs="*", default=[8192, 16384, 24576],
                    help="probe-head: shortlist sizes")
    ap.add_argument("--probe-rank", type=int, nargs="*", default=[128, 256, 384],
                    help="probe-head: ranks of the head")
    ap.add_argument("--eval-n", type=int, default=30)
    ap.add_argument("--m", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--lr-norm", type=float, default=1e-2)
    ap.add_argument("--lr-out", type=float, default=0,
                    help="give the student its own output head (from the tied embedding), "
                         "trained at this LR; 0 keeps the tied one")
    ap.add_argument("--init", default="",
                    help="train: start from this delta GGUF's tensors (e.g. models/slm-delta.gguf)")
    ap.add_argument("--grow-identity", action="store_true",
                    help="train --init with a larger --m: the layers the delta lacks start as "
                         "identities (their output projections zeroed), not as the teacher's")
    ap.add_argument("--layers", default="",
                    help="comma-separated teacher layers to start from (default: the first --m)")
    ap.add_argument("--name", default="",
                    help="names the run's checkpoint and export (default: m<m>)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--min-id", type=int, default=0,
                    help="train: only the teacher sequences with this id or above (the text "
                         "written after the student being continued was trained)")
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--shortlist", type=int, default=0,
                    help="train/export: the student's own head scores only this many ids "
                         "(shortlist_ids), the rest get probability 0")
    ap.add_argument("--tvd", type=float, default=0.0,
                    help="train: weight of the total variation distance added to the KD loss")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--fake-quant", type=int, default=1)
    ap.add_argument("--delta", default=None)
    ap.add_argument("--student", default=None)
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--packed", default=PACKED, help="pack/unpack: the tokens-only file")
    ap.add_argument("stage", choices=["gen-heldout", "gen-self", "pack", "unpack", "probe",
                                      "probe-head", "train", "export", "eval", "all"])
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    a.name = a.name or f"m{a.m}"
    if a.delta is None:
        a.delta = os.path.join(a.work, f"slm-delta-{a.name}.gguf")
    st = a.stage
    if st in ("gen-heldout", "all"):
        for split in HELDOUT_SPLITS:
            stage_gen_heldout(a, split)
    if st in ("gen-self", "all"):
        stage_gen_self_hlm(a) if a.engine == "hlm" else stage_gen_self(a)
    if st == "pack":
        stage_pack(a)
    if st == "unpack":
        stage_unpack(a)
    if st in ("probe", "all"):
        stage_probe(a)
    if st == "probe-head":
        stage_probe_head(a)
    if st in ("train", "all"):
        stage_train(a)
    if st in ("export", "all"):
        stage_export(a)
    if st == "eval":
        stage_eval(a)


if __name__ == "__main__":
    main()
