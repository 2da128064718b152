"""flexmem reference models in PyTorch: dense, memoryllm, flex, meki.

Exactly docs/checkpoint-format.md.  Module names equal checkpoint tensor names, so a checkpoint is
just `state_dict()` (tied embeddings: no lm_head tensor).  Notation: x the residual stream, t the
token id at a position, E = model.embed_tokens.weight, d = hidden_size.

  RMSNorm_w(x) = x / sqrt(mean(x^2) + eps) * w
  SwiGLU(x)    = down( silu(gate x) * (up x) )
  dense layer  : a = x + Attn(N1 x);  x' = a + SwiGLU(N2 a)
  memoryllm    : x' = x + Attn(N1 x) + ToL[t],           ToL[v] = FFN_M(LN(E[v]))      (additive, no FFN)
  flex         : a = x + Attn(N1 x);  x' = a + FFN_C(N2 a) + ToL[t]                   (additive)
  meki         : a = x + Attn(N1 x);  h = N2 a;
                 e(t) = alpha * RMSNorm_mix(M[t] + beta * G(E[t]))    (G: SwiGLU d -> d_mem)
                 y = RMSNorm_post(W_out (e(t) + sigmoid(W_gate h)));  x' = a + SwiGLU(h) + y   (gated)

Context-free memory (ToL / e) is computed in training only for the distinct token ids of the batch
(`torch.unique`), which is the same function with the same gradient, and at inference can be read
from a precomputed V-row table (`memory_tables`).
"""
import json, math, os, struct
from dataclasses import dataclass, field, asdict
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("dense", "memoryllm", "flex", "meki")


@dataclass
class Config:
    architecture: str = "dense"
    vocab_size: int = 4096
    hidden_size: int = 192
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: Optional[int] = None
    intermediate_size: int = 512
    ffn_c_intermediate_size: Optional[int] = None      # flex
    memory_intermediate_size: Optional[int] = None     # memoryllm, flex
    memory_dim: Optional[int] = None                   # meki
    memory_gate_intermediate_size: Optional[int] = None  # meki
    memory_layers: Optional[List[int]] = None
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 256
    tie_word_embeddings: bool = True
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None

    def __post_init__(self):
        assert self.architecture in ARCHS
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.memory_layers is None:
            self.memory_layers = [] if self.architecture == "dense" else list(range(self.num_hidden_layers))

    def to_json(self):
        d = {k: v for k, v in asdict(self).items() if v is not None}
        return d

    @staticmethod
    def from_json(d):
        keys = Config.__dataclass_fields__.keys()
        return Config(**{k: v for k, v in d.items() if k in keys})


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):  # x / sqrt(mean(x^2) + eps) * w
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d_in, width, d_out=None):
        super().__init__()
        self.gate_proj = nn.Linear(d_in, width, bias=False)
        self.up_proj = nn.Linear(d_in, width, bias=False)
        self.down_proj = nn.Linear(width, d_out or d_in, bias=False)

    def forward(self, x):  # down( silu(gate x) * (up x) )
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rope(x, pos, theta):
    """Llama 'rotate half' rotary: x [B, h, T, hd]; inv_freq_i = theta^(-2i/hd), i < hd/2;
    x' = x * cos + rotate_half(x) * sin, rotate_half([x1, x2]) = [-x2, x1]."""
    hd = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = pos.float()[:, None] * inv_freq[None, :]            # [T, hd/2]
    ang = torch.cat([ang, ang], -1)                            # [T, hd]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * ang.cos() + torch.cat([-x2, x1], -1) * ang.sin()


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        H, KV, hd, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size
        self.q_proj = nn.Linear(d, H * hd, bias=False)
        self.k_proj = nn.Linear(d, KV * hd, bias=False)
        self.v_proj = nn.Linear(d, KV * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, d, bias=False)

    def forward(self, x, pos):
        B, T, _ = x.shape
        c = self.c
        H, KV, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        q = self.q_proj(x).view(B, T, H, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, KV, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, KV, hd).transpose(1, 2)
        q, k = rope(q, pos, c.rope_theta), rope(k, pos, c.rope_theta)
        k = k.repeat_interleave(H // KV, dim=1)                # GQA: query head i uses kv head i // (H/KV)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)          # causal softmax(q k^T / sqrt(hd)) v
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
        return self.o_proj(o)


class AdditiveMemory(nn.Module):
    """memoryllm / flex FFN-M: ToL[v] = FFN_M(LN(E[v])), a d-vector per token."""

    def __init__(self, c: Config):
        super().__init__()
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        w = c.memory_intermediate_size
        self.gate_proj = nn.Linear(c.hidden_size, w, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, w, bias=False)
        self.down_proj = nn.Linear(w, c.hidden_size, bias=False)

    def rows(self, e):  # e = E[v] -> FFN_M(LN(e))
        z = self.norm(e)
        return self.down_proj(F.silu(self.gate_proj(z)) * self.up_proj(z))


class MekiMemory(nn.Module):
    """MeKi: static table M, dynamic projection G, fused e(v) = alpha * RMSNorm_mix(M[v] + beta * G(E[v]))
    (rows(), context-free -> folded into Mt at build time), and the gated read-out
    y = RMSNorm_post(W_out (Mt[t] + sigmoid(W_gate h)))."""

    def __init__(self, c: Config):
        super().__init__()
        dm = c.memory_dim
        self.table = nn.Parameter(torch.randn(c.vocab_size, dm) * 0.02)
        self.dynamic = SwiGLU(c.hidden_size, c.memory_gate_intermediate_size, dm)
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.ones(1))
        self.mix_norm = RMSNorm(dm, c.rms_norm_eps)
        self.gate_proj = nn.Linear(c.hidden_size, dm, bias=False)   # W_gate [d_mem, d]
        self.out_proj = nn.Linear(dm, c.hidden_size, bias=False)    # W_out  [d, d_mem]
        self.post_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def rows(self, ids, e):  # Mt[v] = alpha * RMSNorm_mix(M[v] + beta * G(E[v]))
        return self.alpha * self.mix_norm(self.table[ids] + self.beta * self.dynamic(e))

    def read(self, mt, h):   # y = RMSNorm_post(W_out (Mt[t] + sigmoid(W_gate h)))
        return self.post_norm(self.out_proj(mt + torch.sigmoid(self.gate_proj(h))))


class Layer(nn.Module):
    def __init__(self, c: Config, l: int):
        super().__init__()
        self.kind = c.architecture if l in c.memory_layers else "dense"
        d, eps = c.hidden_size, c.rms_norm_eps
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(c)
        if self.kind != "memoryllm":
            self.post_attention_layernorm = RMSNorm(d, eps)
            width = c.ffn_c_intermediate_size if self.kind == "flex" else c.intermediate_size
            self.mlp = SwiGLU(d, width)
        if self.kind in ("memoryllm", "flex"):
            self.memory = AdditiveMemory(c)
        elif self.kind == "meki":
            self.memory = MekiMemory(c)

    def mem_rows(self, uniq, e_uniq):
        """Context-free memory rows for the token ids `uniq` (embeddings e_uniq)."""
        if self.kind in ("memoryllm", "flex"):
            return self.memory.rows(e_uniq)
        return self.memory.rows(uniq, e_uniq)

    def forward(self, x, pos, rows):
        """rows: this layer's memory rows gathered per position ([B, T, width]) or None for dense."""
        if self.kind == "memoryllm":            # x' = x + Attn(N1 x) + ToL[t]
            return x + self.self_attn(self.input_layernorm(x), pos) + rows
        a = x + self.self_attn(self.input_layernorm(x), pos)   # a = x + Attn(N1 x)
        h = self.post_attention_layernorm(a)                   # h = N2 a
        if self.kind == "dense":                # x' = a + SwiGLU(h)
            return a + self.mlp(h)
        if self.kind == "flex":                 # x' = a + FFN_C(h) + ToL[t]
            return a + self.mlp(h) + rows
        return a + self.mlp(h) + self.memory.read(rows, h)     # meki: x' = a + SwiGLU(h) + y


class Inner(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Layer(c, l) for l in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Model(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.config = c
        self.model = Inner(c)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        L = self.config.num_hidden_layers
        for n, p in self.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".alpha") or n.endswith(".beta"):
                continue
            std = 0.02 / math.sqrt(2 * L) if n.endswith(("o_proj.weight", "down_proj.weight", "out_proj.weight")) else 0.02
            with torch.no_grad():
                p.normal_(0.0, std)

    def forward(self, ids, tables=None, zero_layers=()):
        """ids [B, T] -> logits [B, T, V].
        tables: optional per-layer precomputed V-row tables (from memory_tables()); else rows are
        computed for the batch's distinct ids.  zero_layers: memory layers whose rows are set to zero
        (memory-path ablation)."""
        E = self.model.embed_tokens.weight
        B, T = ids.shape
        pos = torch.arange(T)
        x = E[ids]
        need = any(l.kind != "dense" for l in self.model.layers)
        if need and tables is None:
            uniq, inv = torch.unique(ids, return_inverse=True)
            e_uniq = E[uniq]
        for i, layer in enumerate(self.model.layers):
            rows = None
            if layer.kind != "dense":
                if tables is not None:
                    rows = tables[i][ids]
                else:
                    rows = layer.mem_rows(uniq, e_uniq)[inv]
                if i in zero_layers:
                    rows = torch.zeros_like(rows)
            x = layer(x, pos, rows)
        x = self.model.norm(x)
        W = E if self.config.tie_word_embeddings else self.lm_head.weight
        return x @ W.t()

    @torch.no_grad()
    def memory_tables(self):
        """The build-time folding: per memory layer, the V-row table (ToL for additive, Mt for gated)."""
        E = self.model.embed_tokens.weight
        allv = torch.arange(self.config.vocab_size)
        return {i: l.mem_rows(allv, E) for i, l in enumerate(self.model.layers) if l.kind != "dense"}


# ---------------------------------------------------------------- parameter accounting

def param_counts(m: Model):
    """active = compute-path parameters used per token (attention, FFN/FFN-C, norms, MeKi W_gate/W_out/
    post-norm, final norm) excluding the embedding; memory = FFN-M (+ its LN) and MeKi M, G, alpha,
    beta, mix-norm (all folded into tables); embedding = E (tied with the output head)."""
    act = mem = emb = 0
    for n, p in m.named_parameters():
        k = p.numel()
        if n == "model.embed_tokens.weight" or n == "lm_head.weight":
            emb += k
        elif ".memory." in n and not (m.config.architecture == "meki" and any(
                s in n for s in (".memory.gate_proj.", ".memory.out_proj.", ".memory.post_norm."))):
            mem += k
        else:
            act += k
    return {"active_non_embedding": act, "memory": mem, "embedding": emb, "total": act + mem + emb}


def table_bytes_fp16(c: Config):
    """token-major tables: V x sum of per-layer slice widths (d additive, d_mem gated), fp16."""
    w = 0
    for l in c.memory_layers:
        w += c.memory_dim if c.architecture == "meki" else c.hidden_size
    return c.vocab_size * w * 2


# ---------------------------------------------------------------- safetensors I/O (no dependency)

_DT = {"F32": np.float32, "F16": np.float16}


def save_safetensors(path, tensors: dict, dtype="F16"):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().cpu().float().numpy().astype(_DT[dtype]).astype("<" + np.dtype(_DT[dtype]).str[1:])
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)                           # pad header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(data[s:e], dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            a = np.frombuffer(data[s:e], dtype=np.dtype(_DT[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(a.astype(np.float32).reshape(info["shape"]))
    return out


def save_checkpoint(m: Model, folder, tokenizer_dir, dtype="F16"):
    import shutil
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(m.config.to_json(), f, indent=2)
    save_safetensors(os.path.join(folder, "model.safetensors"), m.state_dict(), dtype)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, fn), os.path.join(folder, fn))


def load_checkpoint(folder):
    """Loads a checkpoint folder into a float32 Model (weights up-cast exactly from fp16)."""
    with open(os.path.join(folder, "config.json")) as f:
        c = Config.from_json(json.load(f))
    m = Model(c)
    sd = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            sd.update(load_safetensors(os.path.join(folder, fn)))
    m.load_state_dict(sd, strict=True)
    return m.eval()
