"""Golden fixtures for the TypeScript runtime: tests/fixtures/golden/<name>.json.

Computed in float32 by the PyTorch reference (model.py) FROM THE COMMITTED fp16 CHECKPOINT
models/<name>/ (weights up-cast exactly), with the tokenizer in that folder.  For each prompt:
greedy decoding of 8 tokens with a full recompute per step (no cache, memory rows computed from
the weights, not read from a table); logits row 0 = logits at the last prompt position, row i =
logits at the position of continuation token i-1 after appending it.  logits_f32_b64 is the base64
of the little-endian float32 array [9, vocab_size], row-major.

Usage: /usr/bin/python3 training/golden.py flex meki
"""
import base64, json, os, sys
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bpe
from model import load_checkpoint

PROMPTS = ["The President said", "In the year 1800 the Congress", "We hold these truths"]
N_NEW = 8


@torch.no_grad()
def golden(name):
    folder = os.path.join(ROOT, "models", name)
    m = load_checkpoint(folder)
    tok = bpe.BPE.load(os.path.join(folder, "tokenizer.json"))
    out = {"model": name, "source": f"models/{name}", "architecture": m.config.architecture,
           "vocab_size": m.config.vocab_size, "dtype": "float32 compute from fp16 weights",
           "decoding": "greedy, full recompute per step, no KV cache", "prompts": []}
    for text in PROMPTS:
        ids = tok.encode(text)
        seq, rows, cont = list(ids), [], []
        for i in range(N_NEW + 1):
            logits = m(torch.tensor([seq]))[0, -1].float()
            rows.append(logits.numpy().astype("<f4"))
            if i < N_NEW:
                nxt = int(torch.argmax(logits))
                cont.append(nxt); seq.append(nxt)
        arr = np.stack(rows).astype("<f4")
        top2 = np.sort(arr[:N_NEW], axis=1)[:, -2:]
        margin = float((top2[:, 1] - top2[:, 0]).min())  # smallest greedy top-1/top-2 gap
        assert arr.shape == (N_NEW + 1, m.config.vocab_size)
        out["prompts"].append({"text": text, "prompt_ids": ids, "continuation_ids": cont,
                               "continuation_text": tok.decode(cont),
                               "logits_shape": list(arr.shape), "min_greedy_margin": margin,
                               "logits_f32_b64": base64.b64encode(arr.tobytes()).decode()})
        print(f"{name}: {text!r} -> {tok.decode(cont)!r}")
    dst = os.path.join(ROOT, "tests", "fixtures", "golden", f"{name}.json")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as f:
        json.dump(out, f)
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for n in sys.argv[1:] or ["flex", "meki"]:
        golden(n)
