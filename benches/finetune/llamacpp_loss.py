"""Baseline for the finetune loss benchmark: llama.cpp (llama-cpp-python, logits_all)
computes the per-token loss of the same responses, on the same GGUF, that
`neuron finetune eval --dump FILE` scored, and compares.

usage: python llamacpp_loss.py MODEL.gguf DUMP.jsonl [--threads N] [--kv-f32]

The prompt is tokenized by llama.cpp (special tokens parsed, BOS as the vocab asks);
the response uses the token ids from the dump, so both engines score identical ids.
Prints tokens/s of the loss pass (model load excluded) and the differences of the
per-batch mean losses (what the validator compares) and per-token losses.

llama.cpp keeps its KV cache in f16 by default; `--kv-f32` keeps it in f32 like candle,
which is what an exact comparison needs (see docs/benchmarks.md).
"""

import argparse
import json
import time

import numpy as np
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dump")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-f32", action="store_true", help="f32 KV cache (default f16)")
    args = ap.parse_args()
    rows = [json.loads(l) for l in open(args.dump) if l.strip()]
    rows = [r for r in rows if "tokens" in r]
    llm = Llama(model_path=args.model, n_ctx=2048, n_batch=2048, logits_all=True,
                n_threads=args.threads, verbose=False,
                **({"type_k": 0, "type_v": 0} if args.kv_f32 else {}))
    ours, theirs, batch_of = [], [], []
    tokens = 0
    elapsed = 0.0
    for r in rows:
        prompt = llm.tokenize(r["prompt"].encode(), add_bos=True, special=True)
        ids = prompt + r["tokens"]
        start = time.perf_counter()
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        rows_ = logits[len(prompt) - 1 : len(ids) - 1]
        m = rows_.max(axis=1, keepdims=True)
        logz = (m + np.log(np.exp(rows_ - m).sum(axis=1, keepdims=True)))[:, 0]
        loss = logz - rows_[np.arange(len(r["tokens"])), r["tokens"]]
        elapsed += time.perf_counter() - start
        tokens += len(r["tokens"])
        ours.append(np.asarray(r["losses"], dtype=np.float64))
        theirs.append(loss)
        batch_of.append(r["batch"])
    tok_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
    batches = sorted(set(batch_of))
    rel = []
    for b in batches:
        a = np.concatenate([o for o, k in zip(ours, batch_of) if k == b]).mean()
        t = np.concatenate([o for o, k in zip(theirs, batch_of) if k == b]).mean()
        rel.append(abs(a - t) / abs(t))
    print(json.dumps({
        "pairs": len(rows), "response_tokens": tokens,
        "llamacpp_secs": round(elapsed, 3), "llamacpp_tok_s": round(tokens / elapsed, 1),
        "max_rel_diff_batch_mean_loss": max(rel),
        "max_abs_diff_token_loss": tok_diff,
    }))


if __name__ == "__main__":
    main()
