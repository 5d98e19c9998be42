"""Where the kit runs: run mode, platform, threads, memory, and whether a person watches the
notebook.

Every notebook's first cell calls ``configure_threads()``: torch is given the *free* physical cores,
a safe default whose gain is within noise on the shared 2-core machine
(``docs/evidence/cpu_threads.md``). Nothing here runs at import.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

MODES = ("smoke", "workshop", "full")
WIDGETS_ENV = "COD_WIDGETS"
HEADLESS_RUNNERS = ("nbconvert", "nbclient", "papermill", "pytest", "py.test", "nbval", "nbmake",
                    "jupyter-execute")
_FORCE_ON = ("interactive", "1", "on", "true", "yes")
_FORCE_OFF = ("static", "0", "off", "false", "no")


def mode() -> str:
    """The run mode from ``COD_MODE``: smoke (CI, seconds), workshop (default), full (regenerate
    results)."""
    m = os.environ.get("COD_MODE", "workshop").strip().lower() or "workshop"
    if m not in MODES:
        raise ValueError(f"COD_MODE={m!r} is not a mode: set it to one of {', '.join(MODES)}")
    return m


def pick(smoke, workshop, full=None):
    """The value for the current mode (``full`` defaults to ``workshop``'s)."""
    return {"smoke": smoke, "workshop": workshop,
            "full": workshop if full is None else full}[mode()]


def platform() -> str:
    """'colab', 'binder' or 'local'."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    binder = ("BINDER_SERVICE_HOST", "BINDER_REQUEST", "BINDER_LAUNCH_HOST")
    return "binder" if any(os.environ.get(v) for v in binder) else "local"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------ threads


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def busy_cores(samples: int = 5, interval_s: float = 0.02) -> int:
    """Cores other processes keep busy now: the median count of runnable tasks in ``/proc/loadavg``
    minus this process. The 1-minute load average is the fallback (macOS); it also remembers
    processes that have just ended, e.g. the previous notebook's kernel, which would leave a free
    core idle."""
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
    """Set torch's intra-op threads: ``n``, else ``COD_THREADS``, else ``OMP_NUM_THREADS``, else the
    free physical cores. Returns the count."""
    for source in (n, os.environ.get("COD_THREADS"), os.environ.get("OMP_NUM_THREADS")):
        if source not in (None, ""):
            try:
                chosen = int(source)
            except ValueError as exc:
                raise ValueError(f"thread count must be a positive integer, got {source!r} "
                                 "(check COD_THREADS / OMP_NUM_THREADS)") from exc
            if chosen < 1:
                raise ValueError(f"thread count must be >= 1, got {chosen}")
            break
    else:
        chosen = free_physical_cores()
    torch.set_num_threads(chosen)
    return chosen


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (None where the OS does not report it, e.g.
    Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # bytes on macOS, KiB on Linux
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------------------------ the front end


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _ancestor_cmdlines(levels: int = 4) -> list[str]:
    """Command lines of this process's parents (nearest first); empty when psutil is unavailable."""
    try:
        import psutil  # ipykernel depends on it, so it is there whenever a kernel is
    except ImportError:
        return []
    out = []
    try:
        for p in psutil.Process().parents()[:levels]:
            try:
                out.append(" ".join(p.cmdline()))
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
    except (psutil.Error, OSError):
        pass
    return out


def frontend_attached(env: Mapping[str, str] | None = None, ancestors: Sequence[str] | None = None,
                      in_kernel: bool | None = None) -> bool:
    """Whether a person can see live updates and move sliders (widgets, live plots, the doctor).

    First match wins: ``COD_WIDGETS=interactive`` / ``static`` forces it; no ipywidgets, or no
    IPython kernel (plain python, a test, a script) -> False; a kernel started by a headless runner
    (its parent is nbconvert, nbclient, papermill, pytest/nbval/nbmake or jupyter-execute) -> False;
    otherwise (a kernel under JupyterLab, Notebook, VS Code or Colab) -> True. Notebook 02 shows
    both outcomes. ``env``, ``ancestors`` and ``in_kernel`` default to the real process; tests pass
    their own.
    """
    env = os.environ if env is None else env
    forced = env.get(WIDGETS_ENV, "").strip().lower()
    if forced in _FORCE_ON or forced in _FORCE_OFF:
        return forced in _FORCE_ON
    if forced:
        raise ValueError(f"{WIDGETS_ENV}={forced!r} is not understood: set it to 'interactive' or "
                         "'static' (or unset it)")
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    if not (_in_kernel() if in_kernel is None else in_kernel):
        return False
    cmdlines = _ancestor_cmdlines() if ancestors is None else ancestors
    return not any(r in c.lower() for c in cmdlines for r in HEADLESS_RUNNERS)
