# Baseline for `neuron bench embed --compare-python PY`: the same model directory and
# sentences (JSON list on stdin) through sentence-transformers on the torch device named
# (cpu with 2 threads, or a GPU such as cuda:0), with its default batch size (32; it
# sorts by length and pads each batch to its longest).
import json, sys, time

import torch

torch.set_num_threads(2)
from sentence_transformers import SentenceTransformer


def peak_rss_mb():
    # This process's own peak (`VmHWM`): getrusage's ru_maxrss survives exec, so it would
    # report the parent's peak whenever that was higher.
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


model_dir, runs, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sentences = json.load(sys.stdin)
t = time.perf_counter()
model = SentenceTransformer(model_dir, device=device)
load_s = time.perf_counter() - t
model.encode(sentences[:8])  # warm-up
rates = []
for _ in range(runs):
    t0 = time.perf_counter()
    model.encode(sentences)  # returns numpy arrays: the GPU has finished
    rates.append(len(sentences) / (time.perf_counter() - t0))
print(json.dumps({
    "engine": "sentence-transformers",
    "load_s": load_s,
    "sentences_per_s": rates,
    "peak_rss_mb": peak_rss_mb(),
}))
