"""tests/fixtures/golden/perplexity.json: reference validation perplexities of the committed
checkpoints (float32 compute from the fp16 weights) under the evaluation protocol of train.py:
tokenize training/data/valid.txt whole (the literal <|endoftext|> separators become the special id),
cut it into non-overlapping windows of 257 tokens with stride 256 (window i = tokens
[256 i, 256 i + 257)), predict tokens 1..256 of each window from its prefix, ppl = exp(mean NLL).
Given for the first 4 windows (cheap enough for a unit test), the first 256 windows, and all windows."""
import json, os, sys
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_v] = "1"
import torch
HERE = os.path.dirname(os.path.abspath(__file__)); ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from model import load_checkpoint
from train import evaluate, valid_tokens, CTX

torch.set_num_threads(1)
vids = valid_tokens()
out = {"protocol": " ".join(__doc__.split()), "context": CTX, "valid_tokens": int(len(vids)), "models": {}}
for name in sys.argv[1:] or ["flex", "meki"]:
    m = load_checkpoint(os.path.join(ROOT, "models", name))
    r = {}
    for nw in (4, 256, None):
        ppl, n = evaluate(m, vids, max_windows=nw)
        r[f"windows_{nw or 'all'}"] = {"tokens_scored": n, "ppl": ppl}
    out["models"][name] = r
    print(name, r)
json.dump(out, open(os.path.join(ROOT, "tests", "fixtures", "golden", "perplexity.json"), "w"), indent=1)
