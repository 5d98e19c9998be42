"""One figure style for the whole kit. Plot functions take result data (dicts/arrays), never models.

Each topic's plotting functions live below in their own section; notebooks call
them so a fix lands once.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

NORM_COLORS = {"pre": "#d62728", "lns": "#1f77b4", "post": "#2ca02c", "mix": "#9467bd", "peri": "#ff7f0e"}
NORM_LABELS = {"pre": "Pre-LN", "lns": "Pre-LN + LNS", "post": "Post-LN", "mix": "Mix-LN", "peri": "Peri-LN"}

_BASE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (7.5, 4.0),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}
_PROJECTOR = {"font.size": 15, "figure.figsize": (11, 6), "lines.linewidth": 2.5, "figure.dpi": 110}


def use_style(projector: bool = False) -> None:
    """Apply the kit's style; ``projector=True`` enlarges fonts, lines and figures for a live room."""
    mpl.rcParams.update(_BASE)
    if projector:
        mpl.rcParams.update(_PROJECTOR)


def present(on: bool = True) -> None:
    """Projector view for instructors: big fonts and figures (``present(False)`` goes back)."""
    mpl.rcdefaults()
    use_style(projector=on)


def subplots(nrows: int = 1, ncols: int = 1, **kw):
    width, height = mpl.rcParams["figure.figsize"]
    kw.setdefault("figsize", (width * (1 if ncols == 1 else min(ncols, 3) / 1.6), height * (1 if nrows == 1 else nrows / 1.3)))
    kw.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, **kw)


def show(fig=None) -> None:
    """Show and close a figure, returning None so a cell's text output stays empty."""
    plt.show()
    if fig is not None:
        plt.close(fig)


use_style()


# ============================================================================ notebooks 03-04: live training and inside
# Plot functions of notebooks 03 (train it live) and 04 (inside the trained models). They take ``stats.Band``
# objects and plain per-block lists, never models.

UNIGRAM_NATS = 3.30  # val loss of the train split's character unigram model (3.293; docs/evidence/shakespeare_unigram.md)


def draw_bands(ax, bands: dict, norms=None, alpha: float = 0.18, label_suffix: str = "") -> None:
    """Shade each norm's seed band (min to max) and draw its mean. Notebook 03."""
    for norm in norms or list(bands):
        if norm not in bands:
            continue
        b = bands[norm]
        color = NORM_COLORS.get(norm, "gray")
        ax.fill_between(b.steps, b.lo, b.hi, color=color, alpha=alpha, lw=0)
        ax.plot(b.steps, b.mean, color=color, lw=1.2, ls="--",
                label=f"{NORM_LABELS.get(norm, norm)}: {b.n} seeds{label_suffix}")


def plot_bands(bands_by_panel: dict, norms=None, live: dict | None = None, title: str | None = None):
    """One panel per configuration (``{title: {norm: Band}}``), each band shaded over its seeds. Notebook 03.

    ``live`` maps a panel title to ``{norm: (steps, losses)}`` curves drawn solid on top.
    """
    fig, axes = subplots(1, len(bands_by_panel), squeeze=False)
    for ax, (panel, bands) in zip(axes[0], bands_by_panel.items()):
        draw_bands(ax, bands, norms)
        for norm, (steps, losses) in (live or {}).get(panel, {}).items():
            ax.plot(steps, losses, color=NORM_COLORS.get(norm, "k"), lw=2.2, marker="o", ms=3,
                    label=f"{NORM_LABELS.get(norm, norm)}: your live run")
        ax.axhline(UNIGRAM_NATS, color="gray", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[1], UNIGRAM_NATS, " unigram", va="center", ha="left", color="gray", fontsize="small")
        ax.set(title=panel, xlabel="training step", ylabel="validation loss (nats/char)")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_gaps(gaps: dict):
    """LNS minus Pre-LN final validation loss per seed, one column per configuration. Notebook 03.

    ``gaps`` maps a label to a ``stats.PairedGap``; below zero means LNS is ahead.
    """
    fig, ax = subplots(figsize=(max(4.5, 2.2 * len(gaps)), 3.6))
    for i, gap in enumerate(gaps.values()):
        xs = [i - 0.1 + 0.04 * (j - (gap.n - 1) / 2) for j in range(gap.n)]
        ax.scatter(xs, gap.diffs, color="k", s=14, zorder=3)
        ax.errorbar(i + 0.15, gap.mean, yerr=gap.sd, fmt="s", color="#444", capsize=4)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlim(-0.5, len(gaps) - 0.5)
    ax.set_xticks(range(len(gaps)), list(gaps), fontsize="small")
    ax.set(ylabel="LNS − Pre-LN (nats)\n< 0: LNS ahead", title="paired by seed (dots), mean ± sd (square)")
    return fig


def plot_profile_snapshots(snapshots: dict, ylabel: str = "residual variance after block", log: bool = True):
    """Per-block profiles at several training steps, one panel per norm (``{norm: {step: [v per block]}}``).

    Step 0 (initialization) is dashed; later steps darken. Notebook 03.
    """
    import numpy as np

    fig, axes = subplots(1, len(snapshots), squeeze=False, sharey=True)
    for ax, (norm, snaps) in zip(axes[0], snapshots.items()):
        steps = sorted(snaps)
        cmap = plt.get_cmap("Reds" if norm == "pre" else "Blues")
        for k, step in enumerate(steps):
            v = np.asarray(snaps[step])
            shade = cmap(0.35 + 0.65 * k / max(1, len(steps) - 1))
            ax.plot(range(1, v.size + 1), v, color=shade, ls="--" if step == 0 else "-",
                    label="init" if step == 0 else f"step {step}")
        ax.set(title=NORM_LABELS.get(norm, norm), xlabel="block l", ylabel=ylabel)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize="small", ncol=2)
    return fig


def plot_per_block(series: dict, ylabel: str, log: bool = False, ax=None, reference=None, title: str | None = None):
    """One line per norm of a per-block quantity (``{norm: [value for block 1..L]}``). Notebooks 03 and 04.

    ``reference`` is an optional ``(label, [values])`` drawn dotted (e.g. the 1/l law).
    """
    import numpy as np

    fig = None
    if ax is None:
        fig, ax = subplots()
    for norm, values in series.items():
        v = np.asarray(values, dtype=float)
        ax.plot(range(1, v.size + 1), v, color=NORM_COLORS.get(norm, "k"), marker="o", ms=3,
                label=NORM_LABELS.get(norm, norm))
    if reference is not None:
        ref_label, ref = reference
        ax.plot(range(1, len(ref) + 1), ref, color="gray", ls=":", label=ref_label)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="block l", ylabel=ylabel)
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_block_diagnostics(diagnostics: dict, title: str | None = None):
    """The four per-block diagnostics of notebook 04, Pre-LN vs LNS side by side.

    ``diagnostics`` maps a norm to ``{"variance", "angular", "skip_delta", "grad_norm"}`` lists (block 1..L).
    The skip-one-block panel uses a symlog axis, because block 1 costs 100x more than any other block.
    """
    import numpy as np

    fig, axes = subplots(2, 2)
    panels = [("variance", "residual variance after block", "log"),
              ("angular", "angular distance in → out", None),
              ("skip_delta", "loss increase when skipped (nats)", "symlog"),
              ("grad_norm", "gradient norm of block", "log")]
    for ax, (key, label, scale) in zip(axes.flat, panels):
        plot_per_block({n: d[key] for n, d in diagnostics.items() if key in d}, label, ax=ax)
        if scale == "symlog":
            deltas = np.concatenate([np.abs(np.asarray(d["skip_delta"])) for d in diagnostics.values()])
            floor = max(1e-4, float(np.min(deltas[deltas > 0])) if np.any(deltas > 0) else 1e-4)
            ax.set_yscale("symlog", linthresh=floor)
            ax.axhline(0, color="gray", lw=0.6)
        elif scale:
            ax.set_yscale(scale)
        if key != "variance":
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    return fig


# ============================================================================ notebook 00: the map of the day


def plot_day_map(rows: list[dict], title: str | None = "The day: time per notebook (workshop mode)"):
    """Horizontal bars: each notebook's time on the reference 2-core CPU and, if probed, here (notebook 00).

    ``rows`` is ``curse_of_depth.workshop.doctor.day_map()``: dicts with notebook, title, reference_s, here_s.
    Notebooks without a recorded time are listed with no bar ("not measured").
    """
    import numpy as np

    fig, ax = subplots()
    y = np.arange(len(rows))[::-1]
    ref = [r["reference_s"] or 0.0 for r in rows]
    here = [r["here_s"] or 0.0 for r in rows]
    has_here = any(r["here_s"] is not None for r in rows)
    h = 0.38 if has_here else 0.6
    ax.barh(y + (h / 2 if has_here else 0), ref, height=h, color="#7f7f7f", label="reference 2-core CPU")
    if has_here:
        ax.barh(y - h / 2, here, height=h, color="#1f77b4", label="this machine (estimate)")
    for yi, r in zip(y, rows):
        if r["reference_s"] is None:
            ax.text(0, yi, "  not measured yet", va="center", fontsize="small", color="#7f7f7f")
    ax.set_yticks(y, [f'{r["notebook"]} {r["title"]}' for r in rows])
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return fig


# ============================================================================ notebook 02: why Pre-LN variance grows


def _curve(c, key: str):
    """Read ``mean``/``std`` from a theory.VarianceCurve or from its ``to_dict()``."""
    import numpy as np

    return np.asarray(c[key] if isinstance(c, dict) else getattr(c, key), dtype=float)


def _draw_column(ax, x0: float, items: list, title: str, color: str) -> None:
    """One block drawn bottom to top: a residual spine at x0, branches to its right (see plot_block_equations)."""
    from matplotlib.patches import Circle, FancyBboxPatch

    def box(x, y, label, fc):
        ax.add_patch(FancyBboxPatch((x - 0.42, y - 0.16), 0.84, 0.32, boxstyle="round,pad=0.02", fc=fc, ec="0.3"))
        ax.text(x, y, label, ha="center", va="center", fontsize=8)

    bx, y = x0 + 0.75, 0.0
    ax.annotate("", xy=(x0, 0.45), xytext=(x0, -0.2), arrowprops={"arrowstyle": "-", "color": "0.2"})
    ax.text(x0, -0.38, r"$x_\ell$", ha="center", va="center")
    y = 0.45
    for kind, *labels in items:
        if kind == "branch":  # leave the spine, run the boxes, come back with a (+)
            y_start = y
            for label, fc in labels[0]:
                y += 0.5
                box(bx, y, label, fc)
            y += 0.5
            ax.plot([x0, bx, bx], [y_start, y_start, y - 0.5 - 0.16], color="0.2", lw=1)
            ax.plot([bx, bx, x0 + 0.1], [y - 0.5 + 0.16, y, y], color="0.2", lw=1)
            ax.plot([x0, x0], [y_start, y - 0.1], color="0.2", lw=1.6)
            ax.add_patch(Circle((x0, y), 0.1, fc="white", ec="0.2"))
            ax.text(x0, y, "+", ha="center", va="center", fontsize=9)
        elif kind == "norm":  # a norm on the spine itself (Post-LN)
            y += 0.5
            ax.plot([x0, x0], [y - 0.4, y - 0.16], color="0.2", lw=1.6)
            box(x0, y, labels[0], labels[1])
        y += 0.0
    ax.annotate("", xy=(x0, y + 0.45), xytext=(x0, y + 0.1 if items[-1][0] == "branch" else y + 0.16),
                arrowprops={"arrowstyle": "->", "color": "0.2", "lw": 1.6})
    ax.text(x0, y + 0.62, r"$x_{\ell+1}$", ha="center", va="center")
    ax.text(x0 + 0.35, -0.85, title, ha="center", va="center", fontsize=10, color=color, fontweight="bold")


def plot_block_equations():
    """The four block types side by side, drawn: where each norm sits (notebook 02).

    Spine = the residual stream; boxes to its right = a branch (attention or SwiGLU) that reads the stream and
    adds to it. A norm on the spine (Post-LN) re-normalizes the stream itself; a norm in a branch (Pre-LN, LNS)
    only normalizes what the branch reads, so the stream keeps every addition.
    """
    norm_c, scale_c, sub_c = "#fde0c5", "#c6dbef", "#eeeeee"
    pre = [("branch", [("RMSNorm", norm_c), ("Attention", sub_c)]),
           ("branch", [("RMSNorm", norm_c), ("SwiGLU", sub_c)])]
    lns = [("branch", [("RMSNorm", norm_c), (r"$\times 1/\sqrt{\ell}$", scale_c), ("Attention", sub_c)]),
           ("branch", [("RMSNorm", norm_c), (r"$\times 1/\sqrt{\ell}$", scale_c), ("SwiGLU", sub_c)])]
    post = [("branch", [("Attention", sub_c)]), ("norm", "RMSNorm", norm_c),
            ("branch", [("SwiGLU", sub_c)]), ("norm", "RMSNorm", norm_c)]
    fig, ax = subplots(figsize=(10, 5.2))
    for x0, items, key in ((0.0, pre, "pre"), (2.3, lns, "lns"), (4.6, post, "post")):
        _draw_column(ax, x0, items, NORM_LABELS[key], NORM_COLORS[key])
    # Mix-LN: a stack of blocks, the first quarter Post-LN
    from matplotlib.patches import Rectangle

    n, n_post = 12, 3
    for i in range(n):
        key = "post" if i < n_post else "pre"
        ax.add_patch(Rectangle((7.0, 0.2 + i * 0.36), 0.9, 0.3, fc=NORM_COLORS[key], alpha=0.55, ec="0.3"))
        ax.text(7.45, 0.35 + i * 0.36, f"block {i + 1}", ha="center", va="center", fontsize=7)
    ax.text(8.05, 0.2 + n_post * 0.18, "Post-LN\n(first αL)", va="center", fontsize=8, color=NORM_COLORS["post"])
    ax.text(8.05, 0.2 + (n + n_post) * 0.18, "Pre-LN\n(the rest)", va="center", fontsize=8, color=NORM_COLORS["pre"])
    ax.text(7.45, -0.85, NORM_LABELS["mix"] + " (α = 1/4)", ha="center", va="center", fontsize=10,
            color=NORM_COLORS["mix"], fontweight="bold")
    ax.set_xlim(-0.6, 9.0)
    ax.set_ylim(-1.1, 5.6)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def draw_variance_vs_theory(ax, curves: dict, predictions: dict, norms=None, log: bool = True) -> None:
    """Measured residual variance (mean and seed band) against the prediction (dashed), one colour per norm."""
    import numpy as np

    for norm in norms or list(curves):
        mean, std = _curve(curves[norm], "mean"), _curve(curves[norm], "std")
        depth = np.arange(len(mean))
        c = NORM_COLORS.get(norm, "0.3")
        ax.plot(depth, mean, color=c, lw=2, label=f"{NORM_LABELS.get(norm, norm)} measured")
        ax.fill_between(depth, np.maximum(mean - std, mean * 0.05), mean + std, color=c, alpha=0.2, lw=0)
        if norm in predictions:
            ax.plot(depth, np.asarray(predictions[norm]), color="k", ls="--", lw=1)
    ax.plot([], [], color="k", ls="--", lw=1, label="mean-field prediction")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("block ℓ (0 = embeddings)")
    ax.set_ylabel("residual variance")


def plot_variance_vs_theory(curves: dict, predictions: dict, norms=None, title: str | None = None):
    """Left: measured variance after every block vs prediction; right: measured / predicted - 1 (notebook 02)."""
    import numpy as np

    fig, (ax, ax2) = subplots(1, 2, figsize=(12, 4.2))
    draw_variance_vs_theory(ax, curves, predictions, norms)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    for norm in norms or list(curves):
        if norm in predictions:
            mean = _curve(curves[norm], "mean")
            dev = mean[1:] / np.asarray(predictions[norm])[1:] - 1
            ax2.plot(np.arange(1, len(mean)), 100 * dev, color=NORM_COLORS.get(norm, "0.3"),
                     label=NORM_LABELS.get(norm, norm))
    ax2.axhspan(-10, 10, color="0.85", alpha=0.5, lw=0, label="±10%")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("block ℓ")
    ax2.set_ylabel("measured / predicted − 1  (%)")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_recursions(series: dict, title: str | None = None, log: bool = True, ax=None, xlabel: str = "step ℓ"):
    """Labelled curves against depth: ``series[label] = (depth, values)`` or ``(depth, values, style_dict)``."""
    fig = None
    if ax is None:
        fig, ax = subplots()
    for label, s in series.items():
        depth, values, *style = s
        ax.plot(depth, values, label=label, **(style[0] if style else {}))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("σ²")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_block_probes(probes: dict, ylabel: str, title: str | None = None, log: bool = True, ax=None, reference=None):
    """A per-block probe (Jacobian distance, gradient norm) per norm: mean over seeds, dots at probed blocks.

    ``probes[norm]`` is a theory.BlockProbe or its to_dict(); ``reference`` = optional (blocks, values, label).
    """
    import numpy as np

    fig = None
    if ax is None:
        fig, ax = subplots()
    for norm, p in probes.items():
        blocks = p["blocks"] if isinstance(p, dict) else p.blocks
        vals = np.asarray(p["values"] if isinstance(p, dict) else p.values, dtype=float)
        c = NORM_COLORS.get(norm, "0.3")
        ax.plot(blocks, vals.mean(0), "o-", color=c, ms=3, label=NORM_LABELS.get(norm, norm))
        if len(vals) > 1:
            ax.fill_between(blocks, vals.min(0), vals.max(0), color=c, alpha=0.2, lw=0)
    if reference is not None:
        ax.plot(reference[0], reference[1], "k--", lw=1, label=reference[2])
    if log:
        ax.set_yscale("log")
        ax.set_xscale("log")
    ax.set_xlabel("block ℓ")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def draw_variance_explorer(ax, data: dict) -> None:
    """One panel of notebook 02's explorer, from ``theory.explore_variance``'s dict."""
    c = NORM_COLORS.get(data["norm"], "0.3")
    depth = data["depth"]
    if "measured" in data:
        ax.plot(depth, data["measured"], color=c, lw=2.2, label="measured at init (ρ = 0)")
    ax.plot(depth, data["mean_field"], "k--", lw=1, label="mean-field prediction")
    ax.plot(depth, data["linear"], ":", color="0.4", lw=1.2, label="recursion, ρ = 0 (b² of a deep block)")
    ax.plot(depth, data["rho_curve"], color=c, ls="-.", lw=1.4, label=f"recursion with ρ = {data['rho']:g}")
    ax.set_yscale("log")
    ax.set_xlabel("block ℓ")
    ax.set_ylabel("residual variance")
    ax.legend(fontsize=7, loc="lower right")


# ============================================================================ notebook 05: LNS for your own HF model
# Plot functions of notebook 05. They take per-layer lists and (step, loss) lists, never models.


def plot_lns_residual_rms(rms_by_label: dict, title: str | None = None):
    """Residual-stream RMS after each decoder layer (index 0 = embeddings), one line per label. Notebook 05.

    Labels containing "LNS" are drawn in the LNS colour, the others in the Pre-LN colour.
    """
    fig, ax = subplots()
    for label, rms in rms_by_label.items():
        color = NORM_COLORS["lns" if "LNS" in label else "pre"]
        ax.plot(range(len(rms)), list(rms), marker="o", ms=3, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("after decoder layer ℓ (0 = embeddings)")
    ax.set_ylabel("residual-stream RMS (first position excluded)")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def plot_lns_trainer_curves(curves: dict, title: str | None = None, plateau: float | None = UNIGRAM_NATS):
    """Validation loss vs step for each norm (``{"pre": (steps, losses), "lns": ...}``). Notebook 05."""
    fig, ax = subplots()
    for norm, (steps, losses) in curves.items():
        ax.plot(steps, losses, marker="o", color=NORM_COLORS.get(norm, "gray"), label=NORM_LABELS.get(norm, norm))
    if plateau is not None:
        ax.axhline(plateau, color="gray", ls=":", lw=1, label="unigram plateau (≈3.3 nats)")
    ax.set_xlabel("training step (Hugging Face Trainer)")
    ax.set_ylabel("validation loss (nats / character)")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


# ============================================================================ notebooks 01 and 06: a real LLM
# Plot functions of notebooks 01 (the curse in a real LLM) and 06 (exploiting it). They take the plain dicts of
# ``analysis.layer_report`` / ``compress.compression_report`` (live or from the results pack), never models.


def plot_residual_growth(rms: list, rms_with_first: list | None = None, contrast: dict | None = None,
                         title: str | None = None):
    """Residual RMS after each layer (0 = embeddings), log axis; optional Post-LN contrast panel. Notebook 01.

    ``contrast``: ``{"label": str, "rms": list}`` drawn on a linear axis beside it.
    """
    fig, axes = subplots(1, 2 if contrast else 1)
    ax = axes[0] if contrast else axes
    ax.plot(range(len(rms)), rms, marker="o", ms=3, color=NORM_COLORS["pre"], label="ordinary tokens (position ≥ 1)")
    if rms_with_first is not None:
        ax.plot(range(len(rms_with_first)), rms_with_first, ls="--", color="gray", label="including position 0 (attention sink)")
    ax.set_yscale("log")
    ax.set_xlabel("after layer ℓ (0 = embeddings)")
    ax.set_ylabel("residual-stream RMS")
    ax.set_title(title or "Pre-LN: the residual stream grows with depth")
    ax.legend()
    if contrast:
        ax2 = axes[1]
        ax2.plot(range(len(contrast["rms"])), contrast["rms"], marker="o", color=NORM_COLORS["post"])
        ax2.set_ylim(0, max(contrast["rms"]) * 1.3)
        ax2.set_xlabel("after layer ℓ (0 = embeddings)")
        ax2.set_ylabel("hidden-state RMS (linear axis)")
        ax2.set_title(contrast.get("label", "Post-LN contrast"))
    return fig


def plot_block_heatmap(heat, title: str | None = None):
    """Gromov et al.'s heatmap: angular distance d(h_l, h_{l+n}) by start layer l (x) and block size n (y). Notebook 01."""
    import numpy as np

    h = np.asarray(heat, dtype=float)
    fig, ax = subplots()
    im = ax.imshow(h, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=np.nanmax(h),
                   extent=(-0.5, h.shape[1] - 0.5, 0.5, h.shape[0] + 0.5))
    best = [int(np.nanargmin(row)) for row in h]
    ax.plot(best, range(1, h.shape[0] + 1), "w.", ms=4, label="most similar block for each n")
    ax.set_xlabel("first layer of the block, l")
    ax.set_ylabel("block size n (layers)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="angular distance d(h_l, h_{l+n})")
    ax.set_title(title or "Which blocks of layers barely change the stream?")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_removal_cost(ratio: list, angular: list | None = None, reference: list | None = None,
                      layers: list | None = None, title: str | None = None):
    """Perplexity ratio when each single layer is removed (log axis), beside the angular distance it is
    often predicted from. ``reference``: the stored larger-sample ratios, drawn as a line. Notebook 01."""
    n_panels = 2 if angular is not None else 1
    fig, axes = subplots(n_panels, 1, sharex=True)
    ax = axes[0] if n_panels == 2 else axes
    xs = layers if layers is not None else list(range(len(ratio)))
    ax.bar(xs, [r - 1 for r in ratio], bottom=1, color=NORM_COLORS["pre"], alpha=0.8, label="measured live")
    if reference is not None:
        ax.plot(range(len(reference)), reference, "k.-", lw=1, ms=4, label="stored run (4,096 tokens)")
    ax.set_yscale("log")
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_ylabel("perplexity × when removed")
    ax.set_title(title or "What each layer is worth: remove it and measure")
    ax.legend()
    if n_panels == 2:
        axes[1].bar(range(len(angular)), angular, color="#7f7f7f")
        axes[1].set_ylabel("angular distance\ninput → output")
        axes[1].set_xlabel("layer removed (0-based)")
    else:
        ax.set_xlabel("layer removed (0-based)")
    return fig


def plot_cost_vs_angular(angular: list, ratio: list, title: str | None = None):
    """Scatter: does a layer's angular distance predict what removing it costs? Layers labelled. Notebook 01."""
    fig, ax = subplots()
    ax.scatter(angular, ratio, color=NORM_COLORS["pre"], s=18)
    for i, (a, r) in enumerate(zip(angular, ratio)):
        ax.annotate(str(i), (a, r), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("angular distance between the layer's input and output")
    ax.set_ylabel("perplexity × when removed")
    ax.set_title(title or "Angular distance predicts removal cost only roughly")
    return fig


_RULE_STYLE = {"angular": ("#1f77b4", "o"), "block_influence": ("#9467bd", "s"), "measured": ("#2ca02c", "^"),
               "last": ("#d62728", "v")}


def plot_drop_curves(curves: dict, base_ppl: float, labels: dict | None = None, stored: dict | None = None,
                     title: str | None = None):
    """Perplexity against layers dropped, one line per rule (``{rule: (ns, ppl)}``). ``stored``: the same from
    the results pack, drawn faint. Notebook 06."""
    fig, ax = subplots()
    for rule, (ns, ppl) in curves.items():
        color, marker = _RULE_STYLE.get(rule, ("gray", "."))
        ax.plot(ns, ppl, marker=marker, color=color, label=(labels or {}).get(rule, rule))
        if stored and rule in stored:
            ax.plot(*stored[rule], color=color, alpha=0.35, lw=3)
    ax.axhline(base_ppl, color="gray", ls=":", label="full model")
    ax.set_yscale("log")
    ax.set_xlabel("layers removed, n (of 30)")
    ax.set_ylabel("perplexity (Shakespeare, held-out)")
    ax.set_title(title or "Which layers to drop? Rules compared" + (" (faint: stored run)" if stored else ""))
    ax.legend(fontsize="small")
    return fig


def plot_sparsity(table: dict, live: dict | None = None, title: str | None = None):
    """Left: perplexity per method at each sparsity (log axis; ``live``: another table drawn as black dots).
    Right: OWL's per-layer sparsity. Notebook 06."""
    import numpy as np

    rows = table["rows"]
    sps = sorted({r["sparsity"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {"magnitude": "#7f7f7f", "wanda": "#1f77b4", "owl": "#2ca02c"}
    fig, (ax, ax2) = subplots(1, 2)
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        vals = [next((np.exp(r["loss"]) for r in rows if r["method"] == m and r["sparsity"] == s), np.nan) for s in sps]
        ax.bar(np.arange(len(sps)) + (k - (len(methods) - 1) / 2) * width, vals, width, color=colors.get(m, "gray"),
               label={"owl": "OWL (Wanda, layer-wise)", "wanda": "Wanda (uniform)",
                      "magnitude": "magnitude (uniform)"}.get(m, m))
        if live is not None:
            pts = [(i, np.exp(r["loss"])) for i, s in enumerate(sps) for r in live["rows"]
                   if r["method"] == m and r["sparsity"] == s]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(np.array(xs) + (k - (len(methods) - 1) / 2) * width, ys, "k.", ms=9,
                        label="this run" if k == 0 else None)
    ax.axhline(np.exp(table["dense_loss"]), color="black", ls=":", label="dense" + (" (bars' run)" if live else ""))
    ax.set_xticks(range(len(sps)), [f"{s:.0%}" for s in sps])
    ax.set_yscale("log")
    ax.set_xlabel("unstructured sparsity of every block")
    ax.set_ylabel("perplexity")
    ax.legend(fontsize="small")
    ax.set_title(title or ("Pruning weights: uniform vs layer-wise" + ("\n(bars: stored run; dots: this run)" if live else "")))
    for r in rows:
        if r["method"] == "owl":
            ax2.plot(range(len(r["ratios"])), r["ratios"], marker=".", label=f"OWL at {r['sparsity']:.0%}")
    ax2.set_xlabel("layer")
    ax2.set_ylabel("sparsity given to the layer")
    ax2.set_title("OWL: fewer zeros where outliers live")
    ax2.legend(fontsize="small")
    return fig


# ------------------------------------------------------------------------------ notebook 07: the scale map


def _map_series(rows: list[dict], corpus: str, d_model: int, gap_key: str) -> dict:
    """{tokens: [(depth, gap row, Pre-LN redundancy, LNS redundancy), ...]} of one corpus and width."""
    series: dict = {}
    for r in rows:
        p = r["point"]
        if not r.get("complete") or p["corpus"] != corpus or p["d_model"] != d_model or r.get(gap_key) is None:
            continue
        pre = r["arms"].get("pre@0.003", {}).get("redundancy")
        lns = r["arms"].get("lns@0.003", {}).get("redundancy")
        series.setdefault(p["tokens"], []).append((p["n_layers"], r[gap_key], pre, lns))
    return {t: sorted(v, key=lambda x: x[0]) for t, v in sorted(series.items())}


def plot_scale_map(rows: list[dict], gap_key: str = "gap_same_lr", title: str | None = None):
    """Left: LNS - Pre-LN validation gap (mean +- sd over paired seeds) against depth, one line per token budget.
    Right: Pre-LN's (solid) and LNS's (dashed) loss increase when one block of the deepest third is skipped.

    Takes ``results.load("scale_map")["data"]["summary"]`` rows. Notebook 07.
    """
    fig, (ax, ax2) = subplots(1, 2)
    styles = [("gcide", 128, "o", "-"), ("gcide-bpe", 128, "s", ":"), ("gcide", 256, "D", "--")]
    token_colors = {}
    for corpus, width, marker, ls in styles:
        for tokens, pts in _map_series(rows, corpus, width, gap_key).items():
            color = token_colors.setdefault(tokens, f"C{len(token_colors)}")
            depth = [p[0] for p in pts]
            label = f"{tokens / 1e6:g}M tokens, {'BPE' if corpus.endswith('bpe') else 'char'}, d{width}"
            ax.errorbar(depth, [p[1]["mean"] for p in pts], yerr=[p[1]["sd"] for p in pts], marker=marker, ls=ls,
                        color=color, capsize=3, label=label)
            for k, (norm_ls, alpha) in enumerate((("-", 1.0), ("--", 0.6))):
                red = [p[2 + k] for p in pts]
                keep = [(d, r) for d, r in zip(depth, red) if r is not None]
                if keep:
                    ax2.errorbar([d for d, _ in keep], [max(r["mean_delta"], 1e-5) for _, r in keep],
                                 yerr=[r["sd_delta"] for _, r in keep], marker=marker, ls=norm_ls, color=color,
                                 alpha=alpha, capsize=3, label=f"{'Pre-LN' if k == 0 else 'LNS'}, {label}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth (blocks)")
    ax.set_ylabel("LNS − Pre-LN final val loss (nats)")
    ax.set_title(title or "below 0: LNS ahead · above 0: Pre-LN ahead")
    ax.legend(fontsize="x-small")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("depth (blocks)")
    ax2.set_ylabel("loss increase when one deep block is skipped")
    ax2.set_title("deepest third: mean skip cost per block")
    ax2.legend(fontsize="xx-small", ncol=1)
    for a in (ax, ax2):
        depths = sorted({r["point"]["n_layers"] for r in rows if r.get("complete")})
        if depths:
            a.set_xticks(depths, [str(d) for d in depths])
    ax2.set_ylim(bottom=max(1e-5, ax2.get_ylim()[0]))
    return fig
