"""Exploiting the curse: drop whole layers, or prune weights with layer-wise sparsity. Notebook 06.

Layer dropping: ``angular`` (Gromov et al., 2024: the block of ``n`` layers whose input and output
are closest in angle), ``block_influence`` (ShortGPT: lowest 1 - cos(in, out)), ``measured`` (the
cheapest single removals) and ``last`` (the ``n`` layers before the final one, which any rule beats
once the final layer goes too). Sparsity of every ``nn.Linear`` in the blocks: ``magnitude``,
``wanda`` (Sun et al., 2024: |W_ij| * ||X_j||, pruned per output row, each block seeing the pruned
blocks before it) and ``owl`` (Yin et al., 2024: Wanda with a sparsity per block spread over
``target +- lambda`` by its share of outlier scores, above ``M`` times the mean; M = 5, lambda =
0.08 as in the OWL paper).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .analysis import LayerStack, _check_idx, best_block, layer_stack, loss, residual_stream

RULES = ("angular", "block_influence", "measured", "last")
RULE_LABELS = {
    "angular": "angular distance (Gromov)", "block_influence": "Block Influence (ShortGPT)",
    "measured": "measured single-layer cost", "last": "last n before the final layer",
}
SPARSITY_METHODS = ("magnitude", "wanda", "owl")
OWL_M = 5.0
OWL_LAMBDA = 0.08


# ---------------------------------------------------------------------------------- layer dropping


def layers_to_drop(rule: str, n: int, n_layers: int, *, dist: torch.Tensor | None = None,
                   influence: Sequence[float] | None = None,
                   cost: Sequence[float] | None = None) -> list[int]:
    """The ``n`` layers (0-based, sorted) that ``rule`` removes, from ``dist`` (the angular-distance
    matrix), ``influence`` (Block Influence) or ``cost`` (each single removal's loss). Notebook 06.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    if not 1 <= n < n_layers - (rule == "last"):
        raise ValueError(f"n must lie in 1..{n_layers - 1 - (rule == 'last')} for a "
                         f"{n_layers}-layer model, got {n}")
    needed = {"angular": dist, "block_influence": influence, "measured": cost}.get(rule, True)
    if needed is None:
        arg = {"angular": "dist", "block_influence": "influence", "measured": "cost"}[rule]
        raise ValueError(f"rule {rule!r} needs {arg}=...")
    if rule == "angular":
        start, _ = best_block(dist, n)
        return list(range(start, start + n))
    if rule == "last":
        return list(range(n_layers - 1 - n, n_layers - 1))
    values = torch.as_tensor(influence if rule == "block_influence" else cost, dtype=torch.float64)
    if values.numel() != n_layers:
        raise ValueError(f"{rule} needs one value per layer ({n_layers}), got {values.numel()}")
    return sorted(int(i) for i in torch.argsort(values)[:n])


@torch.no_grad()
def layer_drop_curves(model: nn.Module | LayerStack, idx: torch.Tensor, ns: Sequence[int], *,
                      dist: torch.Tensor, influence: Sequence[float], cost: Sequence[float],
                      rules: Sequence[str] = RULES, hidden: torch.Tensor | None = None,
                      progress: bool = True) -> dict:
    """``{"base_loss", "n", "points": [{"rule", "n", "layers", "loss"}]}`` for each rule on ``idx``;
    the rankings should come from other (calibration) text. Notebook 06."""
    from .workshop.progress import progress_bar as tqdm

    st = layer_stack(model)
    hs = residual_stream(st, idx) if hidden is None else hidden
    base = loss(st, idx, hidden=hs)
    points = []
    jobs = [(r, n) for r in rules for n in ns]
    for rule, n in tqdm(jobs, desc="dropping layers", disable=not progress, leave=False):
        drop = layers_to_drop(rule, n, st.n_layers, dist=dist, influence=influence, cost=cost)
        dropped = loss(st, idx, drop=drop, hidden=hs)
        points.append({"rule": rule, "n": n, "layers": drop, "loss": dropped})
    return {"base_loss": base, "n": list(ns), "points": points}


def curve(result: dict, rule: str) -> tuple[list[int], list[float]]:
    """``(n, perplexity)`` of one rule from ``layer_drop_curves`` output."""
    pts = [p for p in result["points"] if p["rule"] == rule]
    return [p["n"] for p in pts], [math.exp(p["loss"]) for p in pts]


# --------------------------------------------------------------------------- unstructured sparsity


def block_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """The weight matrices of one block, by name."""
    out = {name: mod for name, mod in layer.named_modules() if isinstance(mod, nn.Linear)}
    if not out:
        raise TypeError(f"{type(layer).__name__} holds no nn.Linear to prune")
    return out


def _input_sq_norms(st: LayerStack, i: int, h: torch.Tensor, ctx) -> tuple[dict, torch.Tensor]:
    """Run block ``i`` on ``h``: (sum over tokens of x_j^2 at each linear's input, the output)."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for name, lin in block_linears(st.layers[i]).items():
        def hook(_mod, args, name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + x.pow(2).sum(0)
        hooks.append(lin.register_forward_pre_hook(hook))
    try:
        out = st.run_layer(i, h, ctx)
    finally:
        for hk in hooks:
            hk.remove()
    return sums, out


def wanda_scores(lin: nn.Linear, sq_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 (Sun et al., 2024), float32."""
    return lin.weight.detach().abs().float() * sq_norm.sqrt().unsqueeze(0)


def outlier_ratio(scores: Sequence[torch.Tensor], m: float = OWL_M) -> float:
    """OWL's outlier ratio of one block: the share of its scores above ``m`` times their mean."""
    count = sum(s.numel() for s in scores)
    mean = sum(float(s.sum()) for s in scores) / count  # no concatenated copy of 3.5 M scores
    return sum(int((s > m * mean).sum()) for s in scores) / count


def owl_ratios(outliers: Sequence[float], target: float, lam: float = OWL_LAMBDA) -> list[float]:
    """Per-block sparsity from outlier ratios, as in OWL's code: mapped linearly to [0, 2 lambda],
    centred and subtracted from ``target`` (more outliers, less sparsity); they average to it."""
    o = torch.as_tensor(outliers, dtype=torch.float64)
    if not 0.0 < target < 1.0 or not 0.0 <= lam < min(target, 1 - target):
        raise ValueError("need 0 < target < 1 and 0 <= lambda < min(target, 1 - target); got "
                         f"{target}, {lam}")
    spread = o.max() - o.min()
    scaled = (o - o.min()) / spread * (2 * lam) if spread > 0 else torch.zeros_like(o)
    density = scaled - scaled.mean() + (1.0 - target)
    return (1.0 - density).tolist()


def _prune_rows(w: torch.Tensor, scores: torch.Tensor, ratio: float) -> None:
    """Zero the lowest-scoring ``ratio`` of each output row of ``w``, in place: the same weights as
    ``topk``, 2.5x faster (notebook 06's sparsity table spent most of its time here), through each
    row's k-th smallest score as a threshold, with ``topk`` only for rows tied at it."""
    k = int(round(w.shape[1] * ratio))
    if k <= 0:
        return
    if k >= w.shape[1]:
        w.zero_()
        return
    thr = scores.kthvalue(k, dim=1, keepdim=True).values
    mask = scores <= thr
    tied = (mask.sum(dim=1) != k).nonzero().flatten()
    if tied.numel():  # several scores equal the threshold: keep exactly k, as topk does
        mask[tied] = False
        lowest = torch.topk(scores[tied], k, dim=1, largest=False).indices
        mask[tied] = mask[tied].scatter(1, lowest, True)
    w.mul_(mask.logical_not_())  # zeroes the pruned entries; 2x faster than masked_fill_ on CPU


def _prune_magnitude(w: torch.Tensor, ratio: float) -> None:
    k = int(round(w.numel() * ratio))
    if k <= 0:
        return
    thr = torch.kthvalue(w.detach().abs().float().flatten().cpu(), k).values
    w.masked_fill_(w.abs().float() <= thr, 0.0)


@dataclass
class SparsityReport:
    method: str
    target: float
    ratios: list[float]  # requested sparsity per block
    achieved: float  # zeros / weights over all block matrices
    outliers: list[float] | None = None  # OWL's outlier ratio per block


@torch.no_grad()
def sparsify(model: nn.Module | LayerStack, method: str, sparsity: float,
             calib: torch.Tensor | None = None, *, owl_m: float = OWL_M,
             owl_lambda: float = OWL_LAMBDA) -> SparsityReport:
    """Prune every block's linear weights in place to ``sparsity``; ``pruned`` undoes it. ``wanda``
    and ``owl`` need calibration tokens ``calib`` (batch, seq), not the evaluation text. Notebook
    06."""
    if method not in SPARSITY_METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(SPARSITY_METHODS)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    st = layer_stack(model)
    L = st.n_layers
    outliers = None
    if method == "magnitude":
        ratios = [sparsity] * L
        for layer in st.layers:
            for lin in block_linears(layer).values():
                _prune_magnitude(lin.weight.data, sparsity)
    else:
        if calib is None:
            raise ValueError(f"{method} needs calibration tokens: sparsify(model, {method!r}, s, "
                             "calib=ids)")
        calib = _check_idx(calib)
        if method == "owl":  # outlier ratios from the dense model, as in OWL's code
            h = st.embed(calib)
            ctx = st.context(h)
            outliers = []
            for i in range(L):
                sums, h = _input_sq_norms(st, i, h, ctx)
                lins = block_linears(st.layers[i])
                outliers.append(outlier_ratio([wanda_scores(lins[n], sums[n]) for n in lins],
                                              owl_m))
            ratios = owl_ratios(outliers, sparsity, owl_lambda)
        else:
            ratios = [sparsity] * L
        h = st.embed(calib)
        ctx = st.context(h)
        for i in range(L):  # each block sees the already-pruned blocks' output, as Wanda does
            sums, _ = _input_sq_norms(st, i, h, ctx)
            for name, lin in block_linears(st.layers[i]).items():
                _prune_rows(lin.weight.data, wanda_scores(lin, sums[name]), ratios[i])
            h = st.run_layer(i, h, ctx)
    zeros = total = 0
    for layer in st.layers:
        for lin in block_linears(layer).values():
            zeros += lin.weight.numel() - int(torch.count_nonzero(lin.weight))
            total += lin.weight.numel()
    return SparsityReport(method, sparsity, [float(r) for r in ratios], zeros / total, outliers)


@contextlib.contextmanager
def pruned(model: nn.Module | LayerStack, method: str, sparsity: float,
           calib: torch.Tensor | None = None, **kw) -> Iterator[SparsityReport]:
    """``with pruned(model, "owl", 0.7, calib) as report:``, then the dense weights return."""
    st = layer_stack(model)
    backup = [{n: lin.weight.detach().clone() for n, lin in block_linears(layer).items()}
              for layer in st.layers]
    try:
        yield sparsify(st, method, sparsity, calib, **kw)
    finally:
        with torch.no_grad():
            for layer, saved in zip(st.layers, backup):
                for n, lin in block_linears(layer).items():
                    lin.weight.copy_(saved[n])


def sparsity_table(model: nn.Module | LayerStack, eval_idx: torch.Tensor, calib: torch.Tensor,
                   sparsities: Sequence[float] = (0.5, 0.7),
                   methods: Sequence[str] = SPARSITY_METHODS, progress: bool = True,
                   dense_loss: float | None = None) -> dict:
    """``{"dense_loss", "rows": [{"method", "sparsity", "loss", "achieved", "ratios",
    "outliers"}]}`` on ``eval_idx``; ``dense_loss`` skips measuring the unpruned model again.
    Notebook 06."""
    from .workshop.progress import progress_bar as tqdm

    st = layer_stack(model)
    rows = []
    dense = loss(st, eval_idx) if dense_loss is None else float(dense_loss)
    for s in sparsities:
        for m in tqdm(methods, desc=f"pruning to {s:.0%}", disable=not progress, leave=False):
            with pruned(st, m, s, calib) as rep:
                rows.append({"method": m, "sparsity": s, "loss": loss(st, eval_idx),
                             "achieved": rep.achieved, "ratios": rep.ratios,
                             "outliers": rep.outliers})
    return {"dense_loss": dense, "rows": rows}


def _two_losses(table: dict, sparsity: float, a: str, b: str) -> tuple[float, float]:
    got = {r["method"]: r["loss"] for r in table["rows"] if abs(r["sparsity"] - sparsity) < 1e-9}
    if a not in got or b not in got:
        raise ValueError(f"the table has no {a!r} and {b!r} rows at sparsity {sparsity}")
    return got[a], got[b]


def winner(table: dict, sparsity: float, a: str = "owl", b: str = "wanda") -> str:
    """Which of two methods reached the lower perplexity at ``sparsity``: ``a``, ``b`` or "tie"."""
    la, lb = _two_losses(table, sparsity, a, b)
    return "tie" if la == lb else (a if la < lb else b)


def rule_ppl(result: dict, rule: str, n: int) -> float:
    """Perplexity of one rule at ``n`` dropped layers, from ``layer_drop_curves`` output."""
    for p in result["points"]:
        if p["rule"] == rule and p["n"] == n:
            return math.exp(p["loss"])
    raise ValueError(f"no point for rule {rule!r} at n={n}: run layer_drop_curves with it")


def measured_beats_last(result: dict, ns: Sequence[int] = (2, 4)) -> bool:
    """Notebook 06's claim: dropping the ``n`` layers cheapest by measured cost costs less
    perplexity than dropping the last ``n`` (before the final layer), for every ``n`` in ``ns``."""
    return all(rule_ppl(result, "measured", n) < rule_ppl(result, "last", n) for n in ns)


def ppl_ratio(table: dict, sparsity: float, a: str = "owl", b: str = "wanda") -> float:
    """Perplexity ratio between the worse and the better of two methods at ``sparsity`` (>= 1)."""
    la, lb = _two_losses(table, sparsity, a, b)
    return math.exp(abs(la - lb))
