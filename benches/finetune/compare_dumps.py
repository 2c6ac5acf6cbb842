"""Compares two `neuron finetune eval --dump` files of the same pairs (e.g. a quantised
model against its F32 copy): the largest relative difference of a batch's mean loss and
the largest absolute difference of a token's loss.

    python3 compare_dumps.py A.jsonl B.jsonl    # B is the reference
"""
import json
import sys


def batches(path):
    with open(path) as f:
        return [json.loads(line)["losses"] for line in f if line.strip()]


a, b = batches(sys.argv[1]), batches(sys.argv[2])
assert len(a) == len(b) and all(len(x) == len(y) for x, y in zip(a, b)), "different pairs"
mean = lambda xs: sum(xs) / len(xs)
print(json.dumps({
    "max_rel_diff_batch_mean_loss": max(abs(mean(x) - mean(y)) / mean(y) for x, y in zip(a, b)),
    "max_abs_diff_token_loss": max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y)),
}))
