#!/usr/bin/env python3
"""Times the Python side of benches/score.rs: rouge-L (rouge 1.0.1) + difflib ratio on
the same 1,000 pairs, called as SN1 v1.3 calls them. Prints seconds per 1,000 pairs.

    venv/bin/python benches/score_python.py [repeats]
"""
import difflib
import json
import os
import statistics
import sys
import time

from rouge import Rouge

sys.setrecursionlimit(100000)
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "tests", "fixtures", "score", "bench_pairs.json"), encoding="utf-8") as f:
    PAIRS = [(p["reference"], p["completion"]) for p in json.load(f)]
ROUGE = Rouge()  # as SN1 builds it: computes rouge-1, rouge-2 and rouge-l on every call
ROUGE_L = Rouge(metrics=["rouge-l"])  # rouge-l only: the like-for-like comparison


def rouge_l_sn1(reference, completion):
    if not completion or not reference:
        return 0.0
    return ROUGE.get_scores(reference, completion)[0]["rouge-l"]["f"]


def rouge_l(reference, completion):
    if not completion or not reference:
        return 0.0
    return ROUGE_L.get_scores(reference, completion)[0]["rouge-l"]["f"]


def diff(reference, completion):
    return difflib.SequenceMatcher(None, reference, completion).ratio()


def timed(fn):
    t0 = time.perf_counter()
    total = sum(fn(r, c) for r, c in PAIRS)
    return time.perf_counter() - t0, total


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for name, fns in [
        ("rouge_l_plus_diff", (rouge_l, diff)),
        ("rouge_l_plus_diff_sn1_rouge", (rouge_l_sn1, diff)),
        ("rouge_l", (rouge_l,)),
        ("diff", (diff,)),
    ]:
        times = []
        for _ in range(repeats):
            t = sum(timed(fn)[0] for fn in fns)
            times.append(t)
        print(f"{name}: min {min(times):.3f} s, median {statistics.median(times):.3f} s, max {max(times):.3f} s "
              f"per {len(PAIRS)} pairs ({repeats} runs)")


if __name__ == "__main__":
    main()
