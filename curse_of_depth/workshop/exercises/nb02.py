"""Checkers for notebook 02 (why Pre-LN variance grows). Solutions: notebooks/solutions/02_why_variance_grows.ipynb."""

from __future__ import annotations

import math

import torch

from ...model import Block, ModelConfig
from . import attempt, diagnose

_CFG = ModelConfig(vocab_size=16, d_model=32, n_layers=8, n_heads=4, seq_len=12, norm="pre")


def _case(layer: int, seed: int = 0) -> tuple[Block, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A Pre-LN block at 1-based position ``layer`` with random weights and gains, and an input."""
    from ...model import rope_cache

    g = torch.Generator().manual_seed(seed)
    block = Block(_CFG, layer)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.rand(p.shape, generator=g) + 0.5 if p.ndim == 1 else torch.randn(p.shape, generator=g) * 0.1)
    x = torch.randn(2, _CFG.seq_len, _CFG.d_model, generator=g) * 3.0
    return block.eval(), x, rope_cache(_CFG.seq_len, _CFG.head_dim, _CFG.rope_theta)


def _lns(block, x, rope, s_attn: float, s_mlp: float, where: str = "norm") -> torch.Tensor:
    """The block with factors placed at ``where``: the norm output (LNS), the branch output, or the stream."""
    if where == "norm":
        x = x + block.attn(block.ln_1(x) * s_attn, rope)
        return x + block.mlp(block.ln_2(x) * s_mlp)
    if where == "branch":
        x = x + s_attn * block.attn(block.ln_1(x), rope)
        return x + s_mlp * block.mlp(block.ln_2(x))
    x = (x + block.attn(block.ln_1(x), rope)) * s_attn  # the residual stream itself
    return (x + block.mlp(block.ln_2(x))) * s_mlp


def check_lns_block(lns_block) -> object:
    """Exercise 2.1: ``lns_block(block, x, rope)`` = the Pre-LN block with LayerNorm Scaling (block.layer is 1-based)."""
    ex = "2.1"
    for layer in (4, 1):
        block, x, rope = _case(layer)
        with torch.no_grad():
            out, stop = attempt(ex, lns_block, block, x, rope)
            if stop:
                return stop
            s = 1 / math.sqrt(layer)
            ref = _lns(block, x, rope, s, s)
            mistakes = [
                (_lns(block, x, rope, 1.0, 1.0), "this is plain Pre-LN: no factor reaches the block",
                 "multiply each norm's output by 1/sqrt(block.layer); scaling x before an RMSNorm changes nothing, "
                 "since RMSNorm(c·x) = RMSNorm(x)"),
                (_lns(block, x, rope, 1 / math.sqrt(layer + 1), 1 / math.sqrt(layer + 1)),
                 "off by one: the factor is 1/sqrt(layer + 1), as if block.layer were 0-based",
                 "block.layer is already 1-based (the first block has layer 1 and factor 1)"),
                (_lns(block, x, rope, 1 / layer, 1 / layer), "1/ℓ instead of 1/√ℓ",
                 "the factor is 1/sqrt(ℓ): it shrinks the branch's *variance* by 1/ℓ"),
                (_lns(block, x, rope, s, s, where="stream"), "you scaled the residual stream",
                 "LNS leaves the stream alone and scales what the norm hands to the branch"),
                (_lns(block, x, rope, s, s, where="branch"), "you scaled the branch's output",
                 "scale the norm's output, i.e. the branch's *input*: attention and SwiGLU are not linear in it"),
                (_lns(block, x, rope, s, 1.0), "only the attention input is scaled", "scale both norms of the block"),
                (_lns(block, x, rope, 1.0, s), "only the MLP input is scaled", "scale both norms of the block"),
            ]
            if layer > 1:
                mistakes.insert(2, (_lns(block, x, rope, 1 / math.sqrt(layer - 1), 1 / math.sqrt(layer - 1)),
                                    "off by one: the factor is 1/sqrt(layer - 1)",
                                    "use block.layer as it is: it is 1-based"))
            verdict = diagnose(ex, out, ref, mistakes, "both norm outputs × 1/√ℓ, for ℓ = 4 and ℓ = 1",
                               "x = x + attn(ln_1(x) / sqrt(l), rope); x = x + mlp(ln_2(x) / sqrt(l))")
        if not verdict.ok:
            return verdict
    return verdict
