"""Checkers for notebook 04 (inside the trained models).
Solutions: notebooks/solutions/04_inside_trained_models.ipynb.

4.1 ``check_most_removable``: the block (1-based, block 1 aside) whose removal raises the loss
least, and that cost.
4.2 ``check_relative_update``: what each block adds relative to the stream it reads, by hand.
"""

from __future__ import annotations

import math
from functools import cache

import torch

from ... import analysis
from ...model import ModelConfig, build_model
from . import Verdict, attempt, diagnose, wrong

_TRUE_BLOCK = 4  # the planted near-identity block of the small case (1-based)


@cache
def _case() -> tuple:
    """A small Pre-LN model (6 blocks), block 1 an exact identity and block 4 nearly one, on a batch
    whose targets are the full model's own predictions (so removing a block can only cost): the skip
    costs are distinct."""
    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=6, n_heads=4, seq_len=16, norm="pre")
    model = build_model(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for i, block in enumerate(model.blocks):
            scale = 0.0 if i == 0 else 0.03 if i == _TRUE_BLOCK - 1 else 1.0
            block.attn.o_proj.weight.mul_(scale)
            block.mlp.down_proj.weight.mul_(scale)
        x = torch.randint(0, cfg.vocab_size, (4, cfg.seq_len), generator=g)
        y = model(x).logits.argmax(-1)
    base = analysis.loss(model, x, y)
    costs = [analysis.loss(model, x, y, drop=[i]) - base for i in range(cfg.n_layers)]
    return model, x, y, base, costs


def _other_tokens(model, x, y, block: int, base: float) -> list[float]:
    """The cost when the two losses are measured on different tokens (one call without targets)."""
    i, no_targets = block - 1, analysis.loss(model, x)
    return [analysis.loss(model, x, drop=[i]) - base,
            analysis.loss(model, x, y, drop=[i]) - no_targets]


def _wrong_block(ex: str, block: int, truth: int, largest: int) -> Verdict | None:
    if block == 1:
        return wrong(ex, "block 1 counted", "leave block 1 aside: it writes each token into the "
                     "stream, and the question is which later block the model can spare")
    if block == truth - 1:
        return wrong(ex, "0-based index: you returned the Python index, not the block number",
                     "drop=[i] takes 0-based indices; block numbers start at 1, so block = i + 1")
    if block == largest:
        return wrong(ex, "you picked the block with the largest cost",
                     "the most removable block costs the least")
    if block != truth:
        return wrong(ex, f"block {block} is not the cheapest to skip",
                     "compute the cost of every block 2..L on the same batch; take the smallest")
    return None


def check_most_removable(most_removable) -> Verdict:
    """Exercise 4.1: ``most_removable(model, x, y)`` -> (block, cost): the 1-based number of the
    block (block 1 aside) whose removal raises the loss on (x, y) least, and that rise in nats."""
    ex = "4.1"
    model, x, y, base, costs = _case()
    out, stop = attempt(ex, most_removable, model, x, y)
    if stop:
        return stop
    try:
        block, cost = int(out[0]), float(out[1])
    except (TypeError, ValueError, IndexError):
        return wrong(ex, "return two things: (block, cost)", "e.g. return best + 1, costs[best]")
    rest = {b: costs[b - 1] for b in range(2, len(costs) + 1)}
    truth, largest = min(rest, key=rest.get), max(rest, key=rest.get)
    verdict = _wrong_block(ex, block, truth, largest)
    if verdict is not None:
        return verdict
    true_cost = costs[truth - 1]
    same_tokens = ("pass the same x and the same targets y to both analysis.loss calls; without "
                   "targets a call scores other positions")
    mistakes = [(-true_cost, "sign: you returned full − skipped",
                 "cost = loss without the block − full loss"),
                (math.exp(true_cost), "a perplexity ratio, not nats",
                 "return the loss difference itself"),
                *[(v, "your two losses were measured on different tokens", same_tokens)
                  for v in _other_tokens(model, x, y, truth, base)]]
    return diagnose(ex, cost, true_cost, mistakes,
                    f"block {truth}, {true_cost:.4f} nats, on the small planted case",
                    "cost = analysis.loss(model, x, y, drop=[block - 1]) - analysis.loss(model, x, "
                    "y)")


# -------------------------------------------------------------- 4.2: relative update by hand


@cache
def _stream() -> torch.Tensor:
    """Hidden states (L + 1, batch, seq, d) of a growing stream, with tokens of very different
    sizes."""
    g = torch.Generator().manual_seed(1)
    L, B, T, d = 5, 2, 6, 8
    h = torch.randn(B, T, d, generator=g) * torch.exp(torch.randn(B, T, 1, generator=g))
    out = [h]
    for layer in range(1, L + 1):
        h = h + torch.randn(B, T, d, generator=g) * (0.5 + layer) * torch.rand(B, T, 1, generator=g)
        out.append(h)
    return torch.stack(out)


def check_relative_update(relative_update_by_hand) -> Verdict:
    """Exercise 4.2: ``relative_update_by_hand(hs)`` -> tensor (L,): for each block ℓ, the mean over
    every token of ||h_ℓ − h_(ℓ−1)|| / ||h_(ℓ−1)||, norms over the features
    (``analysis.relative_update(hs, skip_first=False)``)."""
    ex = "4.2"
    hs = _stream()
    out, stop = attempt(ex, relative_update_by_hand, hs.clone())
    if stop:
        return stop
    try:
        out = out.double() if torch.is_tensor(out) else torch.as_tensor(out, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return wrong(ex, "return a tensor (or list) with one number per block", "shape (L,)")
    L = hs.shape[0] - 1
    if out.shape != (L,):
        return wrong(ex, f"shape {tuple(out.shape)}: expected ({L},), one value per block",
                     "take norms over the last axis (features), then the mean over batch and "
                     "positions")
    h = hs.double()
    delta, before, after = h[1:] - h[:-1], h[:-1], h[1:]
    per_token = delta.norm(dim=-1)
    mistakes = [
        (per_token.mean(dim=(1, 2)) / before.norm(dim=-1).mean(dim=(1, 2)),
         "ratio of means: mean ||Δ|| / mean ||h||",
         "divide per token first, then average the ratios"),
        (delta.flatten(1).norm(dim=1) / before.flatten(1).norm(dim=1),
         "one norm over all tokens at once", "norm over the features of each token: .norm(dim=-1)"),
        ((per_token / after.norm(dim=-1)).mean(dim=(1, 2)),
         "divided by the block's output, not its input", "the stream the block reads is h_(ℓ−1)"),
        ((per_token ** 2 / before.norm(dim=-1) ** 2).mean(dim=(1, 2)),
         "squared norms: that is a variance ratio", "take the norms themselves, not their squares"),
        ((delta.norm(dim=-2) / before.norm(dim=-2)).mean(dim=(1, 2)),
         "norms over the positions, not the features", "use .norm(dim=-1): each token's vector"),
        (analysis.relative_update(hs, skip_first=True), "position 0 left out",
         "this exercise averages over every token, position 0 included"),
    ]
    return diagnose(ex, out, analysis.relative_update(hs, skip_first=False), mistakes,
                    "mean over tokens of ||h_ℓ − h_(ℓ−1)|| / ||h_(ℓ−1)||, per block",
                    "(hs[1:] - hs[:-1]).norm(dim=-1) / hs[:-1].norm(dim=-1), then .mean over "
                    "batch and positions")
