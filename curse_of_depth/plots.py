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
