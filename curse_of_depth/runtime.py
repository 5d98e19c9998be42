"""Where the kit runs: thread count, run mode, platform. Used by every notebook's first cells.

Oversubscribed CPU threads were measured 36x slower on a shared 2-core machine
(``shared/science/measurements/probe_training.md``), so the kit sets torch's
thread count to the *free physical* cores unless the user chose one.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

MODES = ("smoke", "workshop", "full")
_user_threads: int | None = None


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        f = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(f.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def busy_cores(samples: int = 5, interval_s: float = 0.02) -> int:
    """Cores other processes keep busy now: the median count of runnable tasks in ``/proc/loadavg`` minus
    this process. The 1-minute load average is the fallback (macOS); it also remembers processes that have
    just ended, e.g. the previous notebook's kernel, which would make the kit leave a free core idle."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        time.sleep(interval_s)
    if counts:
        return max(0, sorted(counts)[len(counts) // 2])
    try:
        return int(os.getloadavg()[0] + 0.3)
    except (AttributeError, OSError):
        return 0


def free_physical_cores() -> int:
    """Physical cores minus the ones other processes keep busy (at least 1)."""
    n = physical_cores()
    return max(1, min(n, n - busy_cores()))


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads. Precedence: ``n``, ``COD_THREADS``, ``OMP_NUM_THREADS``, free physical cores."""
    global _user_threads
    for source in (n, os.environ.get("COD_THREADS"), os.environ.get("OMP_NUM_THREADS")):
        if source not in (None, ""):
            try:
                chosen = int(source)
            except ValueError as exc:
                raise ValueError(f"thread count must be a positive integer, got {source!r} (check COD_THREADS / OMP_NUM_THREADS)") from exc
            if chosen < 1:
                raise ValueError(f"thread count must be >= 1, got {chosen}")
            break
    else:
        chosen = free_physical_cores()
    _user_threads = chosen if n is not None else _user_threads
    torch.set_num_threads(chosen)
    return chosen


def mode() -> str:
    """The run mode from ``COD_MODE``: smoke (CI, seconds), workshop (default), full (regenerate results)."""
    m = os.environ.get("COD_MODE", "workshop").strip().lower() or "workshop"
    if m not in MODES:
        raise ValueError(f"COD_MODE={m!r} is not a mode: set it to one of {', '.join(MODES)}")
    return m


def pick(smoke, workshop, full=None):
    """The value for the current mode (``full`` defaults to ``workshop``'s)."""
    return {"smoke": smoke, "workshop": workshop, "full": workshop if full is None else full}[mode()]


def platform() -> str:
    """'colab', 'binder' or 'local'."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    if os.environ.get("BINDER_SERVICE_HOST") or os.environ.get("BINDER_REQUEST") or os.environ.get("BINDER_LAUNCH_HOST"):
        return "binder"
    return "local"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------- progress bars


def progress_bar(*args, **kwargs):
    """A ``tqdm`` progress bar suited to where the code runs (same arguments as ``tqdm``).

    - In a terminal or a script: tqdm's text bar on stderr.
    - In a notebook kernel a person is watching (``widgets.frontend_attached``: JupyterLab, Notebook, VS Code,
      Colab): tqdm's live widget bar, which on ``close()`` replaces itself with its final text line
      (``leave=True``) or with nothing (``leave=False``). So a saved notebook never keeps a widget that can only
      show a frozen "0%" or "Error displaying widget" once its kernel is gone.
    - In a kernel nobody watches (nbconvert, nbval, papermill): no bar, so committed outputs carry none.
    """
    from tqdm.std import tqdm

    if "ipykernel" not in sys.modules:  # not a notebook kernel: no need to import the widgets module
        return tqdm(*args, **kwargs)
    from .widgets import _in_kernel, frontend_attached

    if frontend_attached():
        return _live_bar_class()(*args, **kwargs)
    if _in_kernel():
        kwargs["disable"] = True
    return tqdm(*args, **kwargs)


_LIVE_BAR = None


def _live_bar_class():
    global _LIVE_BAR
    if _LIVE_BAR is None:
        import IPython.display
        from tqdm.notebook import tqdm as notebook_tqdm

        class LiveBar(notebook_tqdm):
            """tqdm's notebook bar, shown under a display id so that ``close()`` can replace it."""

            def __init__(self, *args, **kwargs):
                self._handle = None
                kwargs["display"] = False  # tqdm's own display() has no id; show it ourselves below
                super().__init__(*args, **kwargs)
                if not self.disable:
                    self._handle = IPython.display.display(self.container, display_id=True)
                    self.displayed = True

            def close(self):
                if self.disable:
                    return
                final = str(self) if self.leave else None
                super().close()
                handle, self._handle = self._handle, None
                if handle is not None:
                    handle.update({"text/plain": final} if final else {}, raw=True)
                    self.container.close()

        _LIVE_BAR = LiveBar
    return _LIVE_BAR
