"""Threads: the kit uses the free physical cores, never more (oversubscribed threads wait at every barrier)."""

import builtins
import io

import pytest
import torch

from curse_of_depth.workshop import runtime


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


def test_import_leaves_torch_threads_alone():
    """Nothing but the OpenMP setting happens at import: threads are set by configure_threads() only."""
    import os
    import subprocess
    import sys

    code = ("import torch; n = torch.get_num_threads(); import curse_of_depth, curse_of_depth.workshop; "
            "print(torch.get_num_threads() == n)")
    env = {**os.environ, "COD_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
