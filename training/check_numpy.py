"""Independent NumPy re-implementation of docs/checkpoint-format.md (written from the doc, not from
model.py), run on a committed checkpoint, compared with the golden fixture's logits (all 9 rows of
every prompt).  Usage: /usr/bin/python3 training/check_numpy.py flex meki"""
import base64, json, os, sys
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_v] = "1"
import numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from model import load_safetensors


def rms(x, w, eps): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
def silu(x): return x / (1 + np.exp(-x))


def forward(c, W, ids):
    d, H, KV = c["hidden_size"], c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd, eps, th = c.get("head_dim", d // H), c.get("rms_norm_eps", 1e-5), c.get("rope_theta", 10000.0)
    arch, L = c["architecture"], c["num_hidden_layers"]
    mem = set(c.get("memory_layers", [] if arch == "dense" else range(L)))
    g = lambda n: W[n]
    sw = lambda p, x: (silu(x @ g(p + "gate_proj.weight").T) * (x @ g(p + "up_proj.weight").T)) @ g(p + "down_proj.weight").T
    E = g("model.embed_tokens.weight"); T = len(ids); x = E[ids]
    inv = th ** (-np.arange(0, hd, 2) / hd); ang = np.arange(T)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))
    rot = lambda v: v * cos + np.concatenate([-v[:, hd // 2:], v[:, :hd // 2]], 1) * sin
    for l in range(L):
        p = f"model.layers.{l}."
        hn = rms(x, g(p + "input_layernorm.weight"), eps)
        q = (hn @ g(p + "self_attn.q_proj.weight").T).reshape(T, H, hd)
        k = (hn @ g(p + "self_attn.k_proj.weight").T).reshape(T, KV, hd)
        v = (hn @ g(p + "self_attn.v_proj.weight").T).reshape(T, KV, hd)
        o = np.zeros((T, H, hd))
        for h in range(H):
            kv = h // (H // KV)
            s = rot(q[:, h]) @ rot(k[:, kv]).T / np.sqrt(hd)
            s = s + np.triu(np.full((T, T), -np.inf), 1)
            s = np.exp(s - s.max(1, keepdims=True)); s /= s.sum(1, keepdims=True)
            o[:, h] = s @ v[:, kv]
        att = o.reshape(T, H * hd) @ g(p + "self_attn.o_proj.weight").T
        kind = arch if l in mem else "dense"
        if kind in ("memoryllm", "flex"):
            tol = sw(p + "memory.", rms(E[ids], g(p + "memory.norm.weight"), eps))
        if kind == "memoryllm":
            x = x + att + tol; continue
        a = x + att; h2 = rms(a, g(p + "post_attention_layernorm.weight"), eps)
        if kind == "dense":
            x = a + sw(p + "mlp.", h2)
        elif kind == "flex":
            x = a + sw(p + "mlp.", h2) + tol
        else:
            e = g(p + "memory.alpha") * rms(g(p + "memory.table")[ids] + g(p + "memory.beta") * sw(p + "memory.dynamic.", E[ids]),
                                            g(p + "memory.mix_norm.weight"), eps)
            y = rms((e + 1 / (1 + np.exp(-(h2 @ g(p + "memory.gate_proj.weight").T)))) @ g(p + "memory.out_proj.weight").T,
                    g(p + "memory.post_norm.weight"), eps)
            x = a + sw(p + "mlp.", h2) + y
    x = rms(x, g("model.norm.weight"), eps)
    return x @ (E if c.get("tie_word_embeddings", True) else g("lm_head.weight")).T


for name in sys.argv[1:] or ["flex", "meki"]:
    folder = os.path.join(ROOT, "models", name)
    c = json.load(open(os.path.join(folder, "config.json")))
    W = {k: v.numpy().astype(np.float64) for k, v in load_safetensors(os.path.join(folder, "model.safetensors")).items()}
    gold = json.load(open(os.path.join(ROOT, "tests", "fixtures", "golden", f"{name}.json")))
    worst = 0.0
    for pr in gold["prompts"]:
        ref = np.frombuffer(base64.b64decode(pr["logits_f32_b64"]), dtype="<f4").reshape(pr["logits_shape"])
        seq = pr["prompt_ids"] + pr["continuation_ids"]
        lg = forward(c, W, np.array(seq))
        n0 = len(pr["prompt_ids"]) - 1
        mine = lg[n0:n0 + ref.shape[0]]  # causal: one pass gives every row of the greedy recompute
        worst = max(worst, float(np.abs(mine - ref).max()))
        assert list(mine[:-1].argmax(1)) == pr["continuation_ids"]
    print(f"{name}: max |numpy float64 - golden float32| = {worst:.2e}; greedy continuations agree")
    assert worst < 1e-3
