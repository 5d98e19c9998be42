"""Checkers for notebook 02 (why Pre-LN variance grows). Solutions: notebooks/solutions/02_why_variance_grows.ipynb.

2.1 ``check_pre_ln_block``: write the Pre-LN block's forward (given its norms, attention and MLP);
2.2 ``check_lns_block``: turn it into LayerNorm Scaling; ``plot_your_stack`` stacks your blocks over a random model;
2.3 ``check_growth_exponent``: iterate the correlated recursion with b_l = l^-p, return the log-log slope;
2.4 ``check_power_reading``: read off which p gives linear growth and from which p on it stops growing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...model import Block, ModelConfig
from . import attempt, close, correct, diagnose, wrong

_CFG = ModelConfig(vocab_size=16, d_model=32, n_layers=8, n_heads=4, seq_len=12, norm="pre")


def _case(layer: int, seed: int = 0) -> tuple[Block, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A Pre-LN block at 1-based position ``layer`` with random weights and gains, and an input."""
    from ...model import rope_cache

    g = torch.Generator().manual_seed(seed)
    block = Block(_CFG, layer)
    with torch.no_grad():
        for p in block.parameters():  # gains away from 1, so that ln_1 and ln_2 differ
            p.copy_(torch.rand(p.shape, generator=g) + 0.5 if p.ndim == 1 else torch.randn(p.shape, generator=g) * 0.1)
    x = torch.randn(2, _CFG.seq_len, _CFG.d_model, generator=g) * 3.0
    return block.eval(), x, rope_cache(_CFG.seq_len, _CFG.head_dim, _CFG.rope_theta)


# ------------------------------------------------------------------------------------ 2.1 the Pre-LN block


def _pre_ln_mistakes(block, x, rope) -> list[tuple[torch.Tensor, str, str]]:
    a, m, n1, n2 = block.attn, block.mlp, block.ln_1, block.ln_2
    h = x + a(n1(x), rope)  # the right first half
    post = n1(x + a(x, rope))  # Post-LN's first half
    both = n1(x + a(n1(x), rope))  # branch norm and stream norm
    return [
        (n2(post + m(post)), "this is Post-LN: the norm comes after the add",
         "Pre-LN normalizes what each branch reads, never the stream: x = x + attn(ln_1(x), rope)"),
        (n2(both + m(n2(both))), "you normalized the stream after each add (Post-LN's move) on top of the branch norms",
         "nothing normalizes the stream itself in Pre-LN: the add is the last step of each half"),
        (x + a(x, rope) + m(x + a(x, rope)), "no norm: the branches read the raw stream",
         "each branch reads a normalized copy: attn(ln_1(x), rope), then mlp(ln_2(...))"),
        (a(n1(x), rope) + m(n2(a(n1(x), rope))), "the attention half has no residual connection",
         "add the branch to the stream: x = x + attn(ln_1(x), rope)"),
        (m(n2(h)), "the MLP half has no residual connection", "add the MLP's output to the stream: x = x + mlp(ln_2(x))"),
        (m(n2(a(n1(x), rope))), "no residual connection in either half",
         "a residual block adds its branch to the stream: x = x + branch(norm(x))"),
        (h + m(n1(h)), "the same norm (ln_1) is used twice",
         "each half has its own norm with its own gain: ln_1 before attention, ln_2 before the MLP"),
        (x + a(n2(x), rope) + m(n2(x + a(n2(x), rope))), "the same norm (ln_2) is used twice",
         "each half has its own norm with its own gain: ln_1 before attention, ln_2 before the MLP"),
        (x + a(n2(x), rope) + m(n1(x + a(n2(x), rope))), "the two norms are swapped",
         "ln_1 belongs to attention (the first half), ln_2 to the MLP"),
        (h + m(n2(x)), "the MLP reads the block's input x instead of the stream after attention",
         "that is a parallel block (GPT-J); here the MLP reads x after attention's add: x = x + mlp(ln_2(x))"),
        (h, "the MLP half is missing", "after attention, add the MLP: x = x + mlp(ln_2(x))"),
    ]


def check_pre_ln_block(pre_ln_block) -> object:
    """Exercise 2.1: ``pre_ln_block(block, x, rope)`` = a Pre-LN block's forward, compared with the kit's ``Block``
    (norm="pre") on the same weights."""
    ex = "2.1"
    block, x, rope = _case(3, seed=1)
    with torch.no_grad():
        out, stop = attempt(ex, pre_ln_block, block, x, rope)
        if stop:
            return stop
        return diagnose(ex, out, block(x, rope), _pre_ln_mistakes(block, x, rope),
                        "the same output as the kit's Block on the same weights",
                        "x = x + block.attn(block.ln_1(x), rope); then x = x + block.mlp(block.ln_2(x)); return x")


# ------------------------------------------------------------------------------------ 2.2 LayerNorm Scaling


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
    """Exercise 2.2: ``lns_block(block, x, rope)`` = the Pre-LN block with LayerNorm Scaling (block.layer is 1-based)."""
    ex = "2.2"
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


def _kit_block(block, x, rope):
    return block(x, rope)


def _kit_lns_block(block, x, rope):
    s = 1 / math.sqrt(block.layer)
    return _lns(block, x, rope, s, s)


def stack_variance(block_fns: dict, depth: int = 128, width: int = 128, batch: int = 8, seq_len: int = 32,
                   seed: int = 0) -> dict[str, np.ndarray | None]:
    """Run each ``block_fn(block, x, rope)`` over every block of one random Pre-LN stack of the kit's model (the same
    weights and tokens for all) and return the per-token variance after the embeddings and each block; None for a
    function that is blank, raises, or returns something of the wrong shape."""
    from ...analysis import residual_variance_per_token
    from ...model import build_model
    from ...theory import random_tokens

    model = build_model(ModelConfig(d_model=width, n_layers=depth, n_heads=4, seq_len=seq_len), seed=seed)
    idx = random_tokens(model.cfg.vocab_size, batch, seq_len, seed + 10_000)
    out: dict[str, np.ndarray | None] = {}
    with torch.no_grad():
        x0 = model.embed(idx)
        for name, fn in block_fns.items():
            h, var = x0, [residual_variance_per_token(x0[None], skip_first=False).item()]
            for block in model.blocks:
                try:
                    h = fn(block, h, model.rope)
                except Exception:  # the attendee's code: the curve is left out, the checker names the error
                    h = None
                if not isinstance(h, torch.Tensor) or h.shape != x0.shape:
                    var = None
                    break
                var.append(residual_variance_per_token(h[None], skip_first=False).item())
            out[name] = None if var is None else np.array(var)
    return out


def plot_your_stack(pre_ln_block=None, lns_block=None, **stack) -> None:
    """Notebook 02, after exercise 2.2: your Pre-LN and LNS blocks stacked over one random model (solid), the kit's
    blocks on the same weights (dashed), variance against depth on a linear axis; one line per curve."""
    from .. import plots

    fns = {"your Pre-LN block": ("pre", pre_ln_block), "your LNS block": ("lns", lns_block),
           "kit's Pre-LN block": ("pre", _kit_block), "kit's LNS block": ("lns", _kit_lns_block)}
    curves = stack_variance({k: f for k, (_, f) in fns.items() if f is not None}, **stack)
    fig, (ax, zoom) = plots.subplots(1, 2, figsize=(12, 4.0))
    for name, (norm, _) in fns.items():
        v = curves.get(name)
        if v is None:
            print(f"{name}: not ready yet (blank, an error, or a wrong shape) - left out of the figure")
            continue
        kit = name.startswith("kit")
        style = {"color": plots.NORM_COLORS[norm], "ls": "--" if kit else "-", "lw": 1.2 if kit else 2.5,
                 "alpha": 1.0 if kit else 0.6, "label": name}
        for a in (ax, zoom) if norm == "lns" else (ax,):
            a.plot(np.arange(len(v)), v, **style)
        print(f"{name}: variance {v[1]:.2g} after block 1, {v[-1]:.2g} after block {len(v) - 1} "
              f"(×{v[-1] / v[1]:.3g})")
    plots._axes(ax, "block ℓ (0 = embeddings)", "residual variance (linear axis)", "Pre-LN and LNS",
                legend={"fontsize": 8})
    plots._axes(zoom, "block ℓ (0 = embeddings)", "residual variance (linear axis)", "LNS alone, zoomed in")
    fig.suptitle("Your blocks stacked over a random model (the kit's blocks dashed, on the same weights and tokens)")
    plots.show(fig)


# ------------------------------------------------------------------------------------ 2.3 other powers p


def _exponent(p: float, rho: float, L: int = 1024, cross: float = 2.0, b_power: float | None = None,
              of_sigma: bool = False, log_base: float = 2.0, use_L: bool = True) -> float:
    """The log-log slope of sigma^2 between l = L/2 and L for sigma^2_{l+1} = sigma^2_l + b_l^2 + cross rho sigma_l b_l,
    b_l = l^-p, sigma^2_0 = 1; the keywords make the classic mistakes."""
    L = L if use_L else 1024
    s2, hist = 1.0, [1.0]
    for layer in range(1, L + 1):
        b = layer ** -(p if b_power is None else b_power)
        s2 = s2 + b * b + cross * rho * math.sqrt(s2) * b
        hist.append(s2)
    ratio = hist[L] / hist[L // 2]
    return math.log(math.sqrt(ratio) if of_sigma else ratio) / math.log(log_base)


_POWER_CASES = ((0.0, 1.0, 1024), (0.5, 1.0, 1024), (1.0, 1.0, 1024), (0.5, 0.25, 1024), (0.5, 0.0, 1024),
                (0.5, 0.25, 64))


def check_growth_exponent(growth_exponent) -> object:
    """Exercise 2.3: ``growth_exponent(p, rho, L=1024)`` = the log-log slope of sigma^2 between l = L/2 and L of the
    correlated recursion with b_l = l^-p (sigma^2_0 = 1)."""
    ex = "2.3"
    outs = []
    for p, rho, L in _POWER_CASES:
        out, stop = attempt(ex, growth_exponent, p, rho, L)
        if stop:
            return stop
        outs.append(out)

    def each(**kw) -> list[float]:
        return [_exponent(p, rho, L, **kw) for p, rho, L in _POWER_CASES]

    mistakes = [
        (each(cross=1.0), "the cross term is ρσb: that is the paper's ρ (Eqs. 21–23), twice a correlation",
         "with ρ a correlation coefficient, Var(X + Y) = σ² + b² + 2ρσb"),
        (each(cross=0.0), "no cross term: every ρ gives the ρ = 0 answer",
         "add 2ρ·σ·b to each step (σ = sqrt(σ²))"),
        ([_exponent(p, rho, L, b_power=p / 2) for p, rho, L in _POWER_CASES],
         "ℓ^−p multiplies b² here: it should multiply b (so b² gets ℓ^−2p)", "b = l ** -p, then add b * b"),
        ([_exponent(0.0, rho, L) for _, rho, L in _POWER_CASES], "the power p is never used: every b is 1",
         "b = l ** -p for step l = 1, 2, ..."),
        (each(of_sigma=True), "that is the slope of σ, not of σ² (half of it)",
         "take the log of σ² at ℓ = L and ℓ = L/2"),
        (each(log_base=math.e), "the slope is not divided by log 2",
         "slope = log(σ²_L / σ²_{L/2}) / log(L / (L/2)) = log2(σ²_L / σ²_{L/2})"),
        (each(use_L=False), "L is ignored: your slope is always taken at ℓ = 512 → 1024",
         "iterate to step L and compare σ² at L and L/2"),
    ]
    return diagnose(ex, outs, each(), mistakes, "slopes within 0.01 for six (p, ρ, L)",
                    "s2 = 1; for l in 1..L: b = l**-p; s2 += b*b + 2*rho*sqrt(s2)*b (keep s2 at l = L/2 and L); "
                    "return log2(s2_L / s2_half)", atol=0.01, rtol=0.0)


def exponent_table(growth_exponent, powers=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)) -> None:
    """Notebook 02: the log-log slope of sigma^2 for each power p, from your ``growth_exponent`` if it passes 2.3 (else
    the kit's), at rho = 0, 0.25, 1 (l 512 -> 1024) and rho = 1 further out (l 8192 -> 16384)."""
    ok = check_growth_exponent(growth_exponent).ok
    fn = growth_exponent if ok else (lambda p, rho, L=1024: _exponent(p, rho, L))
    print(("your growth_exponent" if ok else "the kit's growth_exponent (yours does not pass 2.3 yet)") +
          ": slope of σ² on a log-log plot")
    print(f"{'p':>5} {'ρ = 0':>9} {'ρ = 0.25':>9} {'ρ = 1':>9} {'ρ = 1, far':>11} {'2 − 2p':>8}")
    for p in powers:
        row = [fn(p, rho, 1024) for rho in (0.0, 0.25, 1.0)] + [fn(p, 1.0, 16384)]
        print(f"{p:>5} " + " ".join(f"{v:9.2f}" for v in row[:3]) + f" {row[3]:11.2f} {max(0.0, 2 - 2 * p):8.1f}")
    print("(ℓ 512 → 1024; 'far': ℓ 8192 → 16384; 2 − 2p: the deep-stack slope for ρ > 0, 0 once p ≥ 1)")


# ------------------------------------------------------------------------------------ 2.4 read the table


def check_power_reading(my_reading) -> object:
    """Exercise 2.4: ``my_reading()`` returns (p_linear, p_flat) for a fully correlated stream (rho = 1)."""
    ex = "2.4"
    out, stop = attempt(ex, my_reading)
    if stop:
        return stop
    try:
        p_lin, p_flat = (float(v) for v in out)
    except (TypeError, ValueError):
        return wrong(ex, f"expected two numbers (p_linear, p_flat), got {out!r}", "return p_linear, p_flat")
    slope = {p: max(0.0, 2 - 2 * p) for p in (p_lin, p_flat)}
    if close((p_lin, p_flat), (0.5, 1.0), atol=1e-6):
        return correct(ex, "p = 1/2 keeps σ² linear at ρ = 1 (the paper's 1/√ℓ); from p = 1 on it stops growing "
                           "like a power of ℓ (2 − 2p = 0)")
    if close((p_lin, p_flat), (0.0, 0.5), atol=1e-6):
        return wrong(ex, "that is the ρ = 0 column (a stream at init)",
                     "the question is about a correlated stream, ρ = 1: there Pre-LN (p = 0) grows like ℓ²")
    if close((p_lin, p_flat), (1.0, 0.5), atol=1e-6):
        return wrong(ex, "the two answers are swapped", "p = 1/2 gives slope 1; p = 1 gives 2 − 2p = 0")
    if close(p_lin, 0.0, atol=1e-6):
        return wrong(ex, "p = 0 is Pre-LN: with ρ = 1 its σ² grows like ℓ² (slope 2), not linearly",
                     "look for slope 1 in the ρ = 1 column")
    if not close(p_lin, 0.5, atol=1e-6):
        return wrong(ex, f"at p = {p_lin:g} the ρ = 1 slope tends to {slope[p_lin]:g}, not 1",
                     "look for slope 1 in the ρ = 1 column (2 − 2p = 1)")
    if p_flat > 1.0:
        return wrong(ex, f"p = {p_flat:g} is flat, but so is p = 1 already",
                     "at p = 1, 2 − 2p = 0: σ grows like ln ℓ, slower than any power of ℓ, and its slope keeps "
                     "falling as ℓ grows (compare the 'far' column)")
    return wrong(ex, f"at p = {p_flat:g} σ² still grows like ℓ^{slope[p_flat]:g}",
                 f"its ρ = 1 slope falls too, but heads to 2 − 2p = {slope[p_flat]:g} > 0 (the 'far' column); "
                 "flat means a slope that heads to 0 as ℓ grows, that is 2 − 2p = 0")
