"""Why the Pre-LN residual stream grows: variance recursions, Monte-Carlo checks and block Jacobians.

Explained in notebook 02 (``notebooks/02_why_variance_grows.ipynb``).

Three kinds of prediction live here, from the simplest to the one that matches the kit's model:

* the *correlated recursion* of the paper's appendix (``correlated_recursion``): Var(X + Y) for a stream X and a
  branch output Y, sigma^2_{l+1} = sigma^2_l + b_l^2 + 2 rho sigma_l b_l, with rho the correlation coefficient
  of stream and branch and b_l = b (Pre-LN, Peri-LN) or b/sqrt(l) (LNS). rho = 0 is Xiong et al.'s picture at
  initialization (linear growth); rho > 0 is the correlation that training builds, which turns linear growth
  into quadratic growth. (The paper's Eqs. 21-23 write rho sigma sigma_b: their rho is twice a correlation.);
* the paper's products, iterated literally (``paper_product``): Lemma 3.2 sigma^2_{l+1} = sigma^2_l (1 + 1/sigma_l)
  and Lemma 4.1 sigma^2_{l+1} = sigma^2_l (1 + 1/(sqrt(l) sigma_l)), and their stated bounds (``paper_bounds``);
* the *mean-field kernel recursion* (``mean_field_variance``): the expected variance after every block of
  a randomly initialized ``curse_of_depth.model`` stack, derived from its init (N(0, init_std^2) weights and
  embeddings), with no fitted constant. It tracks the position-by-position covariance of the stream, because
  at init attention averages over the causal prefix: what a block adds depends on how correlated the positions
  already are. sigma^2_l = sigma^2_0 + sum_k b_k^2, with each b_k^2 derived, not measured.

All five placements of ``curse_of_depth.model.NORMS`` are covered: Pre-LN, LNS, Post-LN, Mix-LN and Peri-LN.

Measurements on real stacks of the kit's model: ``measure_variance`` (several seeds, spread), ``block_jacobians``
(how far each block's Jacobian is from its identity path, the branch's share separated from the norm's projection),
``lns_branch_scaling`` (what LNS's 1/sqrt(l) does to each branch) and ``gradient_norms``.
The claim checks the notebook asserts are plain functions (``check_*``) so tests can flip their inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .analysis import rank_correlation, residual_variance_per_token
from .model import NORMS, CausalLM, ModelConfig, build_model
from .stats import Check

# NORMS (pre, lns, post, mix, peri) comes from the model: the theory covers every placement the model has.

# ---------------------------------------------------------------------------------------------------------------
# The toy recursions (normalized units: what one step adds at b = 1)
# ---------------------------------------------------------------------------------------------------------------


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def _probe_args(cfg: ModelConfig, seeds, norms, seq_len: int | None, batch: int) -> int:
    """Validate the arguments shared by the random-stack probes; return the sequence length to use."""
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed, e.g. seeds=(0, 1, 2)")
    for n in norms:
        _check_norm(n)
    T = seq_len or cfg.seq_len
    if T > cfg.seq_len:
        raise ValueError(f"seq_len={T} exceeds cfg.seq_len={cfg.seq_len}; raise cfg.seq_len")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return T


def _check_depth(n_layers: int) -> None:
    if not isinstance(n_layers, (int, np.integer)) or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")


def branch_scale(norm: str, layer: int, lns_power: float = 0.5) -> float:
    """b_l / b: how much block ``layer`` (1-based) scales its branch input. LNS: l^-1/2 (notebook 02).

    ``lns_power=0`` turns LNS's factor into 1 (LNS "switched off"), which the tests use to show that the
    LNS-vs-Pre-LN claim then fails. Peri-LN's branches are not scaled (its output norm fixes their size instead).
    """
    _check_norm(norm)
    return layer ** -lns_power if norm == "lns" else 1.0


def correlated_recursion(
    n_layers: int,
    rho: float = 0.0,
    norm: str = "pre",
    sigma0_sq: float = 1.0,
    b_sq: float = 1.0,
    mix_alpha: float = 0.25,
    post_level: float = 1.0,
    lns_power: float = 0.5,
) -> np.ndarray:
    """sigma^2 after 0..L steps of sigma^2_{l+1} = sigma^2_l + b_l^2 + 2 rho sigma_l b_l (notebook 02).

    This is Var(X + Y) = Var X + Var Y + 2 Cov(X, Y) for the stream X (std sigma_l) and what the block adds, Y
    (std b_l), with rho = Corr(X, Y), a correlation coefficient in [-1, 1]: rho = 1 adds standard deviations
    (sigma_{l+1} = sigma_l + b_l), rho = -1 subtracts them. rho = 0 at random init (the branch's fresh zero-mean
    weights: Xiong et al.'s linear growth); rho > 0 once training correlates branch and stream. Deep in the stack
    the cross term dominates, d sigma / dl ~ rho b, so sigma^2 ~ rho^2 b^2 l^2: quadratic. The paper's appendix
    (Eqs. 21-23) writes the cross term as rho sigma sigma_b, i.e. its rho is 2x this correlation.

    b_l = sqrt(b_sq) * branch_scale(norm, l), so with LNS b_l^2 = b^2 / l. That is the *attention value path* of an
    LNS block: v = W_V (norm(x)/sqrt(l)) has variance / l, and uniform attention passes it on (the logits q.k also
    shrink, by 1/l, which only makes attention more uniform). The SwiGLU path scales faster, ~1/l^2 in variance:
    gate and up both read norm(x)/sqrt(l) and silu(g) ~ g/2 for small g, so silu(gate) * up ~ 1/l in amplitude.
    ``lns_branch_scaling`` measures both; ``mean_field_variance`` uses both exactly. The toy recursion keeps one
    b_l per step.

    Post-LN re-normalizes the stream after every step, so its variance is pinned at ``post_level`` (gamma^2 = 1
    at init); Mix-LN is Post-LN for the first floor(mix_alpha * L) steps and Pre-LN after. Peri-LN is a
    residual stream like Pre-LN (its branch output is normalized, so b is the output norm's gain: b^2 = 2 per
    block at init, one unit-RMS output per sublayer). Returns an array of length n_layers + 1.
    """
    _check_norm(norm)
    _check_depth(n_layers)
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho is a correlation and must lie in [-1, 1], got {rho}")
    if sigma0_sq < 0 or b_sq < 0:
        raise ValueError(f"sigma0_sq and b_sq are variances and must be >= 0, got {sigma0_sq}, {b_sq}")
    n_post = n_layers if norm == "post" else (math.floor(mix_alpha * n_layers) if norm == "mix" else 0)
    out = np.empty(n_layers + 1)
    out[0] = s2 = sigma0_sq
    for layer in range(1, n_layers + 1):
        if layer <= n_post:
            s2 = post_level
        else:
            b = math.sqrt(b_sq) * branch_scale(norm, layer, lns_power)
            s2 = max(s2 + b * b + 2.0 * rho * math.sqrt(s2) * b, 0.0)  # >= (sigma - b)^2 >= 0 up to rounding
        out[layer] = s2
    return out


def xiong_linear(n_layers: int, sigma0_sq: float, b_sq: float, norm: str = "pre", mix_alpha: float = 0.25) -> np.ndarray:
    """Xiong et al. (2020) at init: Pre-LN sigma^2_l = sigma^2_0 + l b^2 (linear), Post-LN flat (notebook 02)."""
    return correlated_recursion(n_layers, 0.0, norm, sigma0_sq, b_sq, mix_alpha)


def paper_product(n_layers: int, lns: bool = False, sigma1_sq: float = 1.0) -> np.ndarray:
    """The paper's Lemma 3.2 (``lns=False``) or Lemma 4.1 (``lns=True``) iterated literally (notebook 02).

    sigma^2_{l+1} = sigma^2_l (1 + 1/sigma_l)  or  sigma^2_l (1 + 1/(sqrt(l) sigma_l)), from sigma^2_1.
    The Theta(.) of the lemmas is dropped (constant 1), so this shows the *shape*: ~l^2/4 for Pre-LN,
    ~l for LNS — inside the stated bounds, but not at their exponential / L^(2-eps) upper ends.
    Returns sigma^2_1..sigma^2_L (length n_layers).
    """
    _check_depth(n_layers)
    if sigma1_sq <= 0:
        raise ValueError(f"sigma1_sq must be positive, got {sigma1_sq}")
    out = np.empty(n_layers)
    out[0] = s2 = sigma1_sq
    for k in range(1, n_layers):
        s2 = s2 * (1.0 + 1.0 / ((math.sqrt(k) if lns else 1.0) * math.sqrt(s2)))
        out[k] = s2
    return out


def paper_bounds(n_layers: int, lns: bool = False, eps: float = 0.5) -> dict[str, np.ndarray]:
    """The shapes of the paper's bounds with unit constants: Theta(L) <= sigma^2_L <= Theta(exp L) (Pre-LN, Eq. 7)
    or Theta(L^(2-eps)) (LNS, Eq. 14; 1/2 <= eps < 1). Constants are unknown, so only slopes mean anything
    (notebook 02)."""
    _check_depth(n_layers)
    if not 0.5 <= eps < 1.0:
        raise ValueError(f"the paper states 1/2 <= eps < 1, got eps={eps}")
    depth = np.arange(1, n_layers + 1, dtype=float)
    upper = depth ** (2.0 - eps) if lns else np.exp(depth)
    return {"depth": depth, "lower": depth, "upper": upper}


# ---------------------------------------------------------------------------------------------------------------
# Mean-field kernel recursion for the kit's model at init (no fitted constants)
# ---------------------------------------------------------------------------------------------------------------

_GH_NODES = 8  # Gauss-Hermite points per dimension: exact for polynomials of degree <= 15; silu is smooth


@functools.lru_cache(maxsize=8)
def _gauss_hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    # cached: the nodes are the same for every call, and computing them cost ~40% of a mean-field prediction
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(x, dtype=torch.float64), torch.tensor(w / w.sum(), dtype=torch.float64)


def silu_product_expectation(cov: torch.Tensor, nodes: int = _GH_NODES) -> torch.Tensor:
    """E[silu(g_t) silu(g_s)] for a zero-mean Gaussian vector g with covariance ``cov`` (T x T), by
    two-dimensional Gauss-Hermite quadrature (notebook 02: the SwiGLU gate's contribution)."""
    z, w = _gauss_hermite(nodes)
    sd = cov.diagonal().clamp_min(1e-300).sqrt()
    corr = (cov / (sd[:, None] * sd[None, :])).clamp(-1.0, 1.0)
    z1, z2, ww = z[:, None], z[None, :], w[:, None] * w[None, :]
    a = sd[:, None, None, None] * z1
    b = sd[None, :, None, None] * (corr[..., None, None] * z1 + (1 - corr**2).sqrt()[..., None, None] * z2)
    return (F.silu(a) * F.silu(b) * ww).sum((-1, -2))


@dataclass
class MeanFieldPrediction:
    """Expected per-feature variance after the embeddings (index 0) and after every block (notebook 02).

    ``increments[k-1]`` is b_k^2, the variance block k adds on average over positions:
    variance[l] = variance[0] + sum_{k<=l} increments[k-1] for the residual (Pre-LN/LNS) blocks.
    """

    norm: str
    d_model: int
    n_layers: int
    seq_len: int
    variance: np.ndarray
    increments: np.ndarray
    seconds: float

    @property
    def relative_increments(self) -> np.ndarray:
        """b_l^2 / sigma^2_{l-1}: what block l adds relative to the stream it reads. ~1/l deep in any residual stack
        at init (Pre-LN, Peri-LN: sigma^2_l ~ l b^2), whatever the absolute slope b^2; smaller with LNS."""
        return self.increments / self.variance[:-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variance"], d["increments"] = self.variance.tolist(), self.increments.tolist()
        return d


def mean_field_variance(cfg: ModelConfig, seq_len: int | None = None) -> MeanFieldPrediction:
    """Predict the variance after every block of a randomly initialized ``cfg`` stack fed uniform random tokens.

    Derivation (notebook 02). Track K[t, s] = E[x_t . x_s] / d, the stream's covariance between positions
    t and s (per feature). Embeddings: K_0 = s_e^2 (I + (1 - I)/V) (two positions share a token with
    probability 1/V). With q = init_std^2 * d (the variance a fan-in-d matrix gives a unit-RMS input):
      * RMSNorm maps K to the correlation matrix N = K / sqrt(diag K diag K^T); LNS multiplies it by 1/l;
      * attention at init is nearly uniform over the causal prefix (its logits have variance ~q^2, ~0.01),
        so with A[t, s] = 1/t (s <= t) the branch adds q^2 * A N A^T  (W_V then W_O, both fan-in d);
      * SwiGLU adds init_std^2 * d_ff * E[silu(g_t) silu(g_s)] * G[t, s] with G = q N the gate/up
        covariance (gate and up are independent; the expectation is done by quadrature);
      * the branch's weights are fresh and zero-mean, so the cross term stream x branch vanishes (rho = 0);
      * Post-LN adds the branch of the *raw* stream, then re-normalizes the sum;
      * Peri-LN normalizes the branch's output too: what it adds is the correlation matrix of the branch output,
        unit mean square per token (gain 1) whatever the weights, so it adds ~1 per sublayer, ~2 per block:
        linear growth with slope ~2, where Pre-LN's slope is ~q^2 + ... (~0.003 at d = 128). "~": the norm's eps
        (1e-6) is not negligible against a SwiGLU output of mean square ~1e-5 at d = 64 (slope 1.90 there, 1.97
        at d = 128);
      * ``scaled_init`` shrinks the output projections (o_proj, down_proj) to std init_std / sqrt(2L).
    The measured variance is taken over features, so the prediction carries the factor (1 - 1/d).
    Ignored, and small at init: softmax non-uniformity (~1%), finite-width fluctuations (seed spread).
    """
    cfg.validate()
    T = seq_len or cfg.seq_len
    if T < 1:
        raise ValueError(f"seq_len must be >= 1, got {T}")
    done = _mean_field(tuple(sorted(cfg.to_dict().items())), T)  # cached: a config always gives the same prediction
    return dataclasses.replace(done, variance=done.variance.copy(), increments=done.increments.copy())


@functools.lru_cache(maxsize=64)
def _mean_field(cfg_items: tuple, T: int) -> MeanFieldPrediction:
    cfg = ModelConfig(**dict(cfg_items))
    t0 = time.perf_counter()
    dt = torch.float64
    d, L, eps, sw = cfg.d_model, cfg.n_layers, cfg.norm_eps, cfg.init_std
    q = sw * sw * d
    eye = torch.eye(T, dtype=dt)
    K = sw * sw * (eye + (1 - eye) / cfg.vocab_size)
    A = torch.tril(torch.ones(T, T, dtype=dt))
    A = A / A.sum(1, keepdim=True)

    def normalize(k: torch.Tensor) -> torch.Tensor:
        g = (k.diagonal() + eps).sqrt()
        return k / (g[:, None] * g[None, :])

    # scaled_init (GPT-2/Megatron) draws the two output projections with std init_std / sqrt(2L)
    so = sw / math.sqrt(2 * L) if cfg.scaled_init else sw

    def attn(k: torch.Tensor) -> torch.Tensor:
        return q * (so * so * d) * (A @ k @ A.T)

    def ffn(k: torch.Tensor) -> torch.Tensor:
        gate = q * k
        return so * so * cfg.hidden * silu_product_expectation(gate) * gate

    var = [K.diagonal().mean().item()]
    for layer in range(1, L + 1):
        if layer <= cfg.n_post_blocks:
            K = normalize(K + attn(K))
            K = normalize(K + ffn(K))
        elif cfg.norm == "peri":
            K = K + normalize(attn(normalize(K)))
            K = K + normalize(ffn(normalize(K)))
        else:
            s = cfg.lns_factor(layer) ** 2
            K = K + attn(s * normalize(K))
            K = K + ffn(s * normalize(K))
        var.append(K.diagonal().mean().item())
    v = np.asarray(var) * (1 - 1 / d)
    return MeanFieldPrediction(cfg.norm, d, L, T, v, np.diff(v), time.perf_counter() - t0)


def asymptotic_block_variance(d_model: int, init_std: float = 0.02, ffn_hidden: int | None = None) -> float:
    """b^2 deep in a Pre-LN stack at init, once all positions are fully correlated (notebook 02).

    Then attention no longer averages anything away: b^2 = q^2 + init_std^2 d_ff E[silu(g)^2] q with
    q = init_std^2 d and g ~ N(0, q). This constant is the slope of Xiong et al.'s linear law for this model.
    """
    if d_model < 1 or init_std <= 0:
        raise ValueError(f"d_model must be >= 1 and init_std > 0, got {d_model}, {init_std}")
    hidden = ffn_hidden or 32 * math.ceil(8 * d_model / 3 / 32)  # the model's default, as in ModelConfig.hidden
    q = init_std**2 * d_model
    e = silu_product_expectation(torch.full((1, 1), q, dtype=torch.float64)).item()
    return q * q + init_std**2 * hidden * e * q


# ---------------------------------------------------------------------------------------------------------------
# Monte-Carlo measurement on the kit's model
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def norm_placement(model: CausalLM, norm: str, mix_alpha: float | None = None) -> Iterator[CausalLM]:
    """Temporarily give ``model``'s blocks another norm placement, keeping every weight (notebook 02).

    The kit's init does not depend on the norm, so the same random weights under pre/lns/post/mix/peri make a
    controlled comparison (and save building five 128-block models). Peri-LN's output norms (gain 1, no random
    draw, so ``build_model`` gives the same weights with or without them) are added for the duration when the
    model lacks them. Restores the original on exit.
    """
    _check_norm(norm)
    saved = (model.cfg, [(b.post, b.scale, b.peri) for b in model.blocks])
    cfg = ModelConfig(**{**model.cfg.to_dict(), "norm": norm,
                         **({} if mix_alpha is None else {"mix_alpha": mix_alpha})})
    added = []
    try:
        model.cfg = cfg
        for b in model.blocks:
            b.post, b.scale, b.peri = b.layer <= cfg.n_post_blocks, cfg.lns_factor(b.layer), norm == "peri"
            if b.peri and not hasattr(b, "ln_1_out"):
                w = b.ln_1.weight
                b.ln_1_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps, device=w.device, dtype=w.dtype)
                b.ln_2_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps, device=w.device, dtype=w.dtype)
                added.append(b)
        yield model
    finally:
        model.cfg = saved[0]
        for b, (post, scale, peri) in zip(model.blocks, saved[1]):
            b.post, b.scale, b.peri = post, scale, peri
        for b in added:
            del b.ln_1_out, b.ln_2_out


def random_tokens(vocab_size: int, batch: int, seq_len: int, seed: int) -> torch.Tensor:
    """Uniform random token ids from an explicit generator (the input the mean-field prediction assumes)."""
    return torch.randint(0, vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(seed))


@dataclass
class VarianceCurve:
    """Measured residual-stream variance after the embeddings (index 0) and every block, over seeds (notebook 02)."""

    norm: str
    d_model: int
    n_layers: int
    seq_len: int
    batch: int
    seeds: list[int]
    per_seed: np.ndarray  # (seeds, n_layers + 1)
    seconds: float
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.per_seed = np.asarray(self.per_seed, dtype=float)
        self.mean = self.per_seed.mean(0)
        self.std = self.per_seed.std(0)

    @property
    def growth_ratio(self) -> float:
        """Variance after the last block over variance after the first."""
        return float(self.mean[-1] / self.mean[1])

    def to_dict(self) -> dict:
        return {"norm": self.norm, "d_model": self.d_model, "n_layers": self.n_layers, "seq_len": self.seq_len,
                "batch": self.batch, "seeds": list(self.seeds), "seconds": self.seconds,
                "mean": self.mean.tolist(), "std": self.std.tolist()}


# Per-seed curves that measure_variance has produced, so that the explorer reuses the notebook's own measurement
# instead of building another 128-block model: {(config, seed, batch, seq_len): {norm: variance per block}}.
_MEASURED: dict[tuple, dict[str, np.ndarray]] = {}
_MEASURED_MAX = 32


def _memo_key(cfg: ModelConfig, seed: int, batch: int, seq_len: int) -> tuple:
    d = cfg.to_dict()
    d.pop("norm")  # one model serves every norm placement
    return (tuple(sorted(d.items())), seed, batch, seq_len)


def seeded_models(cfg: ModelConfig, seeds: Sequence[int]) -> Iterator[tuple[int, CausalLM]]:
    """``(seed, build_model(cfg, seed))`` for each seed in turn, as ONE model whose weights are re-drawn in place.

    The weights equal ``build_model``'s (CausalLM draws every one of them in ``reset_parameters`` from the seeded
    generator; tests/test_theory.py checks it), but the 128-block module tree is built only once.
    Use each model before asking for the next. Notebook 02.
    """
    model = None
    for seed in seeds:
        if model is None:
            model = build_model(cfg, seed=seed)
        else:
            model.reset_parameters(torch.Generator().manual_seed(seed))
            model.zero_grad(set_to_none=True)
        yield seed, model


def shared_blocks(cfg: ModelConfig, a: str, b: str) -> int:
    """How many leading blocks compute the same function under norm placements ``a`` and ``b`` (same weights).

    Mix-LN's first floor(mix_alpha L) blocks are Post-LN blocks; LNS's first block (factor 1/sqrt(1)) is a Pre-LN
    block; a Peri-LN block is like no other. The probes run the shared blocks once and branch (notebook 02).
    """
    ca, cb = (ModelConfig(**{**cfg.to_dict(), "norm": n}) for n in (a, b))

    def kind(c: ModelConfig, layer: int) -> tuple:
        post = layer <= c.n_post_blocks
        return post, c.lns_factor(layer), c.norm == "peri" and not post

    k = 0
    for layer in range(1, cfg.n_layers + 1):
        if kind(ca, layer) != kind(cb, layer):
            break
        k = layer
    return k


def _branch_plan(cfg: ModelConfig, norms: Sequence[str]) -> dict[str, tuple[str | None, int]]:
    """For each norm, the earlier norm of ``norms`` it shares the most leading blocks with: (norm, k) or (None, 0)."""
    plan: dict[str, tuple[str | None, int]] = {}
    for i, n in enumerate(norms):
        src, k = None, 0
        for m in norms[:i]:
            if (s := shared_blocks(cfg, m, n)) > k:
                src, k = m, s
        plan[n] = (src, k)
    return plan


def _run_stream(model: CausalLM, idx: torch.Tensor, stop: int, keep: set[int],
                start: tuple[int, torch.Tensor] | None = None, visit=None) -> dict[int, torch.Tensor]:
    """The residual stream through blocks k+1..``stop`` (``start = (k, state after block k)``, default: from the
    embeddings), as ``model.forward`` computes it; returns the states after the blocks in ``keep`` (0 = the
    embeddings) and calls ``visit(h)`` on each state it computes."""
    k, h = start if start is not None else (0, model.embed(idx))
    kept = {k: h} if k in keep else {}
    if start is None and visit is not None:
        visit(h)
    for block in model.blocks[k:stop]:
        h = block(h, model.rope)
        if visit is not None:
            visit(h)
        if block.layer in keep:
            kept[block.layer] = h
    return kept


def _feature_variance(h: torch.Tensor) -> float:
    return residual_variance_per_token(h[None], skip_first=False).item()


def measure_variance(
    cfg: ModelConfig,
    norms: Sequence[str] = NORMS,
    seeds: Sequence[int] = (0, 1, 2),
    batch: int = 8,
    seq_len: int | None = None,
    norm_seeds: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, VarianceCurve]:
    """Residual variance after every block of randomly initialized stacks, one curve per norm (notebook 02).

    Each seed gives one model (weights from ``seed`` as ``build_model`` draws them, tokens from
    ``seed + 10_000``) and runs it under every norm placement with the same weights (``norm_placement``).
    No gradients, fp32, small batch. The streams are the ones ``model(idx, output_hidden_states=True)``
    computes, without keeping them: only the variance after each block, and the one state where a later
    placement branches off (Mix-LN continues Post-LN's stream after its Post-LN blocks, ``shared_blocks``).
    At d = 128, 16 x 8 tokens, one seed costs ~0.5 s of weight drawing and ~0.25 s per 128-block forward on one
    core. Each seed's curves are remembered for ``explore_variance``.

    ``norm_seeds`` gives some norms their own seeds (default: ``seeds`` for every norm), e.g. more seeds for the
    norm whose curve a claim compares to a prediction at the 10% level than for curves that are only shown.
    """
    norms = list(norms)
    per_norm = {n: list(seeds) for n in norms}
    unknown = set(norm_seeds or {}) - set(norms)
    if unknown:
        raise ValueError(f"norm_seeds names norms that are not measured: {sorted(unknown)}; measured: {norms}")
    per_norm.update({n: list(s) for n, s in (norm_seeds or {}).items()})
    for n, s in per_norm.items():
        if not s:
            raise ValueError(f"no seeds for norm {n!r}: pass at least one, e.g. (0, 1, 2)")
    all_seeds = list(dict.fromkeys(s for n in norms for s in per_norm[n]))  # in order, each once
    T = _probe_args(cfg, all_seeds, norms, seq_len, batch)
    runs: dict[str, list[np.ndarray]] = {n: [] for n in norms}
    seconds = {n: 0.0 for n in norms}
    for seed, model in seeded_models(cfg, all_seeds):
        idx = random_tokens(cfg.vocab_size, batch, T, seed + 10_000)
        here = [n for n in norms if seed in per_norm[n]]
        plan = _branch_plan(cfg, here)
        branch: dict[tuple[str, int], tuple[torch.Tensor, list[float]]] = {}  # (norm, block) -> state, variances
        for n in here:
            t0 = time.perf_counter()
            src, k = plan[n]
            keep = {kk for m, kk in plan.values() if m == n}
            var = list(branch[(src, k)][1]) if src else []
            with norm_placement(model, n), torch.inference_mode():
                kept = _run_stream(model, idx, cfg.n_layers, keep, (k, branch[(src, k)][0]) if src else None,
                                   lambda h, out=var: out.append(_feature_variance(h)))
            for kk, h in kept.items():
                branch[(n, kk)] = (h, var[:kk + 1])
            runs[n].append(np.array(var))
            seconds[n] += time.perf_counter() - t0
            if len(_MEASURED) >= _MEASURED_MAX:
                _MEASURED.clear()
            _MEASURED.setdefault(_memo_key(cfg, seed, batch, T), {})[n] = runs[n][-1]
    return {n: VarianceCurve(n, cfg.d_model, cfg.n_layers, T, batch, per_norm[n], np.stack(runs[n]), seconds[n])
            for n in norms}


# ---------------------------------------------------------------------------------------------------------------
# Block Jacobians and gradient norms at init
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class BlockProbe:
    """A per-block quantity measured on random stacks: ``values[seed, i]`` at block ``blocks[i]`` (notebook 02)."""

    name: str
    norm: str
    d_model: int
    blocks: list[int]
    values: np.ndarray
    seconds: float

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.values).mean(0)

    def to_dict(self) -> dict:
        return {"name": self.name, "norm": self.norm, "d_model": self.d_model, "blocks": list(self.blocks),
                "values": np.asarray(self.values).tolist(), "seconds": self.seconds}


def log_spaced_blocks(n_layers: int, count: int = 16) -> list[int]:
    """About ``count`` block numbers from 1 to n_layers, evenly spaced on a log axis (always 1 and L)."""
    _check_depth(n_layers)
    return sorted({int(round(x)) for x in np.geomspace(1, n_layers, max(2, count))})


def _block_jacobian(block, h: torch.Tensor, rope, token: int) -> torch.Tensor:
    # Row i of J = d y_t[i] / d x_t: run d copies of the sequence in one batch, copy i carries the
    # derivative of output feature i, so one backward pass gives the whole d x d Jacobian.
    d = h.shape[-1]
    H = h.detach().expand(d, -1, -1)
    x = h[0, token].detach().repeat(d, 1).requires_grad_(True)
    T = h.shape[1]
    t = token % T
    inp = torch.cat([H[:, :t], x[:, None], H[:, t + 1:]], dim=1)
    y = block(inp, rope)[:, t]
    (J,) = torch.autograd.grad(y.diagonal().sum(), x)
    return J


class _NoBranch(nn.Module):
    """A branch that adds nothing (attention or MLP switched off): what is left of a block is its identity path."""

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        return torch.zeros_like(x)


@contextlib.contextmanager
def branches_off(block) -> Iterator:
    """Temporarily replace a block's attention and MLP by branches that add nothing (notebook 02).

    What remains is the block's *identity path*: the residual connection, and for Post-LN the two norms that
    re-normalize the stream. Pre-LN, LNS and Peri-LN blocks become exactly the identity; a Post-LN block becomes
    x -> N(N(x)), whose Jacobian at a unit-RMS stream is the projection I - x x^T / |x|^2 (rank d - 1).
    """
    attn, mlp = block.attn, block.mlp
    block.attn, block.mlp = _NoBranch(), _NoBranch()
    try:
        yield block
    finally:
        block.attn, block.mlp = attn, mlp


@dataclass
class BlockJacobians:
    """Three views of each block's Jacobian J = dy_t/dx_t at init, per norm (notebook 02).

    With J_path the Jacobian of the block's identity path (``branches_off``: I for Pre-LN, LNS, Peri-LN and
    Mix-LN's Pre-LN blocks; the norms' projection for Post-LN blocks):

    * ``branch`` = ||J - J_path||_F / ||J_path||_F: what the branches contribute, relative to the path they are
      added to. The curse's quantity: near 0 means the block passes its input on unchanged. For a residual block
      it is ||J - I||_F / sqrt(d).
    * ``path`` = ||J_path - I||_F / ||I||_F: the identity path's own distance from I. 0 for residual blocks; for a
      Post-LN block reading a unit-RMS stream it is 1/sqrt(d) (the norm projects out the radial direction, one of
      d directions), whatever the branches do; for Post-LN's first block, which reads the tiny embeddings, it is
      ~1/rms(embedding) (~50 at init_std 0.02).
    * ``total`` = ||J - I||_F / ||I||_F, the plain distance from the identity, mixing the two (for Post-LN it
      reads ~1/sqrt(d) because of the projection, not because the branches work).
    """

    branch: dict[str, BlockProbe]
    path: dict[str, BlockProbe]
    total: dict[str, BlockProbe]

    def to_dict(self) -> dict:
        return {k: {n: p.to_dict() for n, p in getattr(self, k).items()} for k in ("branch", "path", "total")}


def block_jacobians(
    cfg: ModelConfig,
    norms: Sequence[str] = NORMS,
    seeds: Sequence[int] = (0,),
    blocks: Sequence[int] | None = None,
    seq_len: int = 8,
    token: int = -1,
) -> BlockJacobians:
    """Each probed block's Jacobian at init against its identity path, per norm (``BlockJacobians``; notebook 02).

    y = block(x) at token ``token`` (the last by default), x the block's input at the same token, the other
    positions held at their values from the forward pass. Pre-LN: J = I + branch'(N) N'(x), and N'(x) ~ 1/sigma_x,
    so ``branch`` falls as the stream grows; LNS multiplies the branch term by ~1/sqrt(l) more. Use a small width
    (d <= 128): the cost is one batch of d sequences per block (two for Post-LN blocks, whose identity path is not
    I). ``blocks``: 1-based block numbers (default: all). Each seed's model (``seeded_models``) is probed under
    every norm placement (same weights, ``norm_placement``); the stream is run only up to the deepest probed block,
    and Mix-LN's branches off Post-LN's (``shared_blocks``).
    """
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    for n in norms:
        _check_norm(n)
    blocks = list(blocks) if blocks is not None else list(range(1, cfg.n_layers + 1))
    if not blocks or any(not 1 <= b <= cfg.n_layers for b in blocks):
        raise ValueError(f"blocks must lie in 1..{cfg.n_layers}, got {blocks}")
    if seq_len > cfg.seq_len:
        raise ValueError(f"seq_len={seq_len} exceeds cfg.seq_len={cfg.seq_len}")
    eye = torch.eye(cfg.d_model)
    norms = list(norms)
    plan = _branch_plan(cfg, norms)
    inputs = {b - 1 for b in blocks}  # the stream is needed only where a probed block reads it
    vals: dict[str, dict[str, list[list[float]]]] = {k: {n: [] for n in norms} for k in ("branch", "path", "total")}
    seconds = {n: 0.0 for n in norms}
    for seed, model in seeded_models(cfg, seeds):
        idx = random_tokens(cfg.vocab_size, 1, seq_len, seed + 10_000)
        states: dict[str, dict[int, torch.Tensor]] = {}
        for n in norms:
            t0 = time.perf_counter()
            src, k = plan[n]
            keep = inputs | {kk for m, kk in plan.values() if m == n}
            rows = {m: [] for m in vals}
            with norm_placement(model, n):
                with torch.no_grad():  # (not inference_mode: the Jacobians differentiate through these states)
                    states[n] = _run_stream(model, idx, max(keep), keep, (k, states[src][k]) if src else None)
                    if src:  # the shared blocks' states are the source placement's
                        states[n].update({i: h for i, h in states[src].items() if i <= k})
                for b in blocks:
                    block, h = model.blocks[b - 1], states[n][b - 1]
                    J = _block_jacobian(block, h, model.rope, token)
                    if block.post:
                        with branches_off(block):
                            J_path = _block_jacobian(block, h, model.rope, token)
                    else:  # residual blocks: the identity path is exactly the identity
                        J_path = eye
                    rows["branch"].append(((J - J_path).norm() / J_path.norm()).item())
                    rows["path"].append(((J_path - eye).norm() / eye.norm()).item())
                    rows["total"].append(((J - eye).norm() / eye.norm()).item())
            for m in vals:
                vals[m][n].append(rows[m])
            seconds[n] += time.perf_counter() - t0
    names = {"branch": "branch_jacobian", "path": "path_jacobian", "total": "identity_distance"}
    return BlockJacobians(**{m: {n: BlockProbe(names[m], n, cfg.d_model, blocks, np.array(vals[m][n]), seconds[n])
                                 for n in norms} for m in vals})


@dataclass
class BranchScaling:
    """``lns_branch_scaling``'s result: per probed block, the variance ratio of each branch's output with and
    without the LNS factor, on the same input (notebook 02)."""

    attention: BlockProbe
    mlp: BlockProbe

    def slopes(self) -> dict[str, float]:
        """Log-log slope of each ratio against the block number: ~-1 for attention, ~-2 for the SwiGLU MLP."""
        return {name: float(np.polyfit(np.log(p.blocks), np.log(p.mean), 1)[0])
                for name, p in (("attention", self.attention), ("mlp", self.mlp))}


def lns_branch_scaling(cfg: ModelConfig, seeds: Sequence[int] = (0,), blocks: Sequence[int] | None = None,
                       batch: int = 4, seq_len: int | None = None, lns_power: float = 0.5) -> BranchScaling:
    """What LNS's factor does to each branch of a random-init stack: Var(branch(s N(x))) / Var(branch(N(x))) with
    s = l^-lns_power (1/sqrt(l) for LNS), per block, on the stream an LNS stack computes (notebook 02).

    Attention's value path is linear in its input and at init attends almost uniformly (its logits shrink by
    s^2 too, which only flattens it further), so its ratio is ~s^2 = 1/l. SwiGLU's gate and up both read the
    scaled input and silu(g) ~ g/2 for small g, so its output is ~s^2 in amplitude and its ratio ~s^4 = 1/l^2.
    ``lns_power=0`` (no factor) gives ratios of exactly 1: the flip the tests use.
    """
    T = _probe_args(cfg, seeds, ("lns",), seq_len, batch)
    blocks = list(blocks) if blocks is not None else list(range(1, cfg.n_layers + 1))
    if not blocks or any(not 1 <= b <= cfg.n_layers for b in blocks):
        raise ValueError(f"blocks must lie in 1..{cfg.n_layers}, got {blocks}")
    att, mlp = [], []
    t0 = time.perf_counter()
    for seed, model in seeded_models(cfg, seeds):
        idx = random_tokens(cfg.vocab_size, batch, T, seed + 10_000)
        ra, rm = [], []
        with norm_placement(model, "lns"), torch.inference_mode():
            states = _run_stream(model, idx, max(blocks), {b - 1 for b in blocks})
            for b in blocks:
                block, h = model.blocks[b - 1], states[b - 1]
                s = float(b) ** -lns_power
                n1 = block.ln_1(h)
                a_s, a_1 = block.attn(s * n1, model.rope), block.attn(n1, model.rope)
                h2 = h + a_s  # the MLP reads the stream after this block's own (scaled) attention, as in forward
                n2 = block.ln_2(h2)
                m_s, m_1 = block.mlp(s * n2), block.mlp(n2)
                ra.append(_feature_variance(a_s) / _feature_variance(a_1))
                rm.append(_feature_variance(m_s) / _feature_variance(m_1))
        att.append(ra)
        mlp.append(rm)
    sec = time.perf_counter() - t0
    return BranchScaling(BlockProbe("lns_attention_variance_ratio", "lns", cfg.d_model, blocks, np.array(att), sec),
                         BlockProbe("lns_mlp_variance_ratio", "lns", cfg.d_model, blocks, np.array(mlp), sec))


def gradient_norms_by_norm(cfg: ModelConfig, norms: Sequence[str] = NORMS, seeds: Sequence[int] = (0,),
                           batch: int = 4, seq_len: int | None = None) -> dict[str, BlockProbe]:
    """||grad of the loss w.r.t. block l's weights|| at init, per block and norm, on random tokens and targets.

    Each seed's model (``seeded_models``) runs under every norm placement (same weights). Notebook 02.
    """
    T = _probe_args(cfg, seeds, norms, seq_len, batch)
    vals: dict[str, list[list[float]]] = {n: [] for n in norms}
    seconds = {n: 0.0 for n in norms}
    for seed, model in seeded_models(cfg, seeds):
        idx = random_tokens(cfg.vocab_size, batch, T + 1, seed + 10_000)
        for n in norms:
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            with norm_placement(model, n):
                model(idx[:, :-1], targets=idx[:, 1:]).loss.backward()
            vals[n].append([math.sqrt(sum(float(p.grad.pow(2).sum()) for p in b.parameters())) for b in model.blocks])
            seconds[n] += time.perf_counter() - t0
    blocks = list(range(1, cfg.n_layers + 1))
    return {n: BlockProbe("gradient_norm", n, cfg.d_model, blocks, np.array(vals[n]), seconds[n]) for n in norms}


def gradient_norms(cfg: ModelConfig, seeds: Sequence[int] = (0,), batch: int = 4, seq_len: int | None = None) -> BlockProbe:
    """``gradient_norms_by_norm`` for ``cfg.norm`` alone (notebook 02)."""
    return gradient_norms_by_norm(cfg, (cfg.norm,), seeds, batch, seq_len)[cfg.norm]


# ---------------------------------------------------------------------------------------------------------------
# Claim conditions (the notebook asserts these; tests flip their inputs)
# ---------------------------------------------------------------------------------------------------------------


def linear_fit(y: Sequence[float], x: Sequence[float] | None = None) -> tuple[float, float, float]:
    """Least-squares line through (x, y): slope, intercept and R^2 (R^2 = 0 when y is constant)."""
    y = np.asarray(y, dtype=float)
    x = np.arange(1, len(y) + 1, dtype=float) if x is None else np.asarray(x, dtype=float)
    if len(y) < 3 or len(x) != len(y):
        raise ValueError(f"need >= 3 points of equal length for a line fit, got {len(x)} x and {len(y)} y")
    slope, intercept = np.polyfit(x, y, 1)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - (slope * x + intercept)) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return float(slope), float(intercept), r2


def check_linear_growth(variance: Sequence[float], min_r2: float = 0.99) -> Check:
    """Variance after blocks 1..L grows linearly: line fit R^2 > ``min_r2`` with a positive slope that at least
    doubles the variance over the stack. ``variance`` is indexed like ``VarianceCurve.mean`` (index 0 = embeddings)."""
    v = np.asarray(variance, dtype=float)[1:]
    slope, intercept, r2 = linear_fit(v)
    grows = slope > 0 and v[-1] > 2 * v[0]
    return Check.of(bool(r2 > min_r2 and grows), r2, f"R^2 = {r2:.4f}, slope = {slope:.3g} per block, "
                 f"last/first = {v[-1] / v[0]:.3g}")


def check_matches(measured: Sequence[float], predicted: Sequence[float], rtol: float = 0.10) -> Check:
    """|measured / predicted - 1| <= rtol after every block (index 0, the embeddings, is skipped)."""
    m, p = np.asarray(measured, dtype=float)[1:], np.asarray(predicted, dtype=float)[1:]
    if m.shape != p.shape:
        raise ValueError(f"measured and predicted cover different depths: {m.shape} vs {p.shape}")
    dev = np.abs(m / p - 1.0)
    worst = int(dev.argmax())
    return Check.of(bool(dev.max() <= rtol), float(dev.max()),
                 f"largest deviation {dev.max():.1%} after block {worst + 1}; mean {dev.mean():.1%}")


def check_growth_ratio_below(small: VarianceCurve | Sequence[float], large: VarianceCurve | Sequence[float],
                             factor: float = 0.1) -> Check:
    """growth(small) < factor * growth(large), growth = variance after the last block / after the first."""
    def ratio(c) -> float:
        v = c.mean if isinstance(c, VarianceCurve) else np.asarray(c, dtype=float)
        return float(v[-1] / v[1])
    rs, rl = ratio(small), ratio(large)
    return Check.of(bool(rs < factor * rl), rs / rl, f"growth {rs:.3g} vs {rl:.3g} (ratio {rs / rl:.3g}, bound {factor})")


def check_flat(variance: Sequence[float], tol: float = 0.05) -> Check:
    """Variance after blocks 1..L is flat: its largest value is at most (1 + ``tol``) times its smallest."""
    v = np.asarray(variance, dtype=float)[1:]
    spread = float(v.max() / v.min() - 1.0) if v.min() > 0 else math.inf
    return Check.of(bool(spread <= tol), spread, f"max/min - 1 = {spread:.2%} over blocks 1..L (tolerance {tol:.0%})")


def check_decreasing(blocks: Sequence[int], values: Sequence[float], max_rank_corr: float = -0.8,
                     max_ratio: float = 0.5) -> Check:
    """``values`` fall with depth: rank correlation with block number <= ``max_rank_corr`` and the mean over the
    deepest quarter of the probed blocks below ``max_ratio`` times the mean over the shallowest quarter."""
    v = np.asarray(values, dtype=float)
    if len(v) < 4:
        raise ValueError(f"need >= 4 probed blocks to judge a trend, got {len(v)}")
    q = max(1, len(v) // 4)
    rc, ratio = rank_correlation(blocks, v), float(v[-q:].mean() / v[:q].mean())
    return Check.of(bool(rc <= max_rank_corr and ratio < max_ratio), rc,
                 f"rank correlation with depth {rc:.2f}, deepest/shallowest quarter {ratio:.3g}")


# ---------------------------------------------------------------------------------------------------------------
# The notebook's explorer: everything one panel shows, for one setting of the controls
# ---------------------------------------------------------------------------------------------------------------


def _cached_measure(depth: int, width: int, seq_len: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    cfg = ModelConfig(d_model=width, n_layers=depth, n_heads=4, seq_len=seq_len)
    key = _memo_key(cfg, seed, batch, seq_len)
    if not set(NORMS) <= set(_MEASURED.get(key, {})):
        measure_variance(cfg, seeds=(seed,), batch=batch, seq_len=seq_len)
    return _MEASURED[key]


def _cached_mean_field(norm: str, depth: int, width: int, seq_len: int) -> np.ndarray:
    cfg = ModelConfig(d_model=width, n_layers=depth, n_heads=4, seq_len=seq_len, norm=norm)
    return mean_field_variance(cfg, seq_len).variance


def explore_variance(depth: int = 128, width: int = 128, norm: str = "pre", rho: float = 0.0, seq_len: int = 32,
                     batch: int = 4, seed: int = 0, measure: bool = True) -> dict[str, np.ndarray | str | float]:
    """The curves of notebook 02's depth / width / norm / rho explorer, in the model's absolute units.

    ``measured``: one random stack of the kit's model at init (rho is 0 there by construction);
    ``mean_field``: ``mean_field_variance`` for the same stack; ``linear``: Xiong's sigma_0^2 + l b^2 with b^2
    from ``asymptotic_block_variance`` (Peri-LN: the mean-field's deep increment, ~2 (1 - 1/d): its two unit-RMS
    branch outputs); ``rho``: the correlated recursion with the chosen rho and the same
    sigma_0^2 and b^2 — what the same stack would do if training had correlated branch and stream.
    Measurements and predictions are cached (and a measurement ``measure_variance`` already made with the same
    config, seed and batch is reused), so moving only the rho slider is instant.
    """
    _check_norm(norm)
    _check_depth(depth)
    if width % 4 or (width // 4) % 2:
        raise ValueError(f"width must be a multiple of 8 (4 heads of even width), got {width}")
    s0 = 0.02**2 * (1 - 1 / width)
    mean_field = np.array(_cached_mean_field(norm, depth, width, seq_len))
    # what one block adds deep in the stack at init: Peri-LN's two (nearly) unit-RMS outputs, the others' derived b^2
    b_sq = float(mean_field[-1] - mean_field[-2]) if norm == "peri" else asymptotic_block_variance(width)
    out: dict[str, np.ndarray | str | float] = {
        "norm": norm, "rho": rho, "width": width, "b_sq": b_sq,
        "depth": np.arange(depth + 1),
        "mean_field": mean_field,
        "linear": correlated_recursion(depth, 0.0, norm, s0, b_sq),
        "rho_curve": correlated_recursion(depth, rho, norm, s0, b_sq),
    }
    if measure:
        out["measured"] = np.array(_cached_measure(depth, width, seq_len, batch, seed)[norm])
    return out
