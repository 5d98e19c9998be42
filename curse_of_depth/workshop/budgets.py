"""Per-notebook settings for each run mode (``COD_MODE``): smoke (CI), workshop (default), full.

A notebook's parameters cell calls ``for_notebook("03")`` and reads sizes and step counts from the
result; budgets live here, not in the notebooks. ``REFERENCE_SECONDS`` holds the measured time of
each whole notebook on the reference 2-core CPU (``scripts/time_notebooks.py``; how and why in
``benchmarks/README.md``), which the README, notebook 00 and the doctor report.
"""

from __future__ import annotations

import numpy as np

from . import plots
from .runtime import mode

SETTINGS: dict[str, dict[str, dict]] = {}
# {notebook: {mode: seconds}}: workshop = nbconvert wall time with kernel start (04 after 03, from
# its cache); smoke = the notebook's share of the nbval run of `make test`.
REFERENCE_SECONDS: dict[str, dict[str, float]] = {
    "00": {"smoke": 3.4, "workshop": 7.6}, "01": {"smoke": 18.3, "workshop": 48.3},
    "02": {"smoke": 11.3, "workshop": 21.6}, "03": {"smoke": 9.1, "workshop": 99.8},
    "04": {"smoke": 12.0, "workshop": 20.4}, "05": {"smoke": 9.7, "workshop": 58.4},
    "06": {"smoke": 21.2, "workshop": 36.6}, "07": {"smoke": 6.0, "workshop": 9.7},
}
# The doctor's speed probe (a 512^2 fp32 matmul) on the reference CPU when REFERENCE_SECONDS were
# measured; the doctor scales each reference time by this over the probe here (within ~2x).
REFERENCE_MATMUL_GFLOPS: float = 200.0
REFERENCE_PROBE_THREADS: int = 2  # the thread count that probe ran with (the kit's choice there)


def for_notebook(nb: str, run_mode: str | None = None) -> dict:
    """The settings of notebook ``nb`` (e.g. "03") in the current (or given) mode."""
    if nb not in SETTINGS:
        raise KeyError(f"no budgets for notebook {nb!r}; known: {sorted(SETTINGS)}")
    table = SETTINGS[nb]
    return dict(table.get(run_mode or mode()) or table["workshop"])


# 00: probe_seconds = how long the doctor's speed probe runs.
SETTINGS["00"] = {"smoke": {"probe_seconds": 0.05}, "workshop": {"probe_seconds": 0.3},
                  "full": {"probe_seconds": 1.0}}

# 03 and 04: band = the precomputed seed band whose configuration the live runs copy; shown = the
# stored configurations whose Pre-LN / LNS gap is reported; live_norms = the norms trained live;
# checkpoints = the shipped 480-step models of 04; probe_batch = sequences for per-block
# measurements; live_eval_every = the live runs' validation interval, a multiple of the band's (None
# = the band's own; 03 and 04 must agree, or 04 misses 03's runs in the cache).
_SHOWN = ["d64_L24_s80", "d64_L24_s480"]
SETTINGS["03"] = {
    "smoke": {"band": "smoke", "shown": _SHOWN, "live_norms": ["pre", "lns"], "probe_batch": 4,
              "live_eval_every": None},
    "workshop": {"band": "d64_L24_s80", "shown": _SHOWN, "live_norms": ["pre", "lns"],
                 "probe_batch": 8, "live_eval_every": 20},
    "full": {"band": "d64_L24_s80", "shown": _SHOWN, "live_norms": ["pre", "lns", "post", "mix"],
             "probe_batch": 16, "live_eval_every": None},
}
SETTINGS["04"] = {
    "smoke": {"band": "smoke", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480",
              "probe_batch": 4, "checkpoint_batch": 16, "live_eval_every": None},
    "workshop": {"band": "d64_L24_s80", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480",
                 "probe_batch": 16, "checkpoint_batch": 16, "live_eval_every": 20},
    "full": {"band": "d64_L24_s80", "live_norms": ["pre", "lns", "post", "mix"],
             "checkpoints": "d64_L24_s480", "probe_batch": 32, "checkpoint_batch": 32,
             "live_eval_every": None},
}

# 02: width/depth/seq_len/batch/seeds = the variance measurement (>= 3 seeds and >= 128 tokens keep
# the prediction within 10%; Pre-LN and Peri-LN carry that claim); other_seeds = LNS / Post-LN / Mix-LN,
# whose checks have wide margins; jac_* = the block-Jacobian probe.
_ALL = ["pre", "lns", "post", "mix", "peri"]
SETTINGS["02"] = {
    "smoke": {"width": 128, "depth": 128, "seq_len": 16, "batch": 8, "seeds": [0, 1, 2],
              "other_seeds": [0], "jac_width": 32, "jac_blocks": 10, "jac_seeds": [0],
              "jac_norms": ["pre", "post"]},
    "workshop": {"width": 128, "depth": 128, "seq_len": 32, "batch": 16, "seeds": [0, 1, 2],
                 "other_seeds": [0, 1, 2], "jac_width": 64, "jac_blocks": 16, "jac_seeds": [0, 1],
                 "jac_norms": _ALL},
    "full": {"width": 256, "depth": 128, "seq_len": 64, "batch": 8, "seeds": list(range(8)),
             "other_seeds": list(range(8)), "jac_width": 128, "jac_blocks": 32,
             "jac_seeds": [0, 1, 2, 3], "jac_norms": _ALL},
}

# 05: smol_chunks = chunks of SmolLM2's evaluation text (hf.SMOLLM2_EVAL, 8 = all) before/after LNS;
# kit_layers = the kit-vs-HF equivalence check; train = the from-scratch Trainer demo (tiny HF Llama, Pre-LN vs LNS);
# eval_batches = fixed validation batches.
SETTINGS["05"] = {
    "smoke": {"smol_chunks": 1, "kit_layers": 6, "show_unimported_auto": False,
              "train": {"layers": 4, "width": 32, "seq_len": 32, "batch": 4, "steps": 6, "evals": 2,
                        "lr": 3e-3, "seed": 0}, "eval_batches": 2},
    "workshop": {"smol_chunks": 8, "kit_layers": 12, "show_unimported_auto": True,
                 "train": {"layers": 24, "width": 64, "seq_len": 64, "batch": 16, "steps": 48,
                           "evals": 4, "lr": 3e-3, "seed": 0}, "eval_batches": 4},
    "full": {"smol_chunks": 8, "kit_layers": 12, "show_unimported_auto": True,
             "train": {"layers": 24, "width": 64, "seq_len": 128, "batch": 16, "steps": 480,
                       "evals": 8, "lr": 3e-3, "seed": 0}, "eval_batches": 16},
}

# 01 and 06 (SmolLM2-135M, fp32, forward passes), all on the one evaluation text (hf.eval_tokens: 8 chunks x 256
# tokens; None = all 8, k = its first k chunks, whose stored perplexity the notebooks print): stats_chunks = RMS and
# angular distance; scan_chunks = the live removal scan (scan_layers "claim" = only the layers the claim reads);
# bert_* = the Post-LN contrast; 06: eval_chunks = the live layer drops and pruning, calib_chunks = Wanda/OWL
# calibration (chunks 0+, disjoint), ns = layers dropped, sparsities/methods = the live sparsity table. The stored
# results (workshop.precompute) use all 8 chunks.
SETTINGS["01"] = {
    "smoke": {"stats_chunks": 1, "scan_chunks": 1, "scan_layers": "claim", "bert_chunks": 2, "bert_seq": 128},
    "workshop": {"stats_chunks": None, "scan_chunks": 2, "scan_layers": "all", "bert_chunks": 16,
                 "bert_seq": 128},
    "full": {"stats_chunks": None, "scan_chunks": 8, "scan_layers": "all", "bert_chunks": 80, "bert_seq": 256,
             "regenerate": True},
}
_RULES = ["angular", "block_influence", "measured", "last"]
SETTINGS["06"] = {
    "smoke": {"eval_chunks": 1, "ns": [2, 8], "rules": _RULES, "calib_chunks": 1, "sparsities": [0.7],
              "methods": ["magnitude", "wanda", "owl"]},
    "workshop": {"eval_chunks": 2, "ns": [2, 4, 8], "rules": _RULES, "calib_chunks": 2, "sparsities": [0.7],
                 "methods": ["magnitude", "wanda", "owl"]},
    "full": {"eval_chunks": 8, "ns": [1, 2, 3, 4, 6, 8], "rules": _RULES, "calib_chunks": 8,
             "sparsities": [0.5, 0.7], "methods": ["magnitude", "wanda", "owl"], "regenerate": True},
}

# 07 reads the stored GPU map; full mode on a GPU machine runs its missing points.
SETTINGS["07"] = {"smoke": {"regenerate": False}, "workshop": {"regenerate": False},
                  "full": {"regenerate": True, "per_device": 6}}


def plot_day_map(rows: list[dict],
                 title: str | None = "The day: time per notebook (workshop mode)"):
    """Horizontal bars: each notebook's time on the reference 2-core CPU and, if probed, here
    (notebook 00).

    ``rows`` is ``curse_of_depth.workshop.doctor.day_map()``: dicts with notebook, title,
    reference_s, here_s. Notebooks without a recorded time are listed with no bar ("not measured").
    """
    fig, ax = plots.subplots()
    y = np.arange(len(rows))[::-1]
    ref = [r["reference_s"] or 0.0 for r in rows]
    here = [r["here_s"] or 0.0 for r in rows]
    has_here = any(r["here_s"] is not None for r in rows)
    h = 0.38 if has_here else 0.6
    ax.barh(y + (h / 2 if has_here else 0), ref, height=h, color="#7f7f7f", label="reference "
                                                                                  "2-core CPU")
    if has_here:
        ax.barh(y - h / 2, here, height=h, color="#1f77b4", label="this machine (estimate)")
    for yi, r in zip(y, rows):
        if r["reference_s"] is None:
            ax.text(0, yi, "  not measured yet", va="center", fontsize="small", color="#7f7f7f")
    ax.set_yticks(y, [f'{r["notebook"]} {r["title"]}' for r in rows])
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return fig
