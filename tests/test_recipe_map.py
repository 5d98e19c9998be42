"""The recipe map's rules: instability, the curse metric, paired gaps per cell, best-vs-best, what is missing."""

import pytest

from curse_of_depth.workshop import recipe_map as rm


def rec(norm, lr, seed, final, recipe="paper", depth=24, curve=None, skip=None):
    curve = curve if curve is not None else [4.0 - 3.0 * i / 99 for i in range(100)]
    layers = list(range(1, depth + 1))
    skip = skip if skip is not None else [1.0] + [0.1] * (depth - 1)
    return {"name": f"L{depth}_{norm}@{lr}_{recipe}_s{seed}", "norm": norm, "lr": lr, "seed": seed,
            "recipe": recipe, "final_eval": final, "diverged": False, "wall_s": 1.0,
            "job": {"point": {"n_layers": depth, "tokens": 32_000_000}, "arm": [norm, lr, recipe], "compile": None},
            "run": {"train_loss": curve, "train_steps": list(range(1, len(curve) + 1))},
            "skip_layers": layers, "skip_delta": skip}


def test_a_spike_and_a_run_left_behind_are_unstable_a_smooth_one_is_not():
    smooth = [4.0 - 3.0 * i / 99 for i in range(100)]
    spiky = smooth[:50] + [smooth[50] + 0.3] * 15 + smooth[65:]
    assert rm.max_rise(smooth) == pytest.approx(0.0)
    assert rm.max_rise(spiky) >= rm.SPIKE_NATS
    assert rm.unstable(rec("pre", 3e-3, 0, 1.0, curve=smooth), stable_value=1.0) is None
    assert "spike" in rm.unstable(rec("pre", 3e-3, 0, 1.0, curve=spiky), stable_value=1.0)
    assert "above its stable value" in rm.unstable(rec("pre", 3e-3, 0, 1.06), stable_value=1.0)
    assert rm.unstable(rec("pre", 3e-3, 0, 1.04), stable_value=1.0) is None
    assert rm.unstable({**rec("pre", 3e-3, 0, 1.0), "diverged": True, "final_eval": None}, 1.0) == "diverged"


def test_stable_value_is_the_same_configuration_under_any_recipe():
    recs = [rec("pre", 3e-3, s, 1.00 + 0.01 * s, recipe="kit") for s in range(3)]
    recs += [rec("pre", 3e-3, s, 1.30 if s == 0 else 1.01, recipe="paper") for s in range(3)]
    recs += [rec("pre", 1e-3, s, 1.20, recipe="kit") for s in range(3)]  # another lr: its own reference
    runs = {r["name"]: r for r in rm.summarize(recs)["runs"]}
    assert runs["L24_pre@0.003_paper_s0"]["unstable"] and not runs["L24_pre@0.003_paper_s1"]["unstable"]
    assert not any(runs[f"L24_pre@0.001_kit_s{s}"]["unstable"] for s in range(3))


def test_curse_metric_compares_the_deep_third_with_blocks_two_to_l_over_three():
    skip = [2.0] + [0.4] * 7 + [0.3] * 8 + [0.1] * 8  # block 1, blocks 2..8, 9..16, deep third 17..24
    c = rm.curse_metric(rec("lns", 3e-3, 0, 1.0, skip=skip))
    assert c["deep"] == pytest.approx(0.1) and c["shallow"] == pytest.approx(0.4) and c["ratio"] == pytest.approx(0.25)
    deep_only = {**rec("pre", 3e-3, 0, 1.0), "skip_layers": list(range(17, 25)), "skip_delta": [0.2] * 8}
    assert rm.curse_metric(deep_only) == {"deep": pytest.approx(0.2), "shallow": None, "ratio": None}


def test_cells_pair_by_seed_and_best_vs_best_uses_each_norms_best_lr():
    recs = [rec("pre", 3e-3, s, 1.00 + 0.1 * s) for s in range(3)]
    recs += [rec("lns", 3e-3, s, 1.05 + 0.1 * s + 0.001 * s) for s in range(3)]  # consistently 0.05 behind
    recs += [rec("lns", 1e-2, s, 0.99 + 0.1 * s + 0.001 * s) for s in range(3)]  # consistently 0.01 ahead
    recs += [rec("peri", 3e-3, s, 1.2) for s in range(3)]
    out = rm.summarize(recs)
    cell = next(c for c in out["cells"] if c["lr"] == 3e-3)
    assert cell["complete"] and cell["gaps"]["lns-pre"]["winner"] == "pre" and cell["gaps"]["lns-pre"]["a_better"] == 3
    bvb = out["best_vs_best"][0]
    assert bvb["best_lr"] == {"pre": 3e-3, "lns": 1e-2, "peri": 3e-3}
    assert bvb["gaps"]["lns-pre"]["winner"] == "lns" and bvb["gaps"]["lns-pre"]["mean"] < 0
    line = rm.gap_line("L24, paper recipe", bvb["gaps"]["lns-pre"])
    assert line.startswith("L24, paper recipe: LNS ahead of Pre-LN (3 paired seeds: 3 favour LNS, 0 favour Pre-LN")


def test_missing_lists_the_grid_runs_not_yet_made():
    recs = [rec(n, 3e-3, s, 1.0, depth=48) for n in ("pre", "lns", "peri") for s in range(3)]
    todo = rm.missing(recs)
    assert not any(m["depth"] == 48 and m["recipe"] == "paper" and m["lr"] == 3e-3 for m in todo)
    assert any(m["depth"] == 48 and m["recipe"] == "kit" and m["lr"] == 3e-3 and m["seeds"] == [0, 1, 2] for m in todo)
