"""Per-notebook settings for each run mode (``COD_MODE``): smoke (CI), workshop (default), full.

A notebook's parameters cell calls ``for_notebook("03")`` and reads sizes and
step counts from the result; budgets live here, not in the notebooks.
``REFERENCE_SECONDS`` holds the measured time of each whole notebook on a
2-core CPU, which the README, notebook 00 and the doctor report.
"""

from __future__ import annotations

from .runtime import mode

SETTINGS: dict[str, dict[str, dict]] = {}

# Seconds for the whole notebook on the reference 2-core CPU (AMD EPYC, idle apart from the run):
# {notebook: {mode: seconds}}. Measured 2026-11-28 18:00 UTC, one notebook at a time, after the engineers' jobs had
# stopped. workshop: `jupyter nbconvert --execute` wall time including kernel start, threads chosen by the kit (1 for
# 00-02 and 04-07, whose kernels started while the previous notebook's load was still counted; 2 for 03, measured
# again after runtime.busy_cores stopped counting it: 274 s on 1 thread). 04 ran after 03 and loaded 03's runs
# from the train-or-load cache. smoke: wall time of the nbval command `make test` runs, one notebook per pytest
# process. The per-entry comments below record the earlier, heavily loaded measurements (CPU seconds).
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
REFERENCE_SECONDS["00"] = {"smoke": 13.0, "workshop": 18.0}
# The doctor's speed probe (curse_of_depth.doctor.matmul_gflops(): 512x512 fp32 matmul, best of 3, 1 thread) on
# the reference CPU while it was idle, as REFERENCE_SECONDS were measured: median of 7 probes at 18:03 UTC on
# 2026-11-28 (75-80 GFLOP/s; 151 with 2 threads). The doctor scales each reference time by
# REFERENCE_MATMUL_GFLOPS / (this machine's probe) to estimate the notebook's time elsewhere (within ~2x).
REFERENCE_MATMUL_GFLOPS: float = 79.0

# --- notebooks 03 and 04: train it live, and look inside --------------------------------------------------
# band: the precomputed seed band (results pack "bands_<tag>") whose configuration the live runs copy;
# shown: the precomputed configurations whose Pre-LN / LNS gap is reported (stored data: the same in every mode);
# live_norms: the norms trained live; checkpoints: the shipped 480-step models opened in notebook 04;
# probe_batch: sequences of the fixed validation batch used for per-block measurements; live_eval_every: the live
# runs' validation interval (a multiple of the band's; None = the band's own). Validation on the band's 8 x 32
# sequences is ~35% of a live run's CPU time at the band's 9 points; every 20 steps keeps 5 of them (03 and 04 must
# agree, or 04 misses 03's runs in the cache).
SETTINGS["03"] = {
    "smoke": {"band": "smoke", "shown": ["d64_L24_s80", "d64_L24_s480"], "live_norms": ["pre", "lns"],
              "probe_batch": 4, "live_eval_every": None},
    "workshop": {"band": "d64_L24_s80", "shown": ["d64_L24_s80", "d64_L24_s480"], "live_norms": ["pre", "lns"],
                 "probe_batch": 8, "live_eval_every": 20},
    "full": {"band": "d64_L24_s80", "shown": ["d64_L24_s80", "d64_L24_s480"],
             "live_norms": ["pre", "lns", "post", "mix"], "probe_batch": 16, "live_eval_every": None},
}
SETTINGS["04"] = {
    "smoke": {"band": "smoke", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480", "probe_batch": 4,
              "checkpoint_batch": 16, "live_eval_every": None},
    "workshop": {"band": "d64_L24_s80", "live_norms": ["pre", "lns"], "checkpoints": "d64_L24_s480",
                 "probe_batch": 16, "checkpoint_batch": 16, "live_eval_every": 20},
    "full": {"band": "d64_L24_s80", "live_norms": ["pre", "lns", "post", "mix"], "checkpoints": "d64_L24_s480",
             "probe_batch": 32, "checkpoint_batch": 32, "live_eval_every": None},
}

# ---- notebook 02 (why Pre-LN variance grows): random-init stacks, no training.
# width/depth/seq_len/batch/seeds: the variance measurement. At d=128 the mean-field prediction's worst deviation
# from the 3-seed mean over 128 blocks was 12.8% / 7.9% / 6.4% at batch 4 / 8 / 16 with 32 positions, 7.9% with
# 16 positions x 8 (2 seeds: up to 10.7%), so every mode keeps >= 3 seeds and >= 128 tokens for Pre-LN (over 4
# disjoint 3-seed groups at 16 positions x 8 the worst deviation was 3.5-7.9%, seeds 0-2 the worst; 8 positions x 16
# gave 2.5-6.2% but costs more per forward); drawing a 128-block model's weights costs ~0.5 s, about two forwards;
# other_seeds: the LNS / Post-LN / Mix-LN curves, whose checks have wide margins on one seed (growth ratio 0.03 vs
# the 0.1 bound, flat to 0.1% vs 5%), so smoke measures them on seed 0 only (no seed band in its figure);
# jac_*: the block-Jacobian probe (small width, log-spaced blocks; its claim is Pre-LN's, so smoke probes Pre-LN and
# the flat Post-LN contrast only); grad_*: per-block gradient norms, a figure without a claim, so smoke probes a
# 32-block stack. The explorer's static panels reuse the first seed's measurement (theory.explore_variance), so they
# cost no extra model build.
SETTINGS["02"] = {
    "smoke": {"width": 128, "depth": 128, "seq_len": 16, "batch": 8, "seeds": [0, 1, 2], "other_seeds": [0],
              "jac_width": 32, "jac_blocks": 10, "jac_seeds": [0], "jac_norms": ["pre", "post"],
              "grad_width": 32, "grad_depth": 32, "grad_batch": 2},
    "workshop": {"width": 128, "depth": 128, "seq_len": 32, "batch": 16, "seeds": [0, 1, 2], "other_seeds": [0, 1, 2],
                 "jac_width": 64, "jac_blocks": 16, "jac_seeds": [0, 1], "jac_norms": ["pre", "lns", "post", "mix"],
                 "grad_width": 64, "grad_depth": 128, "grad_batch": 4},
    "full": {"width": 256, "depth": 128, "seq_len": 64, "batch": 8, "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
             "other_seeds": [0, 1, 2, 3, 4, 5, 6, 7], "jac_width": 128, "jac_blocks": 32, "jac_seeds": [0, 1, 2, 3],
             "jac_norms": ["pre", "lns", "post", "mix"], "grad_width": 128, "grad_depth": 128, "grad_batch": 8},
}
# Measured 2026-11-28 with the nbconvert command of the brief (COD_THREADS=1): CPU seconds of the notebook's kernel
# plus ~3 s kernel start. The shared 2-core machine ran at load average 6.5-8 at the time, so the wall clock there was
# 68 s (smoke) and 120 s (workshop); on an idle 2-core CPU the CPU seconds are the better estimate of the wall time.
REFERENCE_SECONDS["02"] = {"smoke": 29.0, "workshop": 46.0}

# ---- notebook 05 (LNS for your own Hugging Face model).
# smol_chunks/smol_seq: Shakespeare tokens pushed through SmolLM2 before/after LNS (forward passes only);
# kit_layers: depth of the tiny kit-vs-HF equivalence check; train: the from-scratch Trainer demo (char-level
# Shakespeare, tiny HF Llama, Pre-LN vs LNS with the same seed and batches); eval_batches: fixed val batches.
SETTINGS["05"] = {
    "smoke": {"smol_chunks": 1, "smol_seq": 64, "kit_layers": 6, "show_unimported_auto": False,
              "train": {"layers": 4, "width": 32, "seq_len": 32, "batch": 4, "steps": 6, "evals": 2, "lr": 3e-3,
                        "seed": 0}, "eval_batches": 2},
    "workshop": {"smol_chunks": 1, "smol_seq": 128, "kit_layers": 12, "show_unimported_auto": True,
                 "train": {"layers": 24, "width": 64, "seq_len": 64, "batch": 16, "steps": 48, "evals": 4,
                           "lr": 3e-3, "seed": 0}, "eval_batches": 4},
    "full": {"smol_chunks": 4, "smol_seq": 256, "kit_layers": 12, "show_unimported_auto": True,
             "train": {"layers": 24, "width": 64, "seq_len": 128, "batch": 16, "steps": 480, "evals": 8,
                       "lr": 3e-3, "seed": 0}, "eval_batches": 16},
}

# ---- notebooks 01 (the curse in a real LLM) and 06 (exploiting it): SmolLM2-135M, fp32, forward passes only.
# Token chunks are Shakespeare validation plays in SmolLM2 tokens (hf.shakespeare_tokens): stats_* for RMS /
# angular distance / Block Influence; scan_* for the live single-layer removal scan (1,024 tokens rank layers
# like 4,096 do: rank corr. 0.97 in the probe; 512: 0.96); scan_layers "all", or "claim" = only the layers the
# claim reads (0, 1, the middle third, the last two) to fit smoke's 30 s; bert_*: the Post-LN contrast.
# 06: eval_* held-out chunks (start 32) for every perplexity; calib_* Wanda/OWL calibration (start 0); ns: layers
# dropped; sparsities/methods: the live sparsity table (the stored 50%/70% table is always plotted). The stored results
# (compress.main) use 4,096 / 2,048 tokens.
SETTINGS["01"] = {
    "smoke": {"stats_chunks": 2, "stats_seq": 128, "scan_chunks": 1, "scan_seq": 128, "scan_layers": "claim",
              "bert_chunks": 2, "bert_seq": 128},
    "workshop": {"stats_chunks": 8, "stats_seq": 256, "scan_chunks": 2, "scan_seq": 256, "scan_layers": "all",
                 "bert_chunks": 16, "bert_seq": 128},
    "full": {"stats_chunks": 16, "stats_seq": 256, "scan_chunks": 16, "scan_seq": 256, "scan_layers": "all",
             "bert_chunks": 80, "bert_seq": 256, "regenerate": True},
}
SETTINGS["06"] = {
    "smoke": {"eval_start": 32, "eval_chunks": 1, "eval_seq": 128, "ns": [2, 4], "rules": ["measured", "last"],
              "calib_chunks": 1, "calib_seq": 128, "sparsities": [0.7], "methods": ["wanda", "owl"]},
    "workshop": {"eval_start": 32, "eval_chunks": 2, "eval_seq": 256, "ns": [2, 4, 8],
                 "rules": ["angular", "block_influence", "measured", "last"],
                 "calib_chunks": 2, "calib_seq": 256, "sparsities": [0.7], "methods": ["magnitude", "wanda", "owl"]},
    "full": {"eval_start": 32, "eval_chunks": 8, "eval_seq": 256, "ns": [1, 2, 3, 4, 6, 8],
             "rules": ["angular", "block_influence", "measured", "last"],
             "calib_chunks": 8, "calib_seq": 256, "sparsities": [0.5, 0.7], "methods": ["magnitude", "wanda", "owl"],
             "regenerate": True},
}
# Measured as CPU seconds of the whole nbconvert run (1 thread) while ~6 other jobs shared the 2 cores
# (wall time then: smoke 90 s, workshop 233-280 s); on an idle 2-core CPU wall time is about the CPU time.
REFERENCE_SECONDS["05"] = {"smoke": 25.0, "workshop": 90.0}

# ---- notebook 07 (the scale map): reads the stored GPU map; full mode on a GPU machine runs its missing points.
SETTINGS["07"] = {"smoke": {"regenerate": False}, "workshop": {"regenerate": False},
                  "full": {"regenerate": True, "per_device": 6}}
REFERENCE_SECONDS["07"] = {"smoke": 13.0, "workshop": 14.0}
# Measured as CPU seconds of the whole nbconvert run (kernel, 1 thread; smoke: the nbval run's user time) while ~6
# other jobs shared the 2 cores at load average 7-8. Wall time then: 03 smoke 77-100 s, workshop 940-1021 s;
# 04 smoke 93 s, workshop 136-157 s. Notebook 03 trains two 24-block models for 80 steps each and evaluates them at
# the band's 9 points (8 x 32 x 128 tokens each, ~40% of its cost): 4.7 CPU minutes, above the 3-minute target.
REFERENCE_SECONDS["03"] = {"smoke": 24.0, "workshop": 186.0}
REFERENCE_SECONDS["04"] = {"smoke": 22.0, "workshop": 36.0}
# 01/06, measured 2026-11-28 with COD_THREADS=1 on the shared 2-core machine: workshop 89 / 87 CPU-seconds for the whole
# nbconvert run (150 / 129 s wall at load 4-6; 262 / 265 s at load 7-10); smoke under nbval 28 s / 48 s wall incl. kernel start.
REFERENCE_SECONDS["01"] = {"smoke": 30.0, "workshop": 97.0}
REFERENCE_SECONDS["06"] = {"smoke": 36.0, "workshop": 80.0}
