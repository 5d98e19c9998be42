"""The core's progress bars (curse_of_depth.workshop.progress): a text bar in a terminal, none in a kernel nobody watches
(nbconvert, nbval), and a live widget bar that replaces itself when it closes (no frozen "0%" in saved notebooks)."""

import pytest

from curse_of_depth.workshop import progress as _progress


class _Handle:
    def __init__(self):
        self.updates = []

    def update(self, obj, raw=False):
        self.updates.append((obj, raw))


def _fake_frontend(monkeypatch, attached: bool, in_kernel: bool = True):
    import sys

    from curse_of_depth.workshop import runtime

    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(runtime, "frontend_attached", lambda: attached)
    monkeypatch.setattr(runtime, "_in_kernel", lambda: in_kernel)


def test_progress_bar_outside_a_notebook_is_tqdms_text_bar(capsys):
    from tqdm.std import tqdm

    bar = _progress.progress_bar(total=3, desc="steps")
    assert type(bar) is tqdm and not bar.disable
    bar.update(3)
    bar.close()
    assert "steps: 100%" in capsys.readouterr().err


def test_progress_bar_is_off_in_a_kernel_nobody_watches(monkeypatch):
    # nbconvert / nbval: committed outputs carry no bar (it used to stay behind as a widget frozen at "0%")
    _fake_frontend(monkeypatch, attached=False)
    bar = _progress.progress_bar(range(4), desc="x", leave=False)
    assert bar.disable and list(bar) == [0, 1, 2, 3]


@pytest.mark.parametrize("leave", [False, True])
def test_live_bar_replaces_its_widget_on_close(monkeypatch, leave):
    import IPython.display

    _fake_frontend(monkeypatch, attached=True)
    handles, shown = [], []

    def fake_display(obj, display_id=False, **kw):
        shown.append(obj)
        handles.append(_Handle())
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", fake_display)
    bar = _progress.progress_bar(total=5, desc="removing each layer", leave=leave)
    assert len(shown) == 1 and type(bar).__name__ == "LiveBar"  # the widget, shown once, under a display id
    bar.update(5)
    bar.close()
    (obj, raw), = handles[0].updates
    assert raw is True
    if leave:  # the finished line, as text: no widget left that needs a live kernel
        assert set(obj) == {"text/plain"} and "removing each layer: 100%" in obj["text/plain"]
    else:
        assert obj == {}
    bar.close()  # a second close changes nothing
    assert len(handles[0].updates) == 1
