"""Checkers for notebook 06 (exploiting the curse). Solutions:
notebooks/solutions/06_exploiting_the_curse.ipynb.

Exercise 6.1 ranks SmolLM2's layers from the statistics of the stored scan (``smollm2_layers.json``:
chunks 0-15 of the validation plays) and measures the attendee's drops on the evaluation text
(``hf.eval_tokens``), where the stored compression run (``smollm2_compress.json``, the same 2,048
tokens) holds angular distance's cost. Exercise 6.2 prunes one small made-up matrix.
"""

from __future__ import annotations

import math

import torch

from .. import results
from . import attempt, correct, diagnose, wrong

NS = (2, 4, 8)  # how many layers the checker drops with the attendee's order
STATS = ("angular", "block_influence", "cost")


# -------------------------------------------------------------------------------- Exercise 6.1


def layer_stats() -> dict:
    """Per-layer statistics of SmolLM2-135M from the stored scan, each a list over layers 0..29:
    ``angular`` (input -> output angular distance), ``block_influence`` (1 - cosine), ``cost`` (loss
    increase in nats when that layer alone is removed); plus ``n_layers``. Measured on chunks 0-15,
    not on the evaluation text.
    """
    d = results.load("smollm2_layers")["data"]
    return {
        "angular": list(d["angular"]),
        "block_influence": list(d["block_influence"]),
        "cost": list(d["removal"]["delta"]),
        "n_layers": len(d["angular"]),
    }


def _argsort(values) -> list[int]:
    return sorted(range(len(values)), key=lambda i: values[i])


def _as_order(out) -> list[int] | None:
    try:
        seq = out.tolist() if hasattr(out, "tolist") else list(out)
        order = [int(x) for x in seq]
    except (TypeError, ValueError):
        return None
    return order if all(float(x) == int(x) for x in seq) else None


def _static_mistake(ex: str, order: list[int], stats: dict):
    """The classic mistakes that need no measurement, as a Verdict; None when the order looks sound.
    """
    L, n = stats["n_layers"], max(NS)
    head = order[:n]
    if len(order) < n:
        return wrong(
            ex,
            f"your order has {len(order)} layers, the checker drops up to {n}",
            f"return at least {n} layers, the one to drop first at the front",
        )
    if len(set(head)) < n:
        twice = sorted({i for i in head if head.count(i) > 1})
        return wrong(ex, f"layer(s) {twice} appear twice in your first {n}", "each layer once")
    asc = {s: set(_argsort(stats[s])[:n]) for s in STATS}
    desc = {s: set(_argsort(stats[s])[::-1][:n]) for s in STATS}
    shifted = {i - 1 for i in head}
    if (max(order) == L and min(order) >= 1) or any(
        shifted == a and set(head) != a for a in asc.values()
    ):
        return wrong(
            ex,
            "your layers look 1-based (numbered 1..30)",
            f"the model's layers are numbered 0..{L - 1}, as in the stats lists: drop the + 1",
        )
    if any(not 0 <= i < L for i in order):
        return wrong(
            ex,
            f"layer numbers must lie in 0..{L - 1}, "
            f"got {sorted(i for i in order if not 0 <= i < L)}",
            "use the positions in the stats lists",
        )
    overlap = {s: len(set(head) & desc[s]) for s in STATS}
    top = max(overlap, key=overlap.get)
    if overlap[top] >= n - 2:
        return wrong(
            ex,
            f"your order is descending: it drops the layers with the largest {top} first",
            "sort ascending: the smallest distance, influence or cost goes first",
        )
    ends = [i for i in (0, L - 1) if i in head]
    if ends:
        costs = ", ".join(f"layer {i} alone ×{math.exp(stats['cost'][i]):.0f}" for i in ends)
        return wrong(
            ex,
            f"your first {n} include the {'first' if ends[0] == 0 else 'last'} layer ({costs})",
            f"never drop layer 0 (it turns embeddings into features) "
            f"or layer {L - 1} (it writes the output)",
        )
    return None


def _angular_losses() -> tuple[float, dict[int, float]]:
    """Full-model loss and angular distance's loss at each n of NS, from the stored compression run.
    """
    d = results.load("smollm2_compress")["data"]["drops"]
    return d["base_loss"], {
        p["n"]: p["loss"] for p in d["points"] if p["rule"] == "angular" and p["n"] in NS
    }


def _live_loss_of(model, tokenizer):
    """``drop -> loss`` of ``model`` on the evaluation text, each drop set measured once."""
    from ... import analysis, hf

    idx, memo = hf.eval_tokens(tokenizer), {}

    def loss_of(drop):
        key = tuple(sorted(drop))
        if key not in memo:
            memo[key] = analysis.loss(model, idx, drop=list(key))
        return memo[key]

    return loss_of


def check_drop_order(drop_order, model=None, tokenizer=None, *, loss_of=None) -> object:
    """Exercise 6.1: ``drop_order(stats)`` -> SmolLM2's layers (0-based) in the order you would drop
    them. The first n are dropped for n = 2, 4, 8 and measured on the evaluation text against
    angular distance's stored cost; it beats angular distance when its mean loss increase over the
    three is lower. ``loss_of``: a ``drop -> loss`` function instead of the live model (tests).
    """
    ex = "6.1"
    stats = layer_stats()
    out, stop = attempt(
        ex, drop_order, {k: list(v) if isinstance(v, list) else v for k, v in stats.items()}
    )
    if stop:
        return stop
    order = _as_order(out)
    if order is None:
        return wrong(
            ex,
            f"your function returned {type(out).__name__}, not a list of layer numbers",
            "return e.g. sorted(range(30), key=lambda i: ...)",
        )
    mistake = _static_mistake(ex, order, stats)
    if mistake:
        return mistake
    if loss_of is None:
        if model is None or tokenizer is None:
            return wrong(
                ex,
                "the checker needs the model",
                "call ex.check_drop_order(my_drop_order, model, tok)",
            )
        loss_of = _live_loss_of(model, tokenizer)
    base, ang = _angular_losses()
    try:
        mine = {n: float(loss_of(order[:n])) for n in NS}
    except Exception as exc:  # a drop the model refuses: report, never raise
        return wrong(
            ex,
            f"measuring your drops failed ({type(exc).__name__}: {exc})",
            "return valid layer numbers",
        )
    gain = sum(ang[n] - mine[n] for n in NS) / len(NS)
    ratios = "/".join(f"×{math.exp(mine[n] - base):.2f}" for n in NS)
    theirs = "/".join(f"×{math.exp(ang[n] - base):.2f}" for n in NS)
    at = ", ".join(map(str, NS))
    said = f"perplexity {ratios} vs angular distance {theirs} at n = {at} (evaluation text)"
    if gain > 0:
        return correct(
            ex, f"your order beats angular distance by {gain:.2f} nats on average: {said}"
        )
    return wrong(
        ex,
        f"a valid order, but it does not beat angular distance "
        f"({-gain:.2f} nats worse on average): {said}",
        "angular distance must drop a contiguous block; single-layer costs pick scattered layers",
    )


# -------------------------------------------------------------------------------- Exercise 6.2


def _matrix(seed: int = 0) -> torch.Tensor:
    """An 8 x 12 weight matrix whose rows have different scales (so whole-matrix and per-row pruning
    differ), no ties.
    """
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(8, 12, generator=g, dtype=torch.float64)
        * torch.linspace(0.2, 3.0, 8, dtype=torch.float64)[:, None]
    )


def _zero_lowest(
    w: torch.Tensor, scores: torch.Tensor, k: int, dim: int | None = None
) -> torch.Tensor:
    """``w`` with the ``k`` lowest ``scores`` zeroed over the whole matrix, or ``k`` per row/column
    along ``dim``.
    """
    out = w.clone()
    if dim is None:
        out.view(-1)[torch.argsort(scores.flatten())[:k]] = 0
    else:
        out.scatter_(dim, torch.argsort(scores, dim=dim).narrow(dim, 0, k), 0.0)
    return out


def check_magnitude_prune(prune) -> object:
    """Exercise 6.2: ``prune(W, sparsity)`` -> a copy of W with the fraction ``sparsity`` of its
    entries set to zero: those of smallest |W| over the whole matrix (magnitude pruning).
    """
    ex = "6.2"
    for s in (0.75, 0.25):
        w = _matrix()
        out, stop = attempt(ex, prune, w.clone(), s)
        if stop:
            return stop
        if not isinstance(out, torch.Tensor) or out.shape != w.shape:
            return wrong(
                ex,
                f"return a tensor of W's shape {tuple(w.shape)}",
                "return the pruned copy of W (not a count or a mask of another shape)",
            )
        out = out.detach().to(torch.float64)
        if out.dtype == torch.bool or set(out.unique().tolist()) <= {0.0, 1.0}:
            return wrong(
                ex,
                "you returned the mask, not the pruned weights",
                "return W * mask (or W with zeros written in)",
            )
        k, n = round(s * w.numel()), w.numel()
        mag = w.abs()
        mistakes = [
            (
                _zero_lowest(w, -mag, k),
                "you pruned the largest weights",
                "zero the *smallest* |W|: argsort ascending",
            ),
            (
                _zero_lowest(w, mag, n - k),
                f"sparsity inverted: {1 - s:.0%} zeroed instead of {s:.0%}",
                "sparsity = the fraction of weights set to zero",
            ),
            (
                _zero_lowest(w, -mag, n - k),
                f"you kept only the smallest {1 - s:.0%}",
                "sparsity = the fraction of the smallest |W| set to zero",
            ),
            (
                _zero_lowest(w, mag, round(s * w.shape[1]), dim=1),
                "you pruned each row separately",
                "this exercise prunes over the whole matrix: one threshold for all entries",
            ),
            (
                _zero_lowest(w, mag, round(s * w.shape[0]), dim=0),
                "you pruned each column separately",
                "this exercise prunes over the whole matrix: one threshold for all entries",
            ),
            (
                _zero_lowest(w, w, k),
                "you pruned the most negative weights (signed values, not magnitudes)",
                "rank by |W|: W.abs()",
            ),
            (w, "nothing was zeroed", "write zeros where |W| is below the threshold"),
        ]
        verdict = diagnose(
            ex,
            out,
            _zero_lowest(w, mag, k),
            mistakes,
            "the smallest |W| over the whole matrix are zero, at 75 % and at 25 % sparsity",
            "k = round(sparsity * W.numel()); threshold = W.abs().flatten().kthvalue(k).values; "
            "W * (W.abs() > threshold)",
        )
        if not verdict.ok:
            return verdict
    return verdict
