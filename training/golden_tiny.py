"""Golden fixtures for the four architectures on tiny random checkpoints:
tests/fixtures/golden/tiny-<arch>.json, for dense, memoryllm, flex and meki.

The checkpoint is NOT committed: `flexmem init <dir> --arch <arch> --preset tiny --seed 1 --dtype f32`
(cli/random-checkpoint.ts, deterministic for the seed) writes it, here and again in
tests/golden.test.ts, which first checks that its copy has the sha256 recorded here.  Only the
PyTorch results are committed:

- logits: model.py (float32, memory rows computed from the weights, not read from a table) for 3
  prompts tokenized by bpe.py's encoder (not the TypeScript one), then greedy decoding of N_NEW
  tokens with a full recompute per step.  `logits_f32_b64` is the little-endian float32 array
  [len(prompt_ids) + N_NEW, vocab_size]: row i holds the logits at position i of
  prompt_ids + continuation_ids, every prompt position included.
- a second, independent oracle on the same inputs: the float64 NumPy forward of
  training/check_numpy.py (written from docs/checkpoint-format.md, not from model.py); the largest
  |PyTorch - NumPy| is recorded as `numpy_float64_max_abs_diff` and must stay below 1e-4.
- perplexity of tests/fixtures/eval.txt under the protocol of src/engine/perplexity.ts and
  `flexmem eval` (restated here from its description, not its code): windows of C =
  max_position_embeddings inputs, window i reads tokens [iC, min(iC + C, n - 1)) and predicts
  each next token, so every token but the first is predicted once, from its own window only.

Needs node (for `flexmem init`) and Debian's python3-torch / python3-numpy / python3-regex.
Usage: /usr/bin/python3 training/golden_tiny.py [dense memoryllm flex meki]
"""
import base64, hashlib, json, math, os, subprocess, sys, tempfile
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bpe
from model import load_checkpoint, load_safetensors

ARCHS = ["dense", "memoryllm", "flex", "meki"]
SEED = 1
PROMPTS = ["The President said", "In the year 1800 the Congress", "We hold these truths"]
N_NEW = 8
EVAL_TEXT = os.path.join("tests", "fixtures", "eval.txt")


def numpy_forward():
    """check_numpy.py's `forward` (its module body also runs its own check, so take the definitions only)."""
    src = open(os.path.join(HERE, "check_numpy.py"), encoding="utf-8").read()
    ns = {"__name__": "check_numpy_defs", "__file__": os.path.join(HERE, "check_numpy.py")}
    exec(compile(src.split("\nfor name in ")[0], "check_numpy.py", "exec"), ns)
    return ns["forward"]


def load_tokenizer(path):
    """bpe.py's encoder over a tokenizer.json written by flexmem init (merges as "a b" strings)."""
    j = json.load(open(path, encoding="utf-8"))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
    return bpe.BPE(j["model"]["vocab"], merges)


def encode(tok, text):
    assert "<|" not in text, "special tokens are not handled here"
    return [i for w in bpe.pretokenize(text) for i in tok.word(w)]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@torch.no_grad()
def perplexity(m, ids):
    C = m.config.max_position_embeddings
    nll, n, windows = 0.0, 0, 0
    for start in range(0, len(ids) - 1, C):
        inputs = ids[start:min(start + C, len(ids) - 1)]
        targets = ids[start + 1:start + 1 + len(inputs)]
        logits = m(torch.tensor([inputs]))[0].double()
        nll += F.cross_entropy(logits, torch.tensor(targets), reduction="sum").item()
        n += len(targets); windows += 1
    return {"context": C, "windows": windows, "predicted_tokens": n, "nll_sum": nll, "ppl": math.exp(nll / n)}


@torch.no_grad()
def golden(arch, forward64, workdir):
    ckpt = os.path.join(workdir, arch)
    cmd = ["node", "bin/flexmem.js", "init", ckpt, "--arch", arch, "--preset", "tiny", "--seed", str(SEED), "--dtype", "f32"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    m = load_checkpoint(ckpt)
    tok = load_tokenizer(os.path.join(ckpt, "tokenizer.json"))
    config = json.load(open(os.path.join(ckpt, "config.json")))
    W = {k: v.numpy().astype(np.float64) for k, v in load_safetensors(os.path.join(ckpt, "model.safetensors")).items()}
    V = m.config.vocab_size
    out = {"architecture": arch,
           "generator": {"command": " ".join(["flexmem"] + cmd[2:3] + ["<dir>"] + cmd[4:]),
                         "preset": "tiny", "arch": arch, "seed": SEED, "dtype": "f32"},
           "sha256": {f: sha256(os.path.join(ckpt, f)) for f in ("config.json", "model.safetensors", "tokenizer.json")},
           "vocab_size": V,
           "oracle": "training/model.py, float32, torch " + torch.__version__ + "; memory rows computed from the weights",
           "decoding": "greedy, full recompute per step, no KV cache",
           "prompts": []}
    worst64 = 0.0
    for text in PROMPTS:
        ids = encode(tok, text)
        seq, cont, margins = list(ids), [], []
        for _ in range(N_NEW):
            last = m(torch.tensor([seq]))[0, -1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last)); cont.append(nxt); seq.append(nxt)
        # Causal: one pass over the whole sequence gives every row of the greedy recompute above;
        # check that it does (the rows fed to the test are this pass's).
        full = m(torch.tensor([seq]))[0].float().numpy().astype("<f4")
        assert full.shape == (len(ids) + N_NEW, V)
        assert list(full[len(ids) - 1:-1].argmax(1)) == cont
        ref64 = forward64(config, W, np.array(seq))
        worst64 = max(worst64, float(np.abs(ref64 - full).max()))
        out["prompts"].append({"text": text, "prompt_ids": ids, "continuation_ids": cont,
                               "logits_shape": list(full.shape), "min_greedy_margin": min(margins),
                               "logits_f32_b64": base64.b64encode(full.tobytes()).decode()})
        print(f"tiny {arch}: {text!r} -> {len(ids)} prompt ids, continuation {cont}, margin {min(margins):.4f}")
    assert worst64 < 1e-4, f"model.py and check_numpy.py disagree by {worst64}"
    out["numpy_float64_max_abs_diff"] = worst64
    text = open(os.path.join(ROOT, EVAL_TEXT), encoding="utf-8").read()
    eval_ids = encode(tok, text)
    out["perplexity"] = {"text": EVAL_TEXT, "token_ids": eval_ids, **perplexity(m, eval_ids)}
    print(f"tiny {arch}: |torch - numpy float64| <= {worst64:.2e}; eval.txt perplexity {out['perplexity']['ppl']:.4f} "
          f"over {out['perplexity']['predicted_tokens']} tokens")
    dst = os.path.join(ROOT, "tests", "fixtures", "golden", f"tiny-{arch}.json")
    with open(dst, "w") as f:
        json.dump(out, f)
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    forward64 = numpy_forward()
    with tempfile.TemporaryDirectory() as work:
        for arch in sys.argv[1:] or ARCHS:
            assert arch in ARCHS, arch
            golden(arch, forward64, work)
