"""Notebook 07's views of the recipe map (map_views): tables, verdict lines, counts and figures on a small synthetic map."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from curse_of_depth.workshop import map_views as mv  # noqa: E402
from curse_of_depth.workshop import recipe_map as rm  # noqa: E402


def rec(norm, lr, seed, final, recipe="paper", depth=24):
    curve = [4.0 - 3.0 * i / 99 for i in range(100)]
    layers = list(range(1, depth + 1))
    # shallow blocks 2..L/3 cost 0.1; the deepest third 0.2 (Pre-LN) or 0.01 (LNS, Peri-LN)
    deep = 0.2 if norm == "pre" else 0.01
    skip = [1.0] + [0.1 if layer <= depth // 3 else deep for layer in layers[1:]]
    return {"name": f"L{depth}_{norm}@{lr}_{recipe}_s{seed}", "norm": norm, "lr": lr, "seed": seed,
            "recipe": recipe, "final_eval": final, "diverged": False, "wall_s": 1.0,
            "job": {"point": {"n_layers": depth, "tokens": 32_000_000}, "arm": [norm, lr, recipe], "compile": None},
            "run": {"train_loss": curve, "train_steps": list(range(1, len(curve) + 1))},
            "skip_layers": layers, "skip_delta": skip}


@pytest.fixture(scope="module")
def summary():
    records = []
    for s in range(3):
        records += [rec("pre", 1e-3, s, 1.10 + 0.01 * s, "kit"), rec("lns", 1e-3, s, 1.15 + 0.01 * s, "kit"),
                    rec("pre", 1e-2, s, 1.03 + 0.01 * s, "kit"), rec("lns", 1e-2, s, 1.031 + 0.01 * s + 0.004 * (s == 1), "kit"),
                    rec("peri", 1e-2, s, 1.20 + 0.01 * s, "kit"),
                    rec("pre", 3e-3, s, [1.30, 1.12, 1.14][s]), rec("lns", 3e-3, s, 1.07 + 0.002 * s)]
    records += [rec("pre", 3e-3, s, 1.04 + 0.001 * s, "paper+clip") for s in range(3)]
    records.append(rec("lns", 3e-3, 0, 1.06, "paper+clip"))
    return rm.summarize(records)


def test_cell_table_has_one_row_per_cell_with_unstable_counts_and_paired_gaps(summary):
    table = mv.cell_table(summary).splitlines()
    assert len(table) == 1 + 4  # kit 1e-3, kit 1e-2, paper 3e-3, paper+clip 3e-3
    kit = next(line for line in table if line.startswith("kit") and "1e-3" in line)
    assert "1.110 (3) u0" in kit and "+0.050 ± 0.000 0/3" in kit and "not run" in kit
    paper = next(line for line in table if line.startswith("paper ") and "3e-3" in line)
    assert "u3" in paper  # every unclipped Pre-LN seed ended >= 0.05 above the clipped runs' best


def test_verdicts_name_their_conditions_and_refuse_single_seed_cells(summary):
    lines = mv.verdicts(summary)
    assert any("depth 24, 32M characters, kit recipe, lr 1e-3 for both: Pre-LN reaches a lower" in v for v in lines)
    assert any("paper recipe + clipping, lr 3e-3 for both: fewer than 2 paired seeds" in v for v in lines)


def test_relabel_takes_stored_labels_and_recounts_cells(summary):
    name = next(r["name"] for r in summary["runs"] if r["norm"] == "lns" and r["recipe"] == "kit")
    stored = [{"name": r["name"], "unstable": "loss spike of 0.20 nats" if r["name"] == name else r["unstable"]}
              for r in summary["runs"]]
    new = mv.relabel(summary, stored)
    assert next(r for r in new["runs"] if r["name"] == name)["unstable"].startswith("loss spike")
    assert mv.cell(new, 24, "kit", 1e-3)["arms"]["lns"]["unstable"] == 1
    assert mv.cell(summary, 24, "kit", 1e-3)["arms"]["lns"]["unstable"] == 0  # the input is left alone


def test_unstable_counts_per_cell_and_in_total(summary):
    counts = mv.unstable_counts(summary, "paper", "pre")
    assert counts == {(24, 3e-3): (3, 3)}
    assert mv.unstable_total(mv.unstable_counts(summary, "kit", "lns")) == (0, 6)
    lines = mv.instability_lines(summary["runs"])
    assert any(line.startswith("paper ") and "Pre-LN 3/3 (seed 0 +0.26 at the end;" in line for line in lines)


def test_best_table_and_lines_use_each_norms_best_lr(summary):
    table = mv.best_table(summary)
    assert "1.040 @ 1e-2*" in table and "1.042 @ 1e-2*" in table and "1e-3, 1e-2" in table  # *: top lr tried
    (line,) = mv.best_lines(summary, recipes=("kit",))
    assert "kit recipe, lr 1e-2 for both" in line and "no clear difference" in line


def test_arm_gap_line_pairs_across_recipes_or_shows_the_single_seed(summary):
    line = mv.arm_gap_line(summary, (24, "paper", 3e-3, "pre"), (24, "paper+clip", 3e-3, "pre"))
    assert "3/3 seeds favour the first" in line and "p = " in line
    one = mv.arm_gap_line(summary, (24, "paper+clip", 3e-3, "pre"), (24, "paper+clip", 3e-3, "lns"))
    assert "1 common seed, no test (seed 0: 1.060 vs 1.040)" in one


def test_peri_record_counts_cells_and_winners(summary):
    assert mv.peri_record(summary) == {"cells": 1, "peri_lower_mean": 0, "peri_won": 0, "pre_won": 1}


def test_curse_rows_cover_every_lr_and_compare_deep_with_shallow(summary):
    rows = mv.curse_rows(summary)
    assert [(r["recipe"], r["lr"]) for r in rows] == [("kit", 1e-3), ("kit", 1e-2), ("paper", 3e-3),
                                                       ("paper+clip", 3e-3)]
    r = rows[0]
    assert r["lns_below_every_seed"] and r["pre_deep_over_shallow"] == pytest.approx(2.0)
    assert r["lns_deep_over_shallow"] == pytest.approx(0.1)
    assert "1e-3" in mv.curse_table(rows)


def test_missing_lines_group_by_depth_and_name_partial_cells():
    missing = [{"depth": 48, "tokens": 32_000_000, "recipe": "paper+clip", "lr": 3e-3, "norm": "pre", "seeds": [1, 2]},
               {"depth": 48, "tokens": 32_000_000, "recipe": "paper+clip", "lr": 3e-3, "norm": "lns", "seeds": [0, 1, 2]}]
    missing += [{"depth": 96, "tokens": 32_000_000, "recipe": "kit", "lr": 3e-3, "norm": n, "seeds": [0, 1, 2]}
                for n in ("pre", "lns", "peri")]
    assert mv.missing_lines(missing) == ["depth 48 (5 runs): paper+clip 3e-3 [Pre-LN seeds 1,2; LNS]",
                                         "depth 96 (9 runs): kit 3e-3"]


def test_figures_draw(summary):
    raw = []  # plot_curves draws from raw runs; an empty list still gives the panel grid
    for fig, n_axes in ((mv.plot_lr_map(summary), 4), (mv.plot_gap_map(summary), 2), (mv.plot_curse(summary), 2),
                        (mv.plot_curves(raw, summary, recipes=("kit", "paper", "paper+clip")), 6)):
        assert len(fig.axes) == n_axes
        matplotlib.pyplot.close(fig)


def test_at_edge_marks_the_lowest_and_highest_lr_tried():
    b = {"best_lr": {"pre": 1e-3, "lns": 3e-3}, "lrs_tried": {"pre": [1e-3, 3e-3, 1e-2], "lns": [1e-3, 3e-3, 1e-2]}}
    assert mv.at_edge(b, "pre") and not mv.at_edge(b, "lns")
    b["best_lr"]["lns"] = 1e-2
    assert mv.at_edge(b, "lns")


def test_curse_exceptions_name_the_runs_against_the_pattern(summary):
    runs = [dict(r) for r in summary["runs"]]
    pre = next(r for r in runs if r["norm"] == "pre")
    pre["curse"] = {"deep": 0.1, "shallow": 0.2, "ratio": 0.5}
    lines = mv.curse_exceptions({**summary, "runs": runs}, depths=(pre["depth"],))
    assert any("Pre-LN" in x and "deep/shallow 0.50" in x for x in lines)
