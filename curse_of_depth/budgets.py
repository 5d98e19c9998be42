"""Per-notebook settings for each run mode (``COD_MODE``): smoke (CI), workshop (default), full.

A notebook's parameters cell calls ``for_notebook("03")`` and reads sizes and
step counts from the result; budgets live here, not in the notebooks.
``REFERENCE_SECONDS`` holds the measured time of each whole notebook on a
2-core CPU, which the README, notebook 00 and the doctor report.
"""

from __future__ import annotations

from .runtime import mode

SETTINGS: dict[str, dict[str, dict]] = {}

# seconds for the whole notebook, measured on the reference 2-core CPU: {notebook: {mode: seconds}}
REFERENCE_SECONDS: dict[str, dict[str, float]] = {}


def for_notebook(nb: str, run_mode: str | None = None) -> dict:
    """The settings of notebook ``nb`` (e.g. "03") in the current (or given) mode."""
    if nb not in SETTINGS:
        raise KeyError(f"no budgets for notebook {nb!r}; known: {sorted(SETTINGS)}")
    m = run_mode or mode()
    table = SETTINGS[nb]
    return dict(table.get(m) or table["workshop"])


# --- notebook 00: welcome and the environment doctor -------------------------------------------------------
# probe_seconds: how long the doctor's matmul speed probe runs (the estimate of each notebook's time here).
SETTINGS["00"] = {"smoke": {"probe_seconds": 0.05}, "workshop": {"probe_seconds": 0.3}, "full": {"probe_seconds": 1.0}}
REFERENCE_SECONDS["00"] = {"smoke": 15.0, "workshop": 15.0}
# The doctor's speed probe (curse_of_depth.doctor.matmul_gflops(): 512x512 fp32 matmul, best of 3, 1 thread) on
# the reference 2-core CPU where REFERENCE_SECONDS were measured. The doctor scales each reference time by
# REFERENCE_MATMUL_GFLOPS / (this machine's probe) to estimate the notebook's time elsewhere.
REFERENCE_MATMUL_GFLOPS: float = 45.0

# --- notebooks 03 and 04: train it live, and look inside --------------------------------------------------
# band: the precomputed seed band (results pack "bands_<tag>") whose configuration the live runs copy;
# shown: the precomputed configurations whose Pre-LN / LNS gap is reported (stored data: the same in every mode);
# live_norms: the norms trained live; checkpoints: the shipped 480-step models opened in notebook 04;
# probe_batch: sequences of the fixed validation batch used for per-block measurements.
SETTINGS["03"] = {
    "smoke": {"band": "smoke", "shown": ["d64_L24_s80", "d64_L24_s480"], "live_norms": ["pre", "lns"],
              "probe_batch": 4},
    "workshop": {"band": "d64_L24_s80", "shown": ["d64_L24_s80", "d64_L24_s480"], "live_norms": ["pre", "lns"],
                 "probe_batch": 8},
    "full": {"band": "d64_L24_s80", "shown": ["d64_L24_s80", "d64_L24_s480"],
             "live_norms": ["pre", "lns", "post", "mix"], "probe_batch": 16},
}
SETTINGS["04"] = {
    "smoke": {"band": "smoke", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480", "probe_batch": 4,
              "checkpoint_batch": 16},
    "workshop": {"band": "d64_L24_s80", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480",
                 "probe_batch": 16, "checkpoint_batch": 16},
    "full": {"band": "d64_L24_s80", "live_norms": ["pre", "lns", "post", "mix"], "checkpoints": "d64_L24_s480",
             "probe_batch": 32, "checkpoint_batch": 32},
}
