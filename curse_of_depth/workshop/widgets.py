"""Interactive explorers that degrade to a static figure when nobody can move a slider (notebook
02).

An explorer is a drawing function ``draw(ax, **params)`` plus its controls. With a front end
attached (``runtime.frontend_attached``), ``explore`` shows ipywidgets controls and redraws on every
change; without one (nbconvert, nbval, a script, and so GitHub's stored outputs) it draws the same
function at a few preset values as one static figure, so the committed notebook shows something real
and CI tests it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import plots
from .runtime import frontend_attached


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


def preset_label(preset: Mapping[str, Any]) -> str:
    """Panel title of a static preset, e.g. ``norm=pre, rho=0.5``."""
    return ", ".join(f"{k}={v}" for k, v in preset.items())


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


def interactive_panel(draw: Callable[..., None], controls: Mapping[str, Any],
                      defaults: Mapping[str, Any]):
    """The ipywidgets version: controls on top, the figure below, redrawn by ``draw`` on every
    change."""
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
    display(w.VBox([w.HBox(list(widgets.values()), layout=w.Layout(flex_flow="row wrap")), out]))
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
    panels of the static figure. ``interactive`` overrides ``runtime.frontend_attached``. Returns
    None, so the cell's text output stays empty. Used in notebook 02.
    """
    missing = set(controls) - set(defaults)
    if missing:
        raise ValueError(f"controls without a default value: {sorted(missing)}; add them to "
                         "defaults")
    if interactive if interactive is not None else frontend_attached():
        interactive_panel(draw, controls, defaults)
        return None
    plots.show(static_figure(draw, presets, defaults, ncols=ncols, sharey=sharey, title=title))
    return None
