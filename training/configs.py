"""The five runs of the comparison (d=192, 4 heads / 2 KV heads, head_dim 48, V=4096, context 256).

Equal ACTIVE (non-embedding compute-path) parameters, about 2.44 M each = 66 d^2:
  dense      6 layers x (attn 3d^2 + SwiGLU 512 = 8d^2)                      = 66 d^2
  memoryllm 22 layers x attn 3d^2 (no FFN in the compute path)               = 66 d^2
  flex      11 layers x (attn 3d^2 + FFN-C 3d^2, width 192: beta = 3)        = 66 d^2
  meki       6 layers x (attn 3d^2 + SwiGLU 448 = 7d^2 + W_gate,W_out d^2)   = 66 d^2
Memory (total-only) parameters, about 3.25 M each:
  memoryllm 22 x FFN-M width 256;  flex 11 x FFN-M width 512;
  meki 6 x (M: 4096 x 96 + G: SwiGLU 192 -> 304 -> 96)
Equal TOTAL parameters (about 6.5 M): dense_total, 22 layers of [attn + SwiGLU 256] = memoryllm with
every FFN-M moved back into the residual stream (same depth, width and parameter count).
"""
COMMON = dict(vocab_size=4096, hidden_size=192, num_attention_heads=4, num_key_value_heads=2,
              head_dim=48, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256,
              tie_word_embeddings=True, bos_token_id=4095, eos_token_id=4095)

RUNS = {
    "flex": dict(architecture="flex", num_hidden_layers=11, intermediate_size=192,
                 ffn_c_intermediate_size=192, memory_intermediate_size=512),
    "meki": dict(architecture="meki", num_hidden_layers=6, intermediate_size=448,
                 memory_dim=96, memory_gate_intermediate_size=304),
    "dense": dict(architecture="dense", num_hidden_layers=6, intermediate_size=512),
    "memoryllm": dict(architecture="memoryllm", num_hidden_layers=22, intermediate_size=256,
                      memory_intermediate_size=256),
    "dense_total": dict(architecture="dense", num_hidden_layers=22, intermediate_size=256),
    # a second equal-TOTAL dense baseline, wide and shallow instead of deep and narrow:
    # d = 288, 6 layers, SwiGLU 736, head_dim 72 -> 6.49 M total
    "dense_total_wide": dict(architecture="dense", num_hidden_layers=6, intermediate_size=736,
                             hidden_size=288, head_dim=72),
}
ORDER = ["flex", "meki", "dense", "memoryllm", "dense_total", "dense_total_wide"]


def config(name):
    from model import Config
    return Config(**{**COMMON, **RUNS[name]})
