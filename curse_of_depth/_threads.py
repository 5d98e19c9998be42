"""torch's thread count: the free physical cores unless the user chose one (importing the package sets it).

OpenMP threads that share a core with a busy neighbour wait for each other at every barrier, so a second thread
buys nothing there and can cost time (on the shared 2-core machine, beside one or two busy processes, a training
step took 0.96-1.13x as long with 2 threads as with 1: docs/evidence/cpu_threads.md,
``scripts/measure_thread_oversubscription.py``).
The kit therefore sets torch's thread count to the *free physical* cores unless the user chose one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

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
