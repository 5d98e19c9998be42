"""Interactive explorers that degrade to a static figure when nobody can move a slider (notebook
02).

An explorer is a drawing function ``draw(ax, **params)`` plus its controls. With a front end
attached (``runtime.frontend_attached``), ``explore`` shows ipywidgets controls and redraws on every
change; without one (nbconvert, nbval, a script, and so GitHub's stored outputs) it draws the same
function at a few preset values as one static figure, so the committed notebook shows something real
and CI tests it.

A kernel cannot tell which front end shows its output: a JupyterLab tab and a RISE slideshow of the
same notebook share one kernel, and RISE cannot render widgets (jupyterlab-contrib/rise issue 119).
So the live explorer's output also carries the static small multiples as a PNG (and a one-line
text): a front end with a widget manager shows the controls, one without shows the preset panels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import plots
from .runtime import frontend_attached

# the live explorer's stand-in where widgets cannot render (RISE slides, static viewers)
FALLBACK_NOTE = ("The live controls run in the notebook view (JupyterLab): slides and static "
                 "viewers cannot show widgets")


def make_control(name: str, spec: Any, value: Any):
    """One ipywidgets control from a compact spec (notebook 02).

    ``(min, max, step)`` of ints -> IntSlider, with a float anywhere -> FloatSlider; a list or tuple
    of other values -> Dropdown; an existing ipywidgets widget is used as it is. Sliders update on
    release only, so a slow ``draw`` runs once per change.
    """
    import ipywidgets as w

    if isinstance(spec, w.Widget):
        return spec
    style = {"description_width": "initial"}
    if isinstance(spec,
                  tuple) and len(spec) == 3 and all(isinstance(v, (int, float)) for v in spec):
        lo, hi, step = spec
        if not lo <= value <= hi:
            raise ValueError(f"control {name!r}: default {value!r} lies outside its range [{lo}, "
                             f"{hi}]")
        cls = w.IntSlider if all(isinstance(v, int) for v in (lo, hi, step,
                                                              value)) else w.FloatSlider
        return cls(value=value, min=lo, max=hi, step=step, description=name,
                   continuous_update=False, style=style)
    if isinstance(spec, (list, tuple)):
        if value not in spec:
            raise ValueError(f"control {name!r}: default {value!r} is not one of its options "
                             f"{list(spec)}")
        return w.Dropdown(options=list(spec), value=value, description=name, style=style)
    raise ValueError(f"control {name!r}: spec {spec!r} is neither (min, max, step), a list of "
                     "options, nor a widget")


_PRESET_NAMES = {"rho": "ρ"}


def preset_label(preset: Mapping[str, Any]) -> str:
    """Panel title of a static preset, e.g. ``Pre-LN, ρ=0.5`` (a norm by its label, other controls as
    name=value)."""
    from ..model import NORM_LABELS

    return ", ".join(NORM_LABELS[v] if k == "norm" and v in NORM_LABELS else f"{_PRESET_NAMES.get(k, k)}={v}"
                     for k, v in preset.items())


def static_figure(draw: Callable[..., None], presets: Sequence[Mapping[str, Any]],
                  defaults: Mapping[str, Any], ncols: int | None = None, sharey: bool = False,
                  title: str | None = None):
    """Small multiples: ``draw(ax, **{**defaults, **preset})`` in one panel per preset. Returns the
    figure."""
    if not presets:
        raise ValueError("presets is empty: give at least one dict of control values for the "
                         "static figure")
    unknown = {k for p in presets for k in p} - set(defaults)
    if unknown:
        raise ValueError(f"presets name controls that have no default: {sorted(unknown)}")
    n = len(presets)
    ncols = ncols or min(n, 2 if n == 4 else 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plots.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    for ax, preset in zip(axes.flat, presets):
        draw(ax, **{**defaults, **preset})
        ax.set_title(preset_label(preset), fontsize="medium")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def png_bytes(fig, close: bool = True) -> bytes:
    """The figure as PNG bytes, as the inline backend would show it (tight bounding box); closes it
    by default, so the inline backend does not show it a second time at the end of the cell."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    if close:
        plt.close(fig)
    return buf.getvalue()


def with_fallback(widget, png: bytes, text: str = FALLBACK_NOTE) -> dict:
    """The display bundle of ``widget`` plus a static stand-in: ``image/png`` and a ``text/plain``
    line.

    A front end with a widget manager (JupyterLab, Notebook 7, VS Code) ranks the widget view first;
    one without (RISE slides, nbviewer or GitHub showing a notebook saved from JupyterLab) falls
    back to the PNG, and a text viewer to the line, never to the widget's ``VBox(children=...)``
    repr.
    """
    import base64

    data = dict(widget._repr_mimebundle_())
    data["image/png"] = base64.b64encode(png).decode("ascii")
    data["text/plain"] = text
    return data


def interactive_panel(draw: Callable[..., None], controls: Mapping[str, Any],
                      defaults: Mapping[str, Any], fallback: Callable[[], Any] | None = None):
    """The ipywidgets version: controls on top, the figure below, redrawn by ``draw`` on every
    change.

    ``fallback()`` returns the figure that front ends without widgets show instead
    (``with_fallback``); ``explore`` passes the static small multiples. Returns the controls by
    name.
    """
    import ipywidgets as w
    from IPython.display import display

    widgets = {name: make_control(name, spec, defaults[name]) for name, spec in controls.items()}
    fixed = {k: v for k, v in defaults.items() if k not in widgets}
    out = w.Output()

    def redraw(**params) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plots.subplots()
            draw(ax, **fixed, **params)
            plots.show(fig)

    w.interactive_output(redraw, widgets)
    panel = w.VBox([w.HBox(list(widgets.values()), layout=w.Layout(flex_flow="row wrap")), out])
    if fallback is None:
        display(panel)
    else:
        display(with_fallback(panel, png_bytes(fallback())), raw=True)
    return widgets


def explore(draw: Callable[..., None], controls: Mapping[str, Any],
            presets: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any], *,
            ncols: int | None = None, sharey: bool = False, title: str | None = None,
            interactive: bool | None = None) -> None:
    """Show ``draw`` with live controls, or as small multiples at ``presets`` when no front end is
    attached.

    ``draw(ax, **params)`` draws on a matplotlib axes (keep it a thin wrapper around tested library
    functions); ``controls`` maps a parameter to a spec (see ``make_control``); ``defaults`` gives
    every parameter's starting value (parameters without a control stay fixed); ``presets`` are the
    panels of the static figure. ``interactive`` overrides ``runtime.frontend_attached``. The live
    panel also carries the static figure for front ends that cannot show widgets (RISE slides; see
    ``with_fallback``), titled with ``FALLBACK_NOTE``. Returns None, so the cell's text output stays
    empty. Used in notebook 02.
    """
    missing = set(controls) - set(defaults)
    if missing:
        raise ValueError(f"controls without a default value: {sorted(missing)}; add them to "
                         "defaults")
    if interactive if interactive is not None else frontend_attached():
        slides_title = f"Explorer, static view: {len(presets)} preset settings\n{FALLBACK_NOTE}"
        interactive_panel(draw, controls, defaults, fallback=lambda: static_figure(
            draw, presets, defaults, ncols=ncols, sharey=sharey, title=slides_title))
        return None
    plots.show(static_figure(draw, presets, defaults, ncols=ncols, sharey=sharey, title=title))
    return None
