# Baseline for `neuron bench llm --compare-python PY`: the same GGUF, prompt text and
# greedy decoding through llama-cpp-python, 2 threads. Prints one JSON object.
import json, sys, time

import numpy as np
from llama_cpp import Llama


def peak_rss_mb():
    # This process's own peak (`VmHWM`): getrusage's ru_maxrss survives exec, so it would
    # report the parent's peak whenever that was higher.
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


path, prompt, max_tokens, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
llm = Llama(model_path=path, n_ctx=2048, n_threads=2, n_threads_batch=2, verbose=False)
load_s = time.perf_counter() - t
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
eos = {llm.token_eos()} | {i for i in range(llm.n_vocab()) if llm.detokenize([i], special=True) in (b"<|im_end|>", b"<|endoftext|>")}
results, text = [], ""
for _ in range(runs):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    out = []
    while len(out) < max_tokens:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        tok = int(np.argmax(logits))
        if tok in eos:
            break
        out.append(tok)
        if len(out) < max_tokens:
            llm.eval([tok])
    t2 = time.perf_counter()
    results.append({"prompt_tok_s": len(ids) / (t1 - t0), "decode_tok_s": len(out) / (t2 - t1), "tokens": len(out)})
    text = llm.detokenize(out).decode("utf-8", "replace")
print(json.dumps({
    "engine": "llama.cpp (llama-cpp-python)",
    "load_s": load_s,
    "prompt_tokens": len(ids),
    "runs": results,
    "peak_rss_mb": peak_rss_mb(),
    "text": text,
}))
