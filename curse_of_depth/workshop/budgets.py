"""Per-notebook settings for each run mode (``COD_MODE``): smoke (CI), workshop (default), full.

A notebook's parameters cell calls ``for_notebook("03")`` and reads sizes and
step counts from the result; budgets live here, not in the notebooks.
``REFERENCE_SECONDS`` holds the measured time of each whole notebook on a
2-core CPU, which the README, notebook 00 and the doctor report.
"""

from __future__ import annotations

from .runtime import mode

SETTINGS: dict[str, dict[str, dict]] = {}

# Seconds for the whole notebook on the reference 2-core CPU (Intel Xeon @ 2.5 GHz, KVM, idle apart from the run):
# {notebook: {mode: seconds}}. Measured 2026-11-28 20:10-20:25 UTC by `scripts/time_notebooks.py` (results with
# provenance in benchmarks/results/notebook_times.json), one notebook at a time, 00-07 in order, threads chosen by
# the kit (2 on the idle machine). workshop: `jupyter nbconvert --execute` wall time including kernel start; 04 ran
# after 03 and loaded 03's runs from the train-or-load cache. smoke: the notebook's time inside the nbval run that
# `make test` makes (kernel start and every cell, from pytest's junit report); a one-notebook pytest process adds
# ~5-7 s of pytest start-up (most of it importing nbformat), paid once per suite in CI.
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
REFERENCE_SECONDS["00"] = {"smoke": 6.7, "workshop": 13.6}  # smoke: 12.2 s as its own pytest run
# The doctor's speed probe (curse_of_depth.workshop.doctor.matmul_gflops(): 512x512 fp32 matmul, best of 3, with the thread
# count the kit chose, as in notebook 00) on the reference CPU while it was idle, as REFERENCE_SECONDS were measured:
# median of 7 probes at 20:24 UTC on 2026-11-28 with 2 threads (163-246 GFLOP/s; this KVM guest's speed varies with
# its host: the same probe on 1 thread gave 75-80 GFLOP/s at 18:03 UTC, the benchmark's 1-thread 1024^3 matmul
# 118-122 at 20:06). The doctor scales each
# reference time by REFERENCE_MATMUL_GFLOPS / (this machine's probe) to estimate the notebook's time elsewhere
# (within ~2x).
REFERENCE_MATMUL_GFLOPS: float = 215.0
REFERENCE_PROBE_THREADS: int = 2  # the thread count that probe ran with (the kit's choice there)

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
# smoke: 16.0 s in the suite (22.8 s as a one-notebook pytest run).
REFERENCE_SECONDS["02"] = {"smoke": 16.0, "workshop": 37.0}

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
REFERENCE_SECONDS["05"] = {"smoke": 17.3, "workshop": 70.0}  # smoke: 24.2 s as its own pytest run

# ---- notebook 07 (the scale map): reads the stored GPU map; full mode on a GPU machine runs its missing points.
SETTINGS["07"] = {"smoke": {"regenerate": False}, "workshop": {"regenerate": False},
                  "full": {"regenerate": True, "per_device": 6}}
REFERENCE_SECONDS["07"] = {"smoke": 7.3, "workshop": 14.3}  # smoke: 13.4 s as its own pytest run
# Notebook 03 trains two 24-block models for 80 steps each (68 s and 73 s on 2 threads,
# ~3,100-3,300 tokens/s) and validates them every 20 steps on the band's 8 x 32 x 128 tokens (live_eval_every).
# Before this session's changes (validation at all 9 band points, autograd RMSNorm and rotation) it took 186 s.
# One-notebook pytest runs: 03 24.2 s, 04 22.6 s.
REFERENCE_SECONDS["03"] = {"smoke": 17.7, "workshop": 163.1}
REFERENCE_SECONDS["04"] = {"smoke": 16.5, "workshop": 30.7}
# 01/06 from a warm model cache (the first conversion adds ~6-13 s, workshop/gguf.py).
# One-notebook pytest runs: 01 26.1 s, 06 30.5 s.
REFERENCE_SECONDS["01"] = {"smoke": 20.9, "workshop": 60.8}
REFERENCE_SECONDS["06"] = {"smoke": 24.7, "workshop": 50.2}
