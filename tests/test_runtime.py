"""Threads: the kit uses the free physical cores, never more (oversubscription was measured 36x slower)."""

import builtins
import io

import pytest
import torch

from curse_of_depth import runtime


def fake_loadavg(monkeypatch, runnable: int):
    real_open = builtins.open

    def fake(path, *a, **k):
        if path == "/proc/loadavg":
            return io.StringIO(f"3.00 2.00 1.00 {runnable}/300 12345\n")
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake)


@pytest.mark.parametrize("runnable,busy", [(1, 0), (2, 1), (5, 4)])
def test_busy_cores_counts_other_runnable_tasks_not_the_load_average(monkeypatch, runnable, busy):
    fake_loadavg(monkeypatch, runnable)  # a load average of 3 from earlier jobs must not count
    assert runtime.busy_cores(interval_s=0) == busy


def test_free_cores_never_below_one(monkeypatch):
    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0)
    assert runtime.free_physical_cores() == 2
    monkeypatch.setattr(runtime, "busy_cores", lambda: 7)
    assert runtime.free_physical_cores() == 1


def test_configure_threads_precedence(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("COD_THREADS", "1")
        assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
        assert runtime.configure_threads(2) == 2  # an explicit argument wins
        monkeypatch.setenv("COD_THREADS", "zero")
        with pytest.raises(ValueError, match="positive integer"):
            runtime.configure_threads()
    finally:
        torch.set_num_threads(before)


def test_bad_mode_names_the_choices(monkeypatch):
    monkeypatch.setenv("COD_MODE", "fast")
    with pytest.raises(ValueError, match="smoke, workshop, full"):
        runtime.mode()
    monkeypatch.setenv("COD_MODE", "smoke")
    assert runtime.pick(1, 2, 3) == 1


def test_import_shortens_openmp_spinning_unless_the_user_chose():
    import os
    import subprocess
    import sys

    code = "import os, curse_of_depth; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1000"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "GOMP_SPINCOUNT": "5"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "5"


# ------------------------------------------------------------------------------------------------- progress bars


class _Handle:
    def __init__(self):
        self.updates = []

    def update(self, obj, raw=False):
        self.updates.append((obj, raw))


def _fake_frontend(monkeypatch, attached: bool, in_kernel: bool = True):
    import sys

    from curse_of_depth import widgets

    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(widgets, "frontend_attached", lambda: attached)
    monkeypatch.setattr(widgets, "_in_kernel", lambda: in_kernel)


def test_progress_bar_outside_a_notebook_is_tqdms_text_bar(capsys):
    from tqdm.std import tqdm

    bar = runtime.progress_bar(total=3, desc="steps")
    assert type(bar) is tqdm and not bar.disable
    bar.update(3)
    bar.close()
    assert "steps: 100%" in capsys.readouterr().err


def test_progress_bar_is_off_in_a_kernel_nobody_watches(monkeypatch):
    # nbconvert / nbval: committed outputs carry no bar (it used to stay behind as a widget frozen at "0%")
    _fake_frontend(monkeypatch, attached=False)
    bar = runtime.progress_bar(range(4), desc="x", leave=False)
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
    bar = runtime.progress_bar(total=5, desc="removing each layer", leave=leave)
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
