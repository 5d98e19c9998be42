"""Per-layer diagnostics of the residual stream, for Hugging Face causal LMs and the kit's models alike.

Explained in notebook 01 (on SmolLM2-135M) and used in notebook 04 (on the models trained in 03).

Everything runs through a small adapter, ``layer_stack(model)``: embed the tokens, run block ``i``,
apply the head (final norm + unembedding). That is all the analyses need, and it gives the *raw*
residual stream after every block: transformers 5.x puts the final norm into the last entry of
``output_hidden_states``, which would hide exactly the growth this kit is about.

Conventions: layers are numbered from 0 in every returned array (entry ``i`` is HF's
``model.layers[i]``, or the kit's ``blocks[i]`` whose ``Block.layer`` is ``i + 1``). Hidden states
are stacked as ``hs[0]`` = embeddings, ``hs[i + 1]`` = output of layer ``i``.

The first position of every sequence is left out of the statistics by default (``skip_first``):
trained LLMs park an "attention sink" there, a token whose residual norm is orders of magnitude larger
than any other (SmolLM2: per-token RMS ~1,000 against a median of ~6 after layer 11, almost all of it in
feature 507; data/results/smollm2_per_token.json). It would dominate every mean and hide the per-layer trend
of the ordinary tokens. Rarely another token turns into a second sink (docs/evidence/smollm2_massive_activation.md):
``residual_rms_quantiles`` shows the typical token whatever a few outliers do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import CausalLM, apply_rope

# ----------------------------------------------------------------------------------------------
# The adapter
# ----------------------------------------------------------------------------------------------


class LayerStack:
    """A model seen as ``embed -> layers[0] -> ... -> layers[L-1] -> head``."""

    model: nn.Module
    layers: nn.ModuleList

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def context(self, h: torch.Tensor):
        """Whatever every block needs besides the stream (rotary tables, mask) for this input shape."""
        raise NotImplementedError

    def run_layer(self, i: int, h: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def head(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def param_dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


class KitStack(LayerStack):
    """The kit's ``CausalLM`` (``embed``, ``blocks``, ``rope``, ``head``)."""

    def __init__(self, model: nn.Module):
        self.model, self.layers = model, model.blocks

    def embed(self, idx):
        return self.model.embed(idx)

    def context(self, h):
        return self.model.rope

    def run_layer(self, i, h, ctx):
        return self.layers[i](h, ctx)

    def head(self, h):
        return self.model.head(h)


class HFDecoderStack(LayerStack):
    """LLaMA-family Hugging Face causal LMs (Llama, Mistral, Qwen2, SmolLM2 ...): ``model.model.layers``."""

    def __init__(self, model: nn.Module):
        inner = model.model
        self.model, self.inner, self.layers = model, inner, inner.layers
        types = getattr(model.config, "layer_types", None) or []
        if any(t != "full_attention" for t in types):
            raise NotImplementedError(
                f"{type(model).__name__} mixes attention types {sorted(set(types))}; the layer-by-layer adapter "
                "supports full causal attention only (Llama, SmolLM2, Mistral without sliding window, Qwen2 ...)"
            )

    def embed(self, idx):
        return self.inner.embed_tokens(idx)

    def context(self, h):
        from transformers.masking_utils import create_causal_mask

        pos = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
        mask = create_causal_mask(config=self.model.config, inputs_embeds=h, attention_mask=None, cache=None,
                                  position_ids=pos)
        return {"attention_mask": mask, "position_ids": pos, "position_embeddings": self.inner.rotary_emb(h, pos)}

    def run_layer(self, i, h, ctx):
        out = self.layers[i](h, use_cache=False, **ctx)
        return out[0] if isinstance(out, tuple) else out  # transformers < 5 returned a tuple

    def head(self, h):
        return self.model.lm_head(self.inner.norm(h))


def layer_stack(model: nn.Module | LayerStack) -> LayerStack:
    """The adapter for ``model``: the kit's ``CausalLM`` or a LLaMA-family HF causal LM (notebooks 01, 04)."""
    if isinstance(model, LayerStack):
        return model
    if hasattr(model, "blocks") and hasattr(model, "rope") and hasattr(model, "head") and hasattr(model, "embed"):
        return KitStack(model)
    inner = getattr(model, "model", None)
    if inner is not None and all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")) \
            and hasattr(model, "lm_head"):
        return HFDecoderStack(model)
    raise TypeError(
        f"{type(model).__name__} is neither curse_of_depth.CausalLM nor a LLaMA-family causal LM "
        "(model.model.embed_tokens/layers/norm/rotary_emb + lm_head). For other Hugging Face models "
        "(BERT, GPT-2 ...) pass their output_hidden_states to the statistics functions directly."
    )


# ----------------------------------------------------------------------------------------------
# The residual stream and its statistics
# ----------------------------------------------------------------------------------------------


def _check_idx(idx: torch.Tensor) -> torch.Tensor:
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32) or idx.ndim != 2:
        raise ValueError(f"expected token ids as an integer tensor of shape (batch, seq), got "
                         f"{getattr(idx, 'dtype', type(idx))} {tuple(getattr(idx, 'shape', ()))}")
    if idx.shape[1] < 2:
        raise ValueError("sequences need at least 2 tokens (one position is left out of the statistics)")
    return idx.long()


@torch.no_grad()
def residual_stream(model: nn.Module | LayerStack, idx: torch.Tensor) -> torch.Tensor:
    """The raw residual stream, shape ``(L + 1, batch, seq, d)``: embeddings, then after each block.

    No final norm anywhere (notebooks 01, 04).
    """
    st = layer_stack(model)
    idx = _check_idx(idx)
    h = st.embed(idx)
    ctx = st.context(h)
    out = h.new_empty((st.n_layers + 1, *h.shape))  # written in place: a stack of a list would hold two copies
    out[0] = h
    for i in range(st.n_layers):
        h = st.run_layer(i, h, ctx)
        out[i + 1] = h
    return out


def _states(hs: torch.Tensor | list | tuple, skip_first: bool) -> torch.Tensor:
    """``(L + 1, batch, seq, d)``, position 0 of each sequence dropped when ``skip_first`` (a view, no copy)."""
    if isinstance(hs, (list, tuple)):
        hs = torch.stack(list(hs))
    if hs.ndim == 3:  # (L + 1, seq, d): one sequence
        hs = hs.unsqueeze(1)
    if hs.ndim != 4:
        raise ValueError(f"hidden states must have shape (L+1, batch, seq, d), got {tuple(hs.shape)}")
    if skip_first:
        if hs.shape[2] < 2:
            raise ValueError("skip_first needs sequences of at least 2 tokens")
        hs = hs[:, :, 1:]
    return hs


def _tokens(hs: torch.Tensor | list | tuple, skip_first: bool) -> torch.Tensor:
    """``(L + 1, n_tokens, d)`` in float32, position 0 of each sequence dropped when ``skip_first``."""
    hs = _states(hs, skip_first)
    return hs.reshape(hs.shape[0], -1, hs.shape[-1]).float()


# Two different "residual variances" exist, and each has one name here:
#   * per token: the variance over the d features of one token's vector, averaged over tokens. What the theory
#     (notebook 02, ``curse_of_depth.theory``) predicts and what the kit's own models report (notebooks 03, 04).
#   * pooled: the variance (or mean square) over all tokens *and* features at once. A handful of tokens with
#     "massive activations" (SmolLM2: single features of ~800 on a few tokens) dominate it, so pooled RMS curves of
#     pretrained LLMs can jump where the per-token median does not move (notebook 01; docs/evidence/).
# The per-token RMS distribution (``residual_rms_quantiles``) is the robust view of a pretrained model.


def residual_rms_pooled(hs, skip_first: bool = True) -> torch.Tensor:
    """sqrt(mean h^2) of each hidden state, pooled over tokens and features, shape ``(L + 1,)`` (notebook 01).

    Pooling lets a few tokens with massive activations drive the curve; ``residual_rms_quantiles`` gives the
    per-token view.
    """
    return residual_rms_per_token(hs, skip_first).pow(2).mean(dim=1).sqrt()


def residual_variance_pooled(hs, skip_first: bool = True) -> torch.Tensor:
    """Variance of each hidden state over all tokens and features pooled, shape ``(L + 1,)``.

    Equals ``residual_variance_per_token`` plus the variance across tokens of each token's feature mean.
    """
    x = _tokens(hs, skip_first)
    return x.flatten(1).var(dim=1)


def residual_variance_per_token(hs, skip_first: bool = True) -> torch.Tensor:
    """Variance over the features of each token's vector (1/d normalization), averaged over tokens, shape
    ``(L + 1,)``: the quantity ``curse_of_depth.theory`` predicts (notebooks 02, 03, 04).

    ``skip_first=False`` for random-init stacks (no attention sink there, every position counts).
    """
    x = _tokens(hs, skip_first)
    return x.var(dim=-1, unbiased=False).mean(dim=-1)


def residual_rms_per_token(hs, skip_first: bool = True) -> torch.Tensor:
    """sqrt(mean over features of h^2) of every token, shape ``(L + 1, n_tokens)`` (notebook 01).

    The RMS each RMSNorm divides by: the block Jacobian's 1/rms factor is per token.
    """
    hs = _states(hs, skip_first)  # a norm per token reduces in place: no copy of the (large) hidden states
    return (torch.linalg.vector_norm(hs.float(), dim=-1) / math.sqrt(hs.shape[-1])).reshape(hs.shape[0], -1)


RMS_QUANTILES = (0.1, 0.5, 0.9, 0.99)


def residual_rms_quantiles(hs, quantiles=RMS_QUANTILES, skip_first: bool = True) -> dict[str, list]:
    """Quantiles of the per-token RMS at every hidden state, plus its max (notebook 01).

    Returns ``{"quantiles": [...], "values": [[q-th quantile at state 0..L] for each q], "max": [...]}``,
    JSON-friendly. The median is the typical token; the top quantiles and the max show the few tokens that
    carry massive activations, which ``residual_rms_pooled`` mixes into its single number.
    """
    qs = [float(q) for q in quantiles]
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    r = residual_rms_per_token(hs, skip_first).double()
    vals = torch.quantile(r, torch.tensor(qs, dtype=torch.float64), dim=1)
    return {"quantiles": qs, "values": vals.tolist(), "max": r.max(dim=1).values.tolist()}


def angular_distance_matrix(hs, skip_first: bool = True, last_token: bool = False) -> torch.Tensor:
    """``D[a, b]`` = mean over tokens of arccos(cos(h_a, h_b)) / pi for all pairs of hidden states.

    Computed in one batched contraction per sequence (no Python loop over pairs; one sequence's copy in memory at
    a time). ``last_token=True`` uses only each sequence's last position, as Gromov et al. (2024) do. Range 0 (same
    direction) to 1 (opposite). Shape ``(L + 1, L + 1)`` (notebook 01).
    """
    if last_token:
        if isinstance(hs, (list, tuple)):
            hs = torch.stack(list(hs))
        hs = hs[:, :, -1:] if hs.ndim == 4 else hs[:, -1:]
        skip_first = False
    st = _states(hs, skip_first)
    total = torch.zeros(st.shape[0], st.shape[0])
    for b in range(st.shape[1]):
        x = F.normalize(st[:, b].float(), dim=-1)
        total += torch.einsum("and,bnd->abn", x, x).clamp_(-1.0, 1.0).arccos_().sum(dim=-1)
    return total / (st.shape[1] * st.shape[2] * math.pi)


def adjacent_angular_distance(hs, skip_first: bool = True) -> torch.Tensor:
    """Angular distance between each layer's input and output, shape ``(L,)`` (notebooks 01, 04)."""
    x = F.normalize(_tokens(hs, skip_first), dim=-1)
    cos = (x[:-1] * x[1:]).sum(-1).clamp(-1.0, 1.0)
    return torch.arccos(cos).mean(dim=-1) / math.pi


def relative_update(hs, skip_first: bool = True) -> torch.Tensor:
    """||h_out - h_in|| / ||h_in|| of each layer, averaged over tokens, shape ``(L,)`` (notebooks 02-04).

    What a block adds relative to the stream it reads: the quantity behind "deep blocks drift toward the
    identity". At init it falls like ~1/sqrt(l) in any residual stack (Pre-LN, Peri-LN), whatever the stream's
    absolute size; LNS makes it fall faster.
    """
    x = _tokens(hs, skip_first)
    return ((x[1:] - x[:-1]).norm(dim=-1) / x[:-1].norm(dim=-1)).mean(dim=-1)


def block_distances(dist: torch.Tensor) -> torch.Tensor:
    """Gromov et al.'s heatmap from an ``(L + 1, L + 1)`` distance matrix.

    Row ``n - 1``, column ``l``: d(h_l, h_{l+n}), the distance across the block of ``n`` layers
    starting at layer ``l``; NaN where ``l + n > L``. Shape ``(L, L)`` (notebook 01).
    """
    size = dist.shape[0] - 1
    out = torch.full((size, size), float("nan"))
    for n in range(1, size + 1):  # L diagonals of a small matrix: the expensive part is already batched
        out[n - 1, : size + 1 - n] = torch.diagonal(dist, offset=n)
    return out


def best_block(dist: torch.Tensor, n: int) -> tuple[int, float]:
    """Start layer and distance of the most similar block of ``n`` consecutive layers (Gromov's rule)."""
    if not 1 <= n < dist.shape[0]:
        raise ValueError(f"block size n must lie in 1..{dist.shape[0] - 1}, got {n}")
    d = torch.diagonal(dist, offset=n)
    start = int(torch.argmin(d))
    return start, float(d[start])


def block_influence(hs, skip_first: bool = True) -> torch.Tensor:
    """ShortGPT's Block Influence of each layer: 1 - mean cos(input, output), shape ``(L,)`` (notebooks 01, 06).

    Low BI = the layer barely turns the stream = removed first by ShortGPT (Men et al., 2024).
    """
    x = F.normalize(_tokens(hs, skip_first), dim=-1)
    return 1.0 - (x[:-1] * x[1:]).sum(-1).mean(-1)


# ----------------------------------------------------------------------------------------------
# Losses, and the loss when layers are removed
# ----------------------------------------------------------------------------------------------


def _targets(idx: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, slice]:
    """Targets and the positions that are scored: next-token within each sequence when none are given."""
    if targets is None:
        return idx[:, 1:], slice(0, idx.shape[1] - 1)
    if targets.shape != idx.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} must equal the inputs' {tuple(idx.shape)}")
    return targets, slice(0, idx.shape[1])


@torch.no_grad()
def _nll(st: LayerStack, h: torch.Tensor, targets: torch.Tensor, rows: int = 256) -> float:
    """Mean cross-entropy of final hidden states ``h`` against ``targets``, ``rows`` tokens of logits at a time
    (SmolLM2's 49k-word head would need 200 MB per 1,000 tokens at once)."""
    h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
    total = sum(float(F.cross_entropy(st.head(h[s: s + rows]).float(), targets[s: s + rows], reduction="sum"))
                for s in range(0, h.shape[0], rows))
    return total / targets.numel()


@torch.no_grad()
def loss(model: nn.Module | LayerStack, idx: torch.Tensor, targets: torch.Tensor | None = None,
         drop: Sequence[int] = (), hidden: torch.Tensor | None = None) -> float:
    """Mean cross-entropy (nats/token) of the model with the ``drop`` layers (0-based) removed, if any.

    Without ``targets`` each sequence predicts its own next token. Removing layer ``i`` leaves the layers
    before it unchanged, so with ``hidden`` (the ``residual_stream`` of the full model on ``idx``) the
    stream enters at the first removed layer and only the layers after it run: the same number as deleting
    the layers, at a fraction of the cost. Notebooks 01, 04 and 06; the one skip-one-block loss of the kit.
    """
    st = layer_stack(model)
    idx = _check_idx(idx)
    tgt, pos = _targets(idx, targets)
    drop = sorted({int(i) for i in drop})
    if any(not 0 <= i < st.n_layers for i in drop) or len(drop) >= st.n_layers:
        raise ValueError(f"drop={drop} is out of range or drops every layer: name layers 0..{st.n_layers - 1} "
                         "and keep at least one")
    first = drop[0] if drop else st.n_layers
    if hidden is None:
        h = st.embed(idx)
        ctx = st.context(h)
        for i in range(first):
            h = st.run_layer(i, h, ctx)
    else:
        h = hidden[first]
        ctx = st.context(h) if drop else None
    for i in range(first + 1, st.n_layers) if drop else ():
        if i not in drop:
            h = st.run_layer(i, h, ctx)
    return _nll(st, h[:, pos], tgt)


@dataclass
class RemovalScan:
    """Loss of the full model and of the model with each single layer removed (notebooks 01, 04, 06)."""

    base_loss: float
    losses: list[float]  # losses[k]: layers[k] removed
    n_tokens: int
    layers: list[int] = field(default_factory=list)  # which layers were scanned (default: all)

    @property
    def delta(self) -> list[float]:
        """Loss increase in nats; exp(delta) is the perplexity ratio."""
        return [x - self.base_loss for x in self.losses]

    @property
    def base_ppl(self) -> float:
        return math.exp(self.base_loss)

    @property
    def ppl(self) -> list[float]:
        return [math.exp(x) for x in self.losses]

    @property
    def ppl_ratio(self) -> list[float]:
        return [math.exp(d) for d in self.delta]

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "base_ppl": self.base_ppl, "ppl": self.ppl}


def layer_removal_scan(model: nn.Module | LayerStack, idx: torch.Tensor, targets: torch.Tensor | None = None,
                       layers: Sequence[int] | None = None, progress: bool = True,
                       hidden: torch.Tensor | None = None) -> RemovalScan:
    """``loss`` with each single layer removed, from one full pass (notebooks 01, 04; the scale map of 07).

    ``hidden`` may pass a ``residual_stream`` already computed on the same ``idx``.
    """
    from .workshop.progress import progress_bar as tqdm

    st = layer_stack(model)
    hs = residual_stream(st, idx) if hidden is None else hidden
    if hs.shape[0] != st.n_layers + 1:
        raise ValueError(f"hidden has {hs.shape[0]} states, expected {st.n_layers + 1} (from residual_stream)")
    todo = list(range(st.n_layers)) if layers is None else [int(i) for i in layers]
    base = loss(st, idx, targets, hidden=hs)
    losses = [loss(st, idx, targets, drop=[i], hidden=hs)
              for i in tqdm(todo, desc="removing each layer", disable=not progress, leave=False)]
    n_tokens = idx.numel() if targets is not None else idx[:, 1:].numel()
    return RemovalScan(base_loss=base, losses=losses, n_tokens=int(n_tokens), layers=todo)


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


def block_grad_norms(model: nn.Module | LayerStack, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """L2 norm of the loss gradient w.r.t. all parameters of each block, shape ``(L,)`` (notebook 04).

    Uses ``torch.autograd.grad``, so the parameters' ``.grad`` fields are left untouched.
    """
    st = layer_stack(model)
    idx = _check_idx(idx)
    tgt, pos = _targets(idx, targets)
    params = [[p for p in layer.parameters() if p.requires_grad] for layer in st.layers]
    if not any(params):
        raise ValueError("no block parameter requires grad: call model.requires_grad_(True) first")
    with torch.enable_grad():
        h = st.embed(idx)
        ctx = st.context(h)
        for i in range(st.n_layers):
            h = st.run_layer(i, h, ctx)
        logits = st.head(h[:, pos]).float()
        loss_t = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        flat = [p for ps in params for p in ps]
        grads = torch.autograd.grad(loss_t, flat, allow_unused=True)
    out, k = [], 0
    for ps in params:
        sq = sum(float(g.float().pow(2).sum()) for g in grads[k: k + len(ps)] if g is not None)
        out.append(math.sqrt(sq))
        k += len(ps)
    return torch.tensor(out)


# ----------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerProfile:
    """Per-layer diagnostics of one model on one batch; JSON-friendly through ``to_dict`` (notebooks 01, 04).

    ``rms_pooled``/``variance_per_token`` have ``L + 1`` entries (embeddings first); the rest have ``L`` (one per
    layer).
    """

    rms_pooled: list[float]
    variance_per_token: list[float]
    angular: list[float]  # input -> output of each layer
    block_influence: list[float]
    removal: RemovalScan | None = None
    grad_norms: list[float] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["removal"] = self.removal.to_dict() if self.removal else None
        return d


def layer_profile(model: nn.Module | LayerStack, idx: torch.Tensor, targets: torch.Tensor | None = None,
                  removal: bool = True, grads: bool = False, skip_first: bool = True,
                  progress: bool = False) -> LayerProfile:
    """RMS, variance, angular distance, Block Influence, and optionally the single-layer removal scan and
    per-block gradient norms, from one forward pass (notebooks 01, 04).

    For a kit model trained on (x, y) batches pass ``targets=y``; ``skip_first`` matters for trained LLMs
    with an attention sink and changes little for tiny models.
    """
    st = layer_stack(model)
    hs = residual_stream(st, idx)
    scan = layer_removal_scan(st, idx, targets, hidden=hs, progress=progress) if removal else None
    g = block_grad_norms(st, idx, targets).tolist() if grads else None
    return LayerProfile(
        rms_pooled=residual_rms_pooled(hs, skip_first).tolist(),
        variance_per_token=residual_variance_per_token(hs, skip_first).tolist(),
        angular=adjacent_angular_distance(hs, skip_first).tolist(),
        block_influence=block_influence(hs, skip_first).tolist(),
        removal=scan,
        grad_norms=g,
    )


def rank_correlation(a, b) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks, ties given their average rank.

    The kit's one implementation (notebooks 01, 02; ``theory.check_decreasing`` uses it too).
    """
    from scipy.stats import rankdata

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two equally long sequences of >= 2 values, got {a.shape} and {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    if den == 0:
        raise ValueError("rank correlation is undefined when one sequence is constant")
    return float((ra * rb).sum() / den)


def layer_report(model: nn.Module | LayerStack, idx: torch.Tensor, removal: bool = True,
                 progress: bool = True) -> dict:
    """Everything notebook 01 plots, as plain JSON-friendly data, from one forward pass over ``idx``.

    Keys: ``loss`` (nats/token, next token within each sequence); per hidden state (L + 1 entries, position 0
    left out unless the key says so): ``rms_pooled``, ``rms_pooled_with_first``, ``variance_per_token``,
    ``variance_pooled``, ``rms_per_token`` (``residual_rms_quantiles``: median, percentiles, max of the per-token
    RMS); ``angular`` (L, input -> output), ``dist`` (the (L + 1)^2 angular-distance matrix), ``block_influence``
    (L), ``removal`` (the single-layer scan, when ``removal``), ``n_tokens``, ``seq_len``.
    """
    st = layer_stack(model)
    hs = residual_stream(st, idx)
    out = {
        "n_tokens": int(idx.numel()), "seq_len": int(idx.shape[1]),
        "rms_pooled": residual_rms_pooled(hs).tolist(),
        "rms_pooled_with_first": residual_rms_pooled(hs, skip_first=False).tolist(),
        "variance_per_token": residual_variance_per_token(hs).tolist(),
        "variance_pooled": residual_variance_pooled(hs).tolist(),
        "rms_per_token": residual_rms_quantiles(hs),
        "angular": adjacent_angular_distance(hs).tolist(),
        "dist": angular_distance_matrix(hs).tolist(), "block_influence": block_influence(hs).tolist(),
        "loss": _nll(st, hs[-1][:, :-1], idx[:, 1:]),
    }
    if removal:
        out["removal"] = layer_removal_scan(st, idx, hidden=hs, progress=progress).to_dict()
    return out


def middle_third_cheaper_than_ends(delta: dict[int, float] | list[float], n_layers: int | None = None) -> bool:
    """Notebook 01's claim: the mean removal cost of the middle third of the layers is below the cost of
    each of the first two and the last two layers. ``delta``: loss increase per layer (a list over all
    layers, or ``{layer: delta}`` holding at least those layers)."""
    d = dict(enumerate(delta)) if isinstance(delta, (list, tuple)) else dict(delta)
    L = n_layers or len(d)
    middle = claim_layers(L)[2:-2]
    missing = [i for i in claim_layers(L) if i not in d]
    if missing:
        raise ValueError(f"the claim needs the removal cost of layers {missing}")
    mean_middle = sum(d[i] for i in middle) / len(middle)
    return all(mean_middle < d[i] for i in (0, 1, L - 2, L - 1))


def claim_layers(n_layers: int) -> list[int]:
    """The layers ``middle_third_cheaper_than_ends`` reads: 0, 1, the middle third, L-2, L-1."""
    if n_layers < 6:
        raise ValueError(f"the claim needs at least 6 layers, got {n_layers}")
    third = n_layers // 3
    return [0, 1, *range(third, n_layers - third), n_layers - 2, n_layers - 1]


# ----------------------------------------------------------------------------- the depth profile and its growth


@dataclass
class DepthProfile:
    """The shape of a residual-variance profile over blocks 1..L (notebooks 02-04; ``depth_profile``).

    ``total`` = v_L / v_1; ``shallow`` = v_{L/4} / v_1 (blocks 1 -> L/4); ``deep`` = v_L / v_{L/4};
    ``exponent``: least-squares slope of log v against log l over blocks L/4..L, the p of v ~ l^p in the deep
    three quarters (at init: ~1 for Pre-LN, linear; ~2 would be the quadratic growth of a correlated stream; ~0 flat).
    """

    total: float
    shallow: float
    deep: float
    exponent: float

    def to_dict(self) -> dict:
        return asdict(self)


def depth_profile(variance_after_blocks) -> DepthProfile:
    """``DepthProfile`` of the variance after blocks 1..L (embedding left out; L >= 8). "Steeper" across training
    means a larger ``deep`` growth and ``exponent``; the paper's super-linear regime is an exponent above 1."""
    v = np.asarray(variance_after_blocks, dtype=float)
    if v.ndim != 1 or v.size < 8:
        raise ValueError(f"need the variance after at least 8 blocks, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("variances must be finite and positive (a diverged model has no profile)")
    L, q = v.size, v.size // 4
    layers = np.arange(1, L + 1, dtype=float)
    exponent = float(np.polyfit(np.log(layers[q - 1:]), np.log(v[q - 1:]), 1)[0])
    return DepthProfile(total=float(v[-1] / v[0]), shallow=float(v[q - 1] / v[0]), deep=float(v[-1] / v[q - 1]),
                        exponent=exponent)


def training_growth_table(data: dict, key: str = "variance_per_token") -> dict:
    """Seed mean and sd of each ``DepthProfile`` field, per norm and snapshot step, from a stored
    ``training_growth`` record (``scripts/measure_training_growth.py``; notebooks 02-04).

    Returns ``{norm: {step: {field: (mean, sd, n)}}}``, plus the last-block variance as field ``last``.
    """
    by: dict[str, dict[int, list[dict]]] = {}
    for run in data["runs"]:
        for step, snap in zip(run["steps"], run["snapshots"]):
            v = snap[key][1:]  # blocks 1..L (index 0 is the embedding)
            row = {**depth_profile(v).to_dict(), "last": float(v[-1])}
            by.setdefault(run["norm"], {}).setdefault(int(step), []).append(row)
    out: dict[str, dict[int, dict]] = {}
    for norm, steps in by.items():
        out[norm] = {}
        for step, rows in sorted(steps.items()):
            out[norm][step] = {f: (float(np.mean([r[f] for r in rows])),
                                   float(np.std([r[f] for r in rows], ddof=1)) if len(rows) > 1 else float("nan"),
                                   len(rows)) for f in rows[0]}
    return out


# ----------------------------------------------------------------------------- why LNS leaves the plateau first


@torch.no_grad()
def attention_logit_std(model: CausalLM, idx: torch.Tensor) -> list[float]:
    """Standard deviation of each block's pre-softmax attention logits q.k/sqrt(d_head) on ``idx``.

    Under LNS the attention input of block l is norm(x)/sqrt(l), and q and k are both linear in it,
    so the logits shrink by 1/l: deep blocks attend almost uniformly until their gains grow.
    Post-LN blocks (which read the raw stream) are measured on that stream. Notebook 03.
    """
    model.eval()
    out = model(idx, output_hidden_states=True)
    stds = []
    causal = torch.ones(idx.shape[-1], idx.shape[-1], dtype=torch.bool).tril()
    for block, x in zip(model.blocks, out.hidden_states[:-1]):
        h = x if block.post else block.ln_1(x) * block.scale
        B, T, _ = h.shape
        attn = block.attn
        q, k, _ = attn.qkv(h).view(B, T, 3, attn.n_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = model.rope[0][:T], model.rope[1][:T]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(attn.head_dim)
        stds.append(float(logits[..., causal].std()))
    return stds


def block_diagnostics(model: CausalLM, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """The four per-block diagnostics of notebook 04 on one batch, as plain lists (block 1 first).

    ``variance`` after each block (``residual_variance_per_token``: the quantity of notebook 02's theory),
    ``angular`` distance in -> out, ``skip_delta`` (loss increase when that block
    alone is skipped, reusing the inputs of the full pass), ``grad_norm`` of the block's parameters; plus
    ``embedding_variance`` and ``base_loss``. Built on ``curse_of_depth.analysis.layer_profile``.
    """
    was_training = model.training
    model.eval()
    try:
        prof = layer_profile(model, x, y, removal=True, grads=True, skip_first=False)
    finally:
        model.train(was_training)
    return {"variance": prof.variance_per_token[1:], "embedding_variance": prof.variance_per_token[0],
            "angular": prof.angular,
            "skip_delta": prof.removal.delta, "grad_norm": prof.grad_norms, "base_loss": prof.removal.base_loss}
