"""The projector view for a whole series: one environment variable, read when a kernel draws its first figure."""

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest

from curse_of_depth.workshop import plots


@pytest.fixture
def fresh_kernel(monkeypatch):
    """As in a new kernel: no kit figure drawn yet; matplotlib's settings restored afterwards."""
    with mpl.rc_context():
        mpl.rcdefaults()
        monkeypatch.setattr(plots, "_styled", False)
        yield monkeypatch


@pytest.mark.parametrize("value,projector", [("1", True), ("yes", True), ("on", True), ("0", False), ("", False)])
def test_cod_present_sets_the_projector_view_at_the_first_figure(fresh_kernel, value, projector):
    fresh_kernel.setenv(plots.PRESENT_ENV, value)
    fig, _ = plots.subplots()
    size = tuple(fig.get_size_inches())
    plt.close(fig)
    want = plots._PROJECTOR if projector else plots._BASE
    assert mpl.rcParams["font.size"] == want["font.size"] and size == tuple(want["figure.figsize"])


def test_unset_means_the_normal_view(fresh_kernel):
    fresh_kernel.delenv(plots.PRESENT_ENV, raising=False)
    assert not plots.projector_requested()
    fig, _ = plots.subplots()
    plt.close(fig)
    assert mpl.rcParams["font.size"] == plots._BASE["font.size"]


def test_projector_view_previews_without_changing_the_rest(fresh_kernel):
    fresh_kernel.delenv(plots.PRESENT_ENV, raising=False)
    with plots.projector_view():
        fig, _ = plots.subplots()
        assert tuple(fig.get_size_inches()) == tuple(plots._PROJECTOR["figure.figsize"])
        plt.close(fig)
    assert mpl.rcParams["font.size"] == plots._BASE["font.size"]
