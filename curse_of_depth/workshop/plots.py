"""One figure style for the whole kit, and the notebooks' figures: data in (dicts, lists, ``stats``
objects), a figure out, never a model. Each function names the notebook that draws it.
"""

from __future__ import annotations

import contextlib
import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ..model import NORM_LABELS

NORM_COLORS = {"pre": "#d62728", "lns": "#1f77b4", "post": "#2ca02c", "mix": "#9467bd",
               "peri": "#ff7f0e"}
UNIGRAM_NATS = 3.30  # val loss of the train split's unigram model (docs/evidence/shakespeare_unigram.md)
_BASE = {"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (7.5, 4.0), "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
         "legend.frameon": False, "font.size": 10}
_PROJECTOR = {"font.size": 15, "figure.figsize": (11, 6), "lines.linewidth": 2.5, "figure.dpi": 110}
# The projector view for a whole series: set COD_PRESENT=1 before starting Jupyter and every
# notebook's figures are drawn large (read when a kernel draws its first figure; notebook 00,
# README, INSTRUCTORS.md).
PRESENT_ENV = "COD_PRESENT"
_styled = False


def projector_requested() -> bool:
    """True when ``COD_PRESENT`` asks for the projector view (1, true, yes or on)."""
    return os.environ.get(PRESENT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def use_style(projector: bool | None = None) -> None:
    """Apply the kit's style (the first kit figure does); ``projector=True`` enlarges everything,
    ``None`` follows ``COD_PRESENT``.
    """
    global _styled
    mpl.rcParams.update(_BASE)
    if projector_requested() if projector is None else projector:
        mpl.rcParams.update(_PROJECTOR)
    _styled = True


def present(on: bool = True) -> None:
    """Projector view in this kernel only (``present(False)`` goes back); ``COD_PRESENT=1`` does
    it for the whole series without a call."""
    mpl.rcdefaults()
    use_style(projector=on)


@contextlib.contextmanager
def projector_view():
    """Figures drawn inside the ``with`` block look as under ``COD_PRESENT=1`` (notebook 00's
    preview)."""
    if not _styled:
        use_style()
    with mpl.rc_context(_PROJECTOR):
        yield


def subplots(nrows: int = 1, ncols: int = 1, **kw):
    """``plt.subplots`` in the kit's style, sized for the number of panels."""
    if not _styled:
        use_style()
    width, height = mpl.rcParams["figure.figsize"]
    kw.setdefault("figsize", (width * (1 if ncols == 1 else min(ncols, 3) / 1.6),
                              height * (1 if nrows == 1 else nrows / 1.3)))
    kw.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, **kw)


def show(fig=None) -> None:
    """Show and close a figure, returning None so a cell's text output stays empty."""
    plt.show()
    if fig is not None:
        plt.close(fig)


def _label(norm: str) -> str:
    return NORM_LABELS.get(norm, norm)


def _axes(ax, xlabel: str, ylabel: str, title: str | None = None, log: bool = False, legend=None):
    """Axis labels, optional log y axis and title, and a legend (``legend``: its keywords)."""
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if legend is not None:
        ax.legend(**legend)


# ------------------------------------------------------------ notebooks 03 and 04: training, inside


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def plot_gaps(gaps: dict):
    """Paired gaps, one row per comparison (``{label: stats.PairedGap}``): each seed's difference
    b − a as a dot (the colour of b), their mean ± sd as a black bar; left of 0, b reached the lower
    loss. The row label says how many seeds favour b and the paired t-test's p. Notebook 03."""
    n = len(gaps)
    fig, ax = subplots(figsize=(7.5, 0.9 + 0.7 * n))
    labels = []
    for i, (label, gap) in enumerate(gaps.items()):
        y = n - 1 - i
        jitter = np.linspace(-0.15, 0.15, gap.n) if gap.n > 1 else np.zeros(1)
        ax.scatter(gap.diffs, y + jitter, color=NORM_COLORS.get(gap.b, "k"), s=20, zorder=3)
        ax.errorbar(gap.mean, y, xerr=gap.sd, fmt="|", ms=22, mew=2, color="k", lw=1.5, zorder=4)
        labels.append(f"{label}\n{gap.b_better} of {gap.n} favour {_label(gap.b)}, {_p(gap.p)}")
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(n), labels[::-1], fontsize="small")
    ax.set_ylim(-0.6, n - 0.4)
    ax.grid(axis="y", visible=False)
    xlabel = "difference in final validation loss (nats)\nleft of 0: the first-named norm is ahead"
    _axes(ax, xlabel, "", "per-seed differences (dots) and their mean ± sd (black)")
    return fig


def plot_profile_snapshots(snapshots: dict,
                           ylabel: str = "per-token residual variance after block"):
    """Per-block profiles at several training steps, one panel per norm (``{norm: {step:
    values}}``), log-log with a dotted slope-1 guide (∝ ℓ: growth linear in depth); step 0
    (initialization) dashed, later steps darker. Notebook 03."""
    fig, axes = subplots(1, len(snapshots), squeeze=False, sharey=True)
    for ax, (norm, snaps) in zip(axes[0], snapshots.items()):
        steps, cmap = sorted(snaps), plt.get_cmap("Reds" if norm == "pre" else "Blues")
        for k, step in enumerate(steps):
            v = np.asarray(snaps[step])
            ax.plot(range(1, v.size + 1), v, color=cmap(0.35 + 0.65 * k / max(1, len(steps) - 1)),
                    ls="--" if step == 0 else "-", label="init" if step == 0 else f"step {step}")
        last = np.asarray(snaps[steps[-1]])
        blocks = np.arange(1, last.size + 1)
        ax.plot(blocks, last[-1] * blocks / last.size, color="gray", ls=":",
                label="∝ ℓ (slope 1)")
        ax.set_xscale("log")
        _axes(ax, "block ℓ", ylabel, _label(norm), True,  # legend below: it would cover a curve
              {"fontsize": "small", "ncol": 3, "loc": "upper center", "bbox_to_anchor": (0.5, -0.2)})
    return fig


def plot_training_growth(table: dict, steps=None):
    """How the depth profile changes over training (``analysis.training_growth_table``: ``{norm:
    {step: {field: (mean, sd, n)}}}``): variance after the last block over that after block 1
    (left, log), and the log-log exponent of the deep three quarters (right; 1 = linear in depth),
    seed mean ± sd. Notebook 03."""
    fig, axes = subplots(1, 2)
    for norm, rows in table.items():
        xs = [s for s in sorted(rows) if steps is None or s in steps]
        for ax, field in zip(axes, ("total", "exponent")):
            mean, sd = [rows[s][field][0] for s in xs], [rows[s][field][1] for s in xs]
            ax.errorbar(xs, mean, yerr=sd, color=NORM_COLORS.get(norm, "k"), marker="o", ms=4,
                        capsize=3, label=f"{_label(norm)} ({rows[xs[0]][field][2]} seeds)")
    axes[1].axhline(1, color="gray", ls=":", lw=1)
    axes[1].text(0.98, 1, "linear in depth", transform=axes[1].get_yaxis_transform(), ha="right",
                 va="bottom", color="gray", fontsize="small")
    _axes(axes[0], "training step", "last block / block 1 (×)", "growth over the stack", True,
          {"fontsize": "small"})
    _axes(axes[1], "training step", "log-log slope, blocks L/4..L", "shape of the profile")
    return fig


def plot_recipe_probe(runs: list, unigram: float = UNIGRAM_NATS):
    """Validation curves of the stored recipe probe (``cpu_recipe_probe``: runs with ``norm``,
    ``recipe``, ``val`` = [[step, loss], ...]): colour = norm, solid = the kit's recipe, dashed =
    the paper's. Notebook 03."""
    fig, ax = subplots()
    for run in runs:
        steps, losses = zip(*run["val"])
        ax.plot(steps, losses, color=NORM_COLORS.get(run["norm"], "k"), marker="o", ms=3,
                ls="-" if run["recipe"] == "kit" else "--",
                label=f"{_label(run['norm'])}, {run['recipe']}'s recipe")
    ax.axhline(unigram, color="gray", lw=0.8, ls=":")
    ax.text(ax.get_xlim()[1], unigram, " unigram", va="center", color="gray", fontsize="small")
    _axes(ax, "training step", "validation loss (nats/char)", None, False, {"fontsize": "small"})
    return fig


def plot_per_block(series: dict, ylabel: str, log: bool = False, ax=None, reference=None,
                   title: str | None = None):
    """One line per norm of a per-block quantity (``{norm: [value for block 1..L]}``);
    ``reference``: an optional ``(label, values)`` drawn dotted. Notebooks 03 and 04."""
    fig = None
    if ax is None:
        fig, ax = subplots()
    for norm, values in series.items():
        v = np.asarray(values, dtype=float)
        ax.plot(range(1, v.size + 1), v, color=NORM_COLORS.get(norm, "k"), marker="o", ms=3,
                label=_label(norm))
    if reference is not None:
        ax.plot(range(1, len(reference[1]) + 1), reference[1], color="gray", ls=":",
                label=reference[0])
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    _axes(ax, "block ℓ", ylabel, title, log, {"fontsize": "small"})
    if log:  # label minor ticks (2, 5 × 10^k) too when the range spans few decades
        ax.yaxis.set_minor_formatter(mpl.ticker.LogFormatterSciNotation(
            labelOnlyBase=False, minor_thresholds=(3, 2)))
    return fig


def plot_block_diagnostics(diagnostics: dict, title: str | None = None):
    """Notebook 04's four per-block diagnostics, norms side by side (``{norm: {"variance",
    "angular", "skip_delta", "grad_norm"}}``). The skip panel is symlog: block 1 costs 100x."""
    fig, axes = subplots(2, 2)
    panels = [("variance", "per-token residual variance after block", "log"),
              ("angular", "angular distance in → out", None),
              ("skip_delta", "loss increase when skipped (nats)", "symlog"),
              ("grad_norm", "gradient norm of block", "log")]
    for ax, (key, label, scale) in zip(axes.flat, panels):
        plot_per_block({n: d[key] for n, d in diagnostics.items() if key in d}, label, ax=ax)
        if scale == "symlog":
            deltas = np.concatenate([np.abs(d["skip_delta"]) for d in diagnostics.values()])
            positive = deltas[deltas > 0]
            ax.set_yscale("symlog",
                          linthresh=max(1e-4, float(positive.min())) if positive.size else 1e-4)
            ax.axhline(0, color="gray", lw=0.6)
        elif scale:
            ax.set_yscale(scale)
        if key != "variance":
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------ notebook 02: why variance grows


def _branch(ax, x0: float, bx: float, y: float, boxes: list) -> float:
    """A branch leaving the spine at height ``y``: boxes upwards, back with a (+); its top."""
    from matplotlib.patches import Circle, FancyBboxPatch

    start = y
    for label, fc in boxes:
        y += 0.5
        ax.add_patch(FancyBboxPatch((bx - 0.42, y - 0.16), 0.84, 0.32, boxstyle="round,pad=0.02",
                                    fc=fc, ec="0.3"))
        ax.text(bx, y, label, ha="center", va="center", fontsize=8)
    y += 0.5
    ax.plot([x0, bx, bx], [start, start, y - 0.66], color="0.2", lw=1)
    ax.plot([bx, bx, x0 + 0.1], [y - 0.34, y, y], color="0.2", lw=1)
    ax.plot([x0, x0], [start, y - 0.1], color="0.2", lw=1.6)
    ax.add_patch(Circle((x0, y), 0.1, fc="white", ec="0.2"))
    ax.text(x0, y, "+", ha="center", va="center", fontsize=9)
    return y


def _draw_column(ax, x0: float, items: list, norm: str) -> None:
    """One block drawn bottom to top: the residual spine at ``x0``, branches to its right."""
    from matplotlib.patches import FancyBboxPatch

    ax.annotate("", xy=(x0, 0.45), xytext=(x0, -0.2),
                arrowprops={"arrowstyle": "-", "color": "0.2"})
    ax.text(x0, -0.38, "stream in", ha="center", va="center", fontsize=8)
    y = 0.45
    for kind, *what in items:
        if kind == "branch":
            y = _branch(ax, x0, x0 + 0.75, y, what[0])
        else:  # a norm on the spine itself (Post-LN)
            y += 0.5
            ax.plot([x0, x0], [y - 0.4, y - 0.16], color="0.2", lw=1.6)
            ax.add_patch(FancyBboxPatch((x0 - 0.42, y - 0.16), 0.84, 0.32,
                                        boxstyle="round,pad=0.02", fc=what[1], ec="0.3"))
            ax.text(x0, y, what[0], ha="center", va="center", fontsize=8)
    top = y + 0.1 if items[-1][0] == "branch" else y + 0.16
    ax.annotate("", xy=(x0, y + 0.45), xytext=(x0, top),
                arrowprops={"arrowstyle": "->", "color": "0.2", "lw": 1.6})
    ax.text(x0, y + 0.62, "stream out", ha="center", va="center", fontsize=8)
    ax.text(x0 + 0.35, -0.85, _label(norm), ha="center", va="center", fontsize=10,
            color=NORM_COLORS[norm], fontweight="bold")


def plot_block_equations():
    """The five block types side by side: where each norm sits (notebook 02). The spine is the
    residual stream; boxes to its right are a branch that reads the stream and adds to it. A norm on
    the spine (Post-LN) re-normalizes the stream; a norm in a branch (Pre-LN, LNS, Peri-LN) only
    what the branch reads (and, for Peri-LN, what it writes)."""
    from matplotlib.patches import Rectangle

    norm_c, scale_c, sub_c = "#fde0c5", "#c6dbef", "#eeeeee"
    scale = ("× 1/√ℓ", scale_c)
    subs = ("Attention", "SwiGLU")
    columns = {"pre": [("branch", [("RMSNorm", norm_c), (sub, sub_c)]) for sub in subs],
               "lns": [("branch", [("RMSNorm", norm_c), scale, (sub, sub_c)]) for sub in subs],
               "post": [item for sub in subs
                        for item in (("branch", [(sub, sub_c)]), ("norm", "RMSNorm", norm_c))],
               "peri": [("branch", [("RMSNorm", norm_c), (sub, sub_c), ("RMSNorm", norm_c)])
                        for sub in subs]}
    fig, ax = subplots(figsize=(12, 5.2))
    for x0, (norm, items) in zip((0.0, 2.3, 4.6, 6.9), columns.items()):
        _draw_column(ax, x0, items, norm)
    n, n_post, x_mix = 12, 3, 9.3  # Mix-LN: a stack of blocks, the first quarter Post-LN
    for i in range(n):
        ax.add_patch(Rectangle((x_mix, 0.2 + i * 0.36), 0.9, 0.3,
                               fc=NORM_COLORS["post" if i < n_post else "pre"], alpha=0.55,
                               ec="0.3"))
        ax.text(x_mix + 0.45, 0.35 + i * 0.36, f"block {i + 1}", ha="center", va="center", fontsize=7)
    for y, text, norm in ((0.2 + n_post * 0.18, "Post-LN\n(first αL)", "post"),
                          (0.2 + (n + n_post) * 0.18, "Pre-LN\n(the rest)", "pre")):
        ax.text(x_mix + 1.05, y, text, va="center", fontsize=8, color=NORM_COLORS[norm])
    ax.text(x_mix + 0.45, -0.85, "Mix-LN (α = 1/4)", ha="center", va="center", fontsize=10,
            color=NORM_COLORS["mix"], fontweight="bold")
    ax.set(xlim=(-0.6, 11.3), ylim=(-1.1, 5.6), aspect="equal")
    ax.axis("off")
    return fig


def _curve(c, key: str) -> np.ndarray:
    """``mean`` or ``std`` of a ``theory.VarianceCurve`` or of its ``to_dict()``."""
    return np.asarray(c[key] if isinstance(c, dict) else getattr(c, key), dtype=float)


def slope_guide(ax, slope: float, through: tuple[float, float], start: float = 1.0,
                label: str | None = None, **style) -> None:
    """A dotted line y ∝ x^slope on log-log axes, ending at ``through`` = (x, y) and starting at
    x = ``start``: slope 1 is linear growth, 2 quadratic, 0 flat (notebook 02). ``style``: plot
    keywords over the default dotted grey."""
    x1, y1 = through
    xs = np.geomspace(start, x1, 32)
    ax.plot(xs, y1 * (xs / x1) ** slope, **{"ls": ":", "color": "0.45", "lw": 1.3, **style},
            label=label or f"slope {slope:g} guide")


def draw_variance_vs_theory(ax, curves: dict, predictions: dict, norms=None) -> None:
    """Measured residual variance after blocks 1..L (mean, seed band) against the prediction
    (dashed), on log-log axes with a slope-1 guide: a curve parallel to it grows linearly.
    Notebook 02."""
    norms = norms or list(curves)
    for norm in norms:
        mean, std = _curve(curves[norm], "mean")[1:], _curve(curves[norm], "std")[1:]
        depth, c = np.arange(1, len(mean) + 1), NORM_COLORS.get(norm, "0.3")
        top = {"ls": (0, (4, 2)), "marker": "o", "ms": 4, "markevery": 0.1, "zorder": 4} if norm == "post" else {}
        ax.plot(depth, mean, color=c, lw=2, label=f"{_label(norm)} measured", **top)  # Post-LN over Mix-LN
        ax.fill_between(depth, np.maximum(mean - std, mean * 0.05), mean + std, color=c, alpha=0.2,
                        lw=0)
        if norm in predictions:
            ax.plot(depth, np.asarray(predictions[norm])[1:], color="k", ls="--", lw=1)
    ax.plot([], [], color="k", ls="--", lw=1, label="mean-field prediction")
    ref = next((n for n in ("pre", "peri") if n in norms), norms[0])
    last = _curve(curves[ref], "mean")
    slope_guide(ax, 1.0, (len(last) - 1, 3 * last[-1]), label="slope 1 = linear growth")
    ax.set_xscale("log")
    _axes(ax, "block ℓ (log axis)", "residual variance (log axis)", log=True)


def plot_variance_vs_theory(curves: dict, predictions: dict, norms=None, title: str | None = None):
    """Left: measured variance after every block vs the prediction, log-log with a slope-1 guide;
    right: measured / predicted - 1 (linear axis). Notebook 02."""
    fig, (ax, ax2) = subplots(1, 2, figsize=(12, 4.4))
    draw_variance_vs_theory(ax, curves, predictions, norms)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for norm in [n for n in norms or list(curves) if n in predictions]:
        mean = _curve(curves[norm], "mean")
        ax2.plot(np.arange(1, len(mean)), 100 * (mean[1:] / np.asarray(predictions[norm])[1:] - 1),
                 color=NORM_COLORS.get(norm, "0.3"), label=_label(norm))
    ax2.axhspan(-10, 10, color="0.85", alpha=0.5, lw=0, label="±10%")
    ax2.axhline(0, color="k", lw=0.8)
    _axes(ax2, "block ℓ", "measured / predicted − 1  (%)", legend={"fontsize": 8})
    if title:
        fig.suptitle(title)
    return fig


def plot_recursions(series: dict, title: str | None = None, log: bool = True, ax=None,
                    xlabel: str = "step ℓ"):
    """Labelled curves against depth: ``{label: (depth, values)}`` or ``(depth, values, style)``.
    Notebook 02."""
    fig = None
    if ax is None:
        fig, ax = subplots()
    for label, (depth, values, *style) in series.items():
        ax.plot(depth, values, label=label, **(style[0] if style else {}))
    _axes(ax, xlabel, "σ²", title, log, {"fontsize": 8})
    return fig


def plot_block_probes(probes: dict, ylabel: str, title: str | None = None, log: bool = True,
                      ax=None, reference=None):
    """A per-block probe per norm (``theory.BlockProbe`` or its dict): the mean over seeds, dots at
    the probed blocks; ``reference``: optional ``(blocks, values, label)``. Notebook 02."""
    fig = None
    if ax is None:
        fig, ax = subplots()
    for norm, p in probes.items():
        p = p if isinstance(p, dict) else {"blocks": p.blocks, "values": p.values}
        vals, c = np.asarray(p["values"], dtype=float), NORM_COLORS.get(norm, "0.3")
        top = {"marker": "s", "ms": 7, "mfc": "none", "zorder": 4} if norm == "post" else {"marker": "o", "ms": 3}
        ax.plot(p["blocks"], vals.mean(0), "-", color=c, label=_label(norm), **top)  # Post-LN over Mix-LN
        if len(vals) > 1:
            ax.fill_between(p["blocks"], vals.min(0), vals.max(0), color=c, alpha=0.2, lw=0)
    if reference is not None:
        ax.plot(reference[0], reference[1], "k--", lw=1, label=reference[2])
    if log:
        ax.set_xscale("log")
    _axes(ax, "block ℓ", ylabel, title, log, {"fontsize": 8})
    return fig


def draw_variance_explorer(ax, data: dict) -> None:
    """One panel of notebook 02's explorer, from ``theory.explore_variance``'s dict: log-log axes
    from block 1, and a slope-1 (linear) and a slope-2 (quadratic) guide fanning out from the
    recursion with the chosen ρ at block L/16."""
    c, depth = NORM_COLORS.get(data["norm"], "0.3"), data["depth"][1:]
    if "measured" in data:
        ax.plot(depth, data["measured"][1:], color=c, lw=2.2, label="measured at init (ρ = 0)")
    ax.plot(depth, data["mean_field"][1:], "k--", lw=1, label="mean-field prediction")
    ax.plot(depth, data["linear"][1:], color="0.4", lw=1.2, alpha=0.6,
            label="recursion, ρ = 0 (b² of a deep block)")
    ax.plot(depth, data["rho_curve"][1:], color=c, ls="-.", lw=1.4,
            label=f"recursion with ρ = {data['rho']:g}")
    x0 = max(1, depth[-1] // 16)  # a fan of guides from the ρ curve at block L/16 to block L
    xs, y0 = np.geomspace(x0, depth[-1], 16), float(data["rho_curve"][x0])
    for slope, ls in ((1.0, ":"), (2.0, (0, (6, 3)))):  # dotted vs long dashes
        ax.plot(xs, y0 * (xs / x0) ** slope, ls=ls, color="0.3", lw=1,
                label=f"slope {slope:g} ({'linear' if slope == 1 else 'quadratic'})")
    ax.set_xscale("log")
    _axes(ax, "block ℓ (log axis)", "residual variance (log axis)", log=True,
          legend={"fontsize": 7, "loc": "upper left"})


# ---------------------------------------------------------------- notebook 05: LNS for your model


def plot_lns_residual_rms(rms_by_label: dict, title: str | None = None,
                          ylabel: str = "residual-stream RMS (first position excluded)"):
    """Residual-stream RMS after each decoder layer (0 = embeddings), one line per label; labels
    with "LNS" in the LNS colour. Notebook 05."""
    fig, ax = subplots()
    for label, rms in rms_by_label.items():
        ax.plot(range(len(rms)), list(rms), marker="o", ms=3,
                color=NORM_COLORS["lns" if "LNS" in label else "pre"], label=label)
    _axes(ax, "after decoder layer ℓ (0 = embeddings)", ylabel, title, True, {})
    return fig


def plot_lns_trainer_curves(curves: dict, title: str | None = None,
                            plateau: float | None = UNIGRAM_NATS):
    """Validation loss against step for each norm (``{norm: (steps, losses)}``). Notebook 05."""
    fig, ax = subplots()
    for norm, (steps, losses) in curves.items():
        ax.plot(steps, losses, marker="o", color=NORM_COLORS.get(norm, "gray"), label=_label(norm))
    if plateau is not None:
        ax.axhline(plateau, color="gray", ls=":", lw=1, label="unigram plateau (≈3.3 nats)")
    _axes(ax, "training step (Hugging Face Trainer)", "validation loss (nats / character)", title,
          legend={})
    return fig


# ------------------------------------------------------------ notebooks 01 and 06: a real LLM


def _token_band(ax, q: dict, color: str, label: str) -> None:
    """Median of the per-token RMS with its 10-90 % band, from ``analysis.residual_rms_quantiles``.
    """
    qs, vals = list(q["quantiles"]), np.asarray(q["values"], dtype=float)
    x = np.arange(vals.shape[1])
    ax.plot(x, vals[qs.index(0.5)], marker="o", ms=3, color=color, label=f"{label}: median token")
    if 0.1 in qs and 0.9 in qs:
        ax.fill_between(x, vals[qs.index(0.1)], vals[qs.index(0.9)], color=color, alpha=0.2, lw=0,
                        label="10–90 % of tokens")


def plot_token_rms(q: dict, pooled: list | None = None, contrast: dict | None = None,
                   title: str | None = None):
    """Per-token RMS of the residual stream after each layer: the median token and its 10-90 % band
    (``analysis.residual_rms_quantiles``, position 0 left out), log axis; ``pooled``: the pooled
    RMS, dashed; ``contrast`` (``{"label", "q"}``): a Post-LN model's per-token median beside it,
    linear axis. Notebook 01.
    """
    fig, axes = subplots(1, 2 if contrast else 1)
    ax = axes[0] if contrast else axes
    _token_band(ax, q, NORM_COLORS["pre"], "Pre-LN")
    if pooled is not None:
        ax.plot(range(len(pooled)), pooled, ls="--", color="0.35", label="pooled over all tokens")
    _axes(ax, "layers applied (0 = embeddings)", "residual-stream RMS (log scale)",
          title or "Pre-LN: the residual stream grows with depth", True, {"fontsize": "small"})
    if contrast:
        vals = np.asarray(contrast["q"]["values"], dtype=float)
        med = vals[list(contrast["q"]["quantiles"]).index(0.5)]
        axes[1].plot(range(len(med)), med, marker="o", color=NORM_COLORS["post"],
                     label="median token")
        axes[1].set_ylim(0, max(med) * 1.3)
        _axes(axes[1], "layers applied (0 = embeddings)", "hidden-state RMS (linear axis)",
              contrast.get("label", "Post-LN contrast"), legend={"fontsize": "small"})
    return fig


def plot_pooled_vs_per_token(texts: dict, outlier: dict | None = None, title: str | None = None):
    """Pooled RMS against the per-token median, one colour per text (``{label: record}``, records
    as in ``smollm2_per_token.json``: ``rms_pooled``, ``rms_per_token``); ``outlier``: one token of the
    first text, its ``rms_by_state`` drawn dotted with a ``label`` where it peaks. Log axis.
    Notebook 01.
    """
    fig, ax = subplots()
    for (label, rec), color in zip(texts.items(), ("#d62728", "#1f77b4", "#2ca02c")):
        q = rec["rms_per_token"]
        med = np.asarray(q["values"], dtype=float)[list(q["quantiles"]).index(0.5)]
        x = np.arange(med.size)
        ax.plot(x, rec["rms_pooled"], color=color, lw=2, label=f"{label}: pooled")
        ax.plot(x, med, color=color, ls="--", label=f"{label}: median token")
    if outlier is not None:
        r = outlier["rms_by_state"]
        ax.plot(range(len(r)), r, color="#d62728", ls=":", lw=1,
                label=f"{next(iter(texts))}: that one token")
        r = np.asarray(outlier["rms_by_state"], dtype=float)
        i = int(np.argmax(r))
        ax.annotate(outlier["label"], (i, r[i]), xytext=(i + 2, r[i] * 0.3), fontsize="small",
                    arrowprops={"arrowstyle": "->", "color": "0.3"})
    _axes(ax, "layers applied (0 = embeddings; position 0 left out)", "RMS (log scale)",
          title or "Pooled RMS vs the typical token, two texts", True, {"fontsize": "small"})
    return fig


def plot_block_heatmap(heat, title: str | None = None):
    """Gromov et al.'s heatmap: the angular distance from a block's input to its output, by the
    block's first layer ℓ (x) and its size n (y). Notebook 01."""
    h = np.asarray(heat, dtype=float)
    fig, ax = subplots()
    im = ax.imshow(h, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=np.nanmax(h),
                   extent=(-0.5, h.shape[1] - 0.5, 0.5, h.shape[0] + 0.5))
    ax.plot([int(np.nanargmin(row)) for row in h], range(1, h.shape[0] + 1), "w.", ms=4,
            label="most similar block for each n")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="angular distance, block input → output")
    _axes(ax, "first layer of the block, ℓ (0-based)", "block size n (layers)",
          title or "Which blocks of layers barely change the stream?",
          legend={"loc": "upper right", "fontsize": "small"})
    return fig


def plot_removal_cost(ratio: list, angular: list | None = None, reference: list | None = None,
                      layers: list | None = None, title: str | None = None,
                      reference_label: str = "stored run", live_label: str = "measured live"):
    """Perplexity ratio when each single layer is removed (log axis), above the angular distance
    it is often predicted from; ``reference``: the stored larger sample's ratios. Notebook 01."""
    fig, axes = subplots(2 if angular is not None else 1, 1, sharex=True)
    ax = axes[0] if angular is not None else axes
    xs = layers if layers is not None else list(range(len(ratio)))
    ax.bar(xs, [r - 1 for r in ratio], bottom=1, color=NORM_COLORS["pre"], alpha=0.8,
           label=live_label)
    if reference is not None:
        ax.plot(range(len(reference)), reference, "k.-", lw=1, ms=4, label=reference_label)
    ax.axhline(1, color="gray", lw=0.8)
    xlabel = "" if angular is not None else "layer removed (0-based)"
    _axes(ax, xlabel, "perplexity × when removed\n(log scale)",
          title or "What each layer is worth: remove it and measure", True, {})
    if angular is not None:
        axes[1].bar(range(len(angular)), angular, color="#7f7f7f")
        _axes(axes[1], "layer removed (0-based)", "angular distance\ninput → output")
    return fig


def plot_cost_vs_angular(angular: list, ratio: list, title: str | None = None):
    """Does a layer's angular distance predict what removing it costs? Notebook 01."""
    fig, ax = subplots()
    ax.scatter(angular, ratio, color=NORM_COLORS["pre"], s=18)
    for i, (a, r) in enumerate(zip(angular, ratio)):
        ax.annotate(str(i), (a, r), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    _axes(ax, "angular distance between the layer's input and output", "perplexity × when removed",
          title or "Angular distance predicts removal cost only roughly", True)
    return fig


_RULE_STYLE = {"angular": ("#1f77b4", "o"), "block_influence": ("#9467bd", "s"),
               "measured": ("#2ca02c", "^"), "last": ("#d62728", "v")}


def plot_drop_curves(runs: dict, labels: dict | None = None, cap: float = 30.0,
                     title: str | None = None):
    """Perplexity ratio against layers dropped: each run (``{label: layer_drop_curves output}``)
    divided by its own full model, one colour per rule, a marker at each measured n (first run solid
    and filled, later runs dashed and hollow). Log axis with labelled ticks, cut at ``cap``: points
    above it sit on the top edge as open triangles, with their smallest value written beside them.
    Notebook 06.
    """
    from matplotlib.lines import Line2D

    fig, ax = subplots()
    ticks = [t for t in (1, 1.5, 2, 3, 5, 10, 20, 30, 50, 100) if t <= cap]
    over_all: dict[str, float] = {}
    for k, result in enumerate(runs.values()):
        base = result["base_loss"]
        for rule in dict.fromkeys(p["rule"] for p in result["points"]):
            pts = sorted((p["n"], float(np.exp(p["loss"] - base)))
                         for p in result["points"] if p["rule"] == rule)
            ns, ratio = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
            color, marker = _RULE_STYLE.get(rule, ("gray", "."))
            over = ratio > cap
            ax.plot(ns[~over], ratio[~over], ls="-" if k == 0 else "--", marker=marker, color=color,
                    mfc=color if k == 0 else "white")
            ax.plot(ns[over], np.full(over.sum(), cap), ls="none", marker="^", ms=9, color=color,
                    mfc="white")
            if over.any():
                over_all[rule] = min(over_all.get(rule, np.inf), float(ratio[over].min()))
    for rule, low in over_all.items():
        ax.annotate(f"{(labels or {}).get(rule, rule)}: ×{low:.0f} and more, off the chart",
                    (1, cap),
                    xytext=(0, -14), textcoords="offset points", fontsize="x-small",
                    color=_RULE_STYLE.get(rule, ("gray",))[0])
    shown = {p["rule"] for res in runs.values() for p in res["points"]}
    handles = [Line2D([], [], color=c, marker=m, label=(labels or {}).get(r, r))
               for r, (c, m) in _RULE_STYLE.items() if r in shown]
    handles += [Line2D([], [], color="k", ls="-" if k == 0 else "--", marker="o",
                       mfc="k" if k == 0 else "white", label=run) for k, run in enumerate(runs)]
    ax.axhline(1, color="gray", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(0.95, cap * 1.15)
    ax.set_yticks(ticks, [f"×{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(mpl.ticker.NullLocator())
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 0.9), fontsize="x-small")
    _axes(ax, "layers dropped, n", "perplexity ÷ the run's own full model\n(log scale)",
          title or "Which layers to drop? Four rules")
    return fig


LIVE_NOTE = "\n(bars: stored run; dots: this run)"


def plot_sparsity(table: dict, live: dict | None = None, title: str | None = None):
    """Left: perplexity per method at each sparsity, divided by the same run's dense model (log
    axis; ``live``: another table, as black dots, divided by its own dense model). Right: OWL's per-layer
    sparsity. Notebook 06.
    """
    rows = table["rows"]
    sps = sorted({r["sparsity"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    names = {"owl": "OWL (Wanda, layer-wise)", "wanda": "Wanda (uniform)",
             "magnitude": "magnitude (uniform)"}
    colors = {"magnitude": "#7f7f7f", "wanda": "#1f77b4", "owl": "#2ca02c"}
    fig, (ax, ax2) = subplots(1, 2)
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        x = np.arange(len(sps)) + (k - (len(methods) - 1) / 2) * width
        ratio = {r["sparsity"]: np.exp(r["loss"] - table["dense_loss"])
                 for r in rows if r["method"] == m}
        ax.bar(x, [ratio.get(s, np.nan) - 1 for s in sps], width, bottom=1,
               color=colors.get(m, "gray"), label=names.get(m, m))
        if live is not None:
            got = {r["sparsity"]: np.exp(r["loss"] - live["dense_loss"])
                   for r in live["rows"] if r["method"] == m}
            ax.plot(x, [got.get(s, np.nan) for s in sps], "k.", ms=9,
                    label="this run" if k == 0 else None)
    ax.axhline(1, color="black", ls=":", label="dense model")
    ax.set_xticks(range(len(sps)), [f"{s:.0%}" for s in sps])
    _axes(ax, "unstructured sparsity of every block",
          "perplexity ÷ the run's dense model\n(log scale)",
          title or "Pruning weights: uniform vs layer-wise" + (LIVE_NOTE if live else ""), True,
          {"fontsize": "small"})
    for r in [r for r in rows if r["method"] == "owl"]:
        ax2.plot(range(len(r["ratios"])), r["ratios"], marker=".",
                 label=f"OWL at {r['sparsity']:.0%}")
    _axes(ax2, "layer (0-based)", "sparsity given to the layer",
          "OWL: fewer zeros where outliers live",
          legend={"fontsize": "small"})
    return fig
