"""Tests of curse_of_depth.workshop.widgets: the front-end rule, controls, static small multiples, live redraw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w  # noqa: E402
import pytest  # noqa: E402

from curse_of_depth.workshop import widgets  # noqa: E402

LAB = ["/usr/bin/python -m ipykernel_launcher -f kernel.json", "/usr/bin/python /usr/bin/jupyter-lab"]


@pytest.mark.parametrize("value, expected", [("interactive", True), ("1", True), ("static", False), ("off", False)])
def test_env_var_forces_the_mode(value, expected):
    assert widgets.frontend_attached(env={"COD_WIDGETS": value}, ancestors=[], in_kernel=False) is expected
    assert widgets.frontend_attached(env={"COD_WIDGETS": value}, ancestors=["pytest"], in_kernel=True) is expected


def test_unknown_env_value_raises():
    with pytest.raises(ValueError, match="COD_WIDGETS"):
        widgets.frontend_attached(env={"COD_WIDGETS": "sometimes"})


@pytest.mark.parametrize("runner", [
    "/venv/bin/python /venv/bin/jupyter-nbconvert --to notebook --execute 02.ipynb",
    "/venv/bin/python -m pytest --nbval-lax notebooks/02.ipynb",
    "/venv/bin/python /venv/bin/papermill in.ipynb out.ipynb",
])
def test_headless_runner_as_parent_means_static(runner):
    assert not widgets.frontend_attached(env={}, ancestors=["python -m ipykernel_launcher", runner], in_kernel=True)


def test_a_kernel_under_a_server_is_interactive_and_no_kernel_is_static():
    assert widgets.frontend_attached(env={}, ancestors=LAB, in_kernel=True)
    assert not widgets.frontend_attached(env={}, ancestors=LAB, in_kernel=False)


def test_this_test_process_is_detected_as_headless(monkeypatch):
    monkeypatch.delenv("COD_WIDGETS", raising=False)
    assert not widgets.frontend_attached()


def test_make_control_kinds_and_errors():
    assert isinstance(widgets.make_control("depth", (8, 128, 8), 64), w.IntSlider)
    rho = widgets.make_control("rho", (0.0, 1.0, 0.05), 0.5)
    assert isinstance(rho, w.FloatSlider) and rho.value == 0.5 and rho.continuous_update is False
    dd = widgets.make_control("norm", ["pre", "lns"], "lns")
    assert isinstance(dd, w.Dropdown) and dd.value == "lns"
    own = w.Checkbox(value=True)
    assert widgets.make_control("x", own, True) is own
    with pytest.raises(ValueError, match="outside"):
        widgets.make_control("depth", (8, 128, 8), 256)
    with pytest.raises(ValueError, match="not one of"):
        widgets.make_control("norm", ["pre"], "deepnorm")
    with pytest.raises(ValueError, match="spec"):
        widgets.make_control("x", {"a": 1}, 1)


def _recorder():
    calls = []

    def draw(ax, **params):
        calls.append(params)
        ax.plot([0, 1], [0, params["a"]])

    return draw, calls


def test_static_figure_one_panel_per_preset():
    draw, calls = _recorder()
    fig = widgets.static_figure(draw, [{"a": 1}, {"a": 2}, {"a": 3}], {"a": 0, "b": "x"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and [ax.get_title() for ax in visible] == ["a=1", "a=2", "a=3"]
    assert calls == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 3, "b": "x"}]
    with pytest.raises(ValueError, match="no default"):
        widgets.static_figure(draw, [{"c": 1}], {"a": 0})
    with pytest.raises(ValueError, match="empty"):
        widgets.static_figure(draw, [], {"a": 0})


def test_explore_static_draws_presets_and_returns_none():
    draw, calls = _recorder()
    assert widgets.explore(draw, {"a": (0, 5, 1)}, [{"a": 4}, {"a": 5}], {"a": 1}, interactive=False) is None
    assert [c["a"] for c in calls] == [4, 5]
    with pytest.raises(ValueError, match="without a default"):
        widgets.explore(draw, {"a": (0, 5, 1), "z": [1]}, [{"a": 4}], {"a": 1}, interactive=False)


def test_interactive_panel_redraws_on_change():
    draw, calls = _recorder()
    controls = widgets.interactive_panel(draw, {"a": (0, 5, 1)}, {"a": 1, "b": "fixed"})
    assert calls[-1] == {"b": "fixed", "a": 1}  # drawn once at the defaults
    controls["a"].value = 3
    assert calls[-1] == {"b": "fixed", "a": 3}


def test_live_explorer_carries_a_static_stand_in(monkeypatch):
    # RISE slides (and static viewers of a notebook saved from JupyterLab) cannot render widgets: the live
    # explorer's output bundle also holds the preset figure as a PNG and a line saying where the controls are
    import base64

    import IPython.display
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False, **kw: shown.append((obj, raw)))
    draw, calls = _recorder()
    figs_before = set(plt.get_fignums())
    widgets.explore(draw, {"a": (0, 5, 1)}, [{"a": 4}, {"a": 5}], {"a": 1}, interactive=True)
    (bundle, raw), = shown
    assert raw is True
    assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert bundle["text/plain"] == widgets.FALLBACK_NOTE and "notebook view" in widgets.FALLBACK_NOTE
    assert "VBox(" not in bundle["text/plain"]
    assert sorted(c["a"] for c in calls) == [1, 4, 5]  # the live figure at the default, the two presets
    # the stand-in figure is closed, so the inline backend does not show it a second time
    assert set(plt.get_fignums()) == figs_before


def test_interactive_panel_without_fallback_displays_the_widget_only(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    draw, _ = _recorder()
    widgets.interactive_panel(draw, {"a": (0, 5, 1)}, {"a": 1})
    assert len(shown) == 1 and isinstance(shown[0], w.VBox)
