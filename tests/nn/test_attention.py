"""CausalSelfAttention against the formula written out: per-head softmax(QK^T / sqrt(d/H) + M) V, then W_O."""

from __future__ import annotations

import math

import torch

from cadence.nn import CausalSelfAttention


def test_causal_self_attention_is_the_masked_multi_head_formula():
    d, H, T = 12, 3, 7
    attention = CausalSelfAttention(d, H, dropout=0.5).eval()
    x = torch.randn(2, T, d)
    q, k, v = attention.qkv(x).split(d, dim=-1)
    mask = torch.full((T, T), -math.inf).triu(1)  # M_ts = -inf for s > t
    heads = []
    for j in range(H):
        part = slice(j * d // H, (j + 1) * d // H)
        weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d / H) + mask, dim=-1)
        heads.append(weights @ v[..., part])
    expected = attention.out(torch.cat(heads, dim=-1))
    with torch.no_grad():
        assert torch.allclose(attention(x), expected, atol=1e-6)
