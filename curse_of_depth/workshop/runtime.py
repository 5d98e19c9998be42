"""Where the kit runs: run mode, platform, device, and the thread count. Used by every notebook's first cells.

The thread setup itself is ``curse_of_depth._threads`` (importing the package runs it); its functions are
re-exported here for the doctor and the notebooks.
"""

from __future__ import annotations

import os
import sys

import torch

from .._threads import busy_cores, configure_threads, free_physical_cores, physical_cores

MODES = ("smoke", "workshop", "full")

__all__ = ["MODES", "busy_cores", "configure_threads", "device", "free_physical_cores", "mode", "physical_cores",
           "pick", "platform"]


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
