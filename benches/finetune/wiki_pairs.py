"""Evaluation pairs for the finetune loss benchmark, from the offline Wikipedia corpus.

usage: python wiki_pairs.py SUMMARIES.json N > pairs.jsonl
(SUMMARIES.json: `neuron models path wiki-vital-summaries`). Pair i asks what the i-th
article (in title order) is about and answers with the first two sentences of its
summary, in SmolLM2's chat format.
"""
import json
import re
import sys

path, n = sys.argv[1], int(sys.argv[2])
articles = json.load(open(path))
for title in sorted(articles)[:n]:
    extract = articles[title]["extract"]
    answer = " ".join(re.split(r"(?<=[.!?])\s+", extract)[:2])
    prompt = ("<|im_start|>user\nWhat is " + title + "?<|im_end|>\n<|im_start|>assistant\n")
    print(json.dumps({"prompt": prompt, "response": answer}))
