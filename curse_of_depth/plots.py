"""One figure style for the whole kit. Plot functions take result data (dicts/arrays), never models.

Each topic's plotting functions live below in their own section; notebooks call
them so a fix lands once.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

NORM_COLORS = {"pre": "#d62728", "lns": "#1f77b4", "post": "#2ca02c", "mix": "#9467bd"}
NORM_LABELS = {"pre": "Pre-LN", "lns": "Pre-LN + LNS", "post": "Post-LN", "mix": "Mix-LN"}

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
# Plot functions of notebooks 03 (train it live) and 04 (inside the trained models). They take ``live.Band``
# objects and plain per-block lists, never models.

UNIGRAM_NATS = 3.30  # character unigram entropy of the Shakespeare corpus (probe_training.md): the starting plateau


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

    ``gaps`` maps a label to a ``live.PairedGap``; below zero means LNS is ahead.
    """
    fig, ax = subplots(figsize=(max(4.5, 2.2 * len(gaps)), 3.6))
    for i, gap in enumerate(gaps.values()):
        xs = [i + 0.06 * (j - (gap.n - 1) / 2) for j in range(gap.n)]
        ax.scatter(xs, gap.diffs, color="k", s=14, zorder=3)
        ax.errorbar(i + 0.25, gap.mean, yerr=gap.sd, fmt="s", color="#444", capsize=4)
    ax.axhline(0, color="gray", lw=0.8)
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
