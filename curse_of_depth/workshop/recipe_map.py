"""The recipe map: Pre-LN, LNS and Peri-LN under two optimizer recipes and several learning rates. Notebook 07.

A *cell* is one depth x token budget x recipe x learning rate, with every norm over the same seeds (a seed fixes
the init draw and the data order, so norms are compared paired by seed, ``curse_of_depth.stats.paired``). The map
answers, per depth and recipe:

* the shared-lr gap: each norm minus Pre-LN at the same learning rate;
* the best-vs-best gap: each norm at its own best learning rate (lowest mean final loss) minus Pre-LN at its own;
* instability, counted per run with one rule (``unstable``);
* the curse metric: how much the deepest third of the blocks matters, in nats when one block is skipped, and
  relative to the shallow blocks 2..L/3 (block 1 aside: removing it breaks every model).

The runs come from ``python -m curse_of_depth.workshop.sweep run --grid recipes`` on a GPU (one JSON per run);
``collect`` turns them into the results pack's ``recipe_map`` with what is still missing.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..stats import NORM_NAMES, paired
from .sweep import RECIPES, deep_third, final_loss, load_records, recipe_grid

SPIKE_NATS = 0.1  # a spike: the 10-step median training loss climbs this far above its running minimum
BEHIND_NATS = 0.05  # "well above its stable value": > 2.5x the largest seed spread of stable runs (~0.02)
SPIKE_WINDOW = 10
SPIKE_FROM_STEP = 20  # the first steps fall from ln(vocab) with large batch noise: not spikes
NORMS = ("pre", "lns", "peri")


def recipe_of(record: dict) -> str:
    """The record's optimizer recipe (records made before the recipe axis existed used the kit's)."""
    return record.get("recipe") or (record["job"]["arm"][2] if len(record["job"]["arm"]) > 2 else "kit")


def cell_key(record: dict) -> tuple[int, int, str, float]:
    p = record["job"]["point"]
    return p["n_layers"], p["tokens"], recipe_of(record), float(record["lr"])


def max_rise(train_loss: Iterable[float | None]) -> float:
    """Largest climb of the running-median training loss above its running minimum (after the first steps)."""
    loss = np.array([np.nan if v is None else v for v in train_loss], dtype=float)
    if loss.size <= SPIKE_FROM_STEP or not np.isfinite(loss).all():
        return math.inf if loss.size and not np.isfinite(loss).all() else 0.0
    smooth = np.array([np.median(loss[max(0, i - SPIKE_WINDOW + 1): i + 1]) for i in range(loss.size)])
    after = smooth[SPIKE_FROM_STEP:]
    return float((after - np.minimum.accumulate(after)).max())


def unstable(record: dict, stable_value: float) -> str | None:
    """Why a run counts as unstable, or None. One rule, applied to every run of the map (notebook 07):

    it diverged (a non-finite loss); or its training loss spiked (``max_rise`` >= SPIKE_NATS); or its final
    validation loss ended >= BEHIND_NATS above ``stable_value``, the best final loss of the same norm at the same
    depth, token budget and learning rate under any recipe and seed (what this configuration reaches when
    training goes well; comparing at the same lr keeps an untuned lr from counting as instability).
    """
    if record.get("diverged") or not math.isfinite(final_loss(record)):
        return "diverged"
    rise = max_rise(record["run"]["train_loss"])
    if rise >= SPIKE_NATS:
        return f"loss spike of {rise:.2f} nats"
    behind = final_loss(record) - stable_value
    if behind >= BEHIND_NATS:
        return f"ended {behind:.2f} nats above its stable value"
    return None


def curse_metric(record: dict) -> dict | None:
    """Skip-one-block cost of the deepest third (mean, nats) and, where the run measured every block, its ratio
    to the shallow blocks 2..L/3. Near 0 / a small ratio: the deep blocks are near-identity (the curse)."""
    layers, deltas = record.get("skip_layers") or [], record.get("skip_delta") or []
    if not deltas:
        return None
    n = max(layers)
    by_layer = dict(zip(layers, deltas))
    deep = float(np.mean([by_layer[layer] for layer in deep_third(n)]))
    shallow_blocks = [layer for layer in range(2, max(2, n // 3) + 1) if layer in by_layer]
    shallow = float(np.mean([by_layer[layer] for layer in shallow_blocks])) if shallow_blocks else None
    return {"deep": deep, "shallow": shallow, "ratio": deep / shallow if shallow else None}


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    ok = [v for v in values if math.isfinite(v)]
    return (float(np.mean(ok)) if ok else None, float(np.std(ok, ddof=1)) if len(ok) > 1 else None)


def summarize(records: list[dict]) -> dict:
    """Cells, stable values, per-run instability and curse metric, shared-lr and best-vs-best paired gaps."""
    stable: dict[tuple, float] = {}
    for r in records:
        key = (r["job"]["point"]["n_layers"], r["job"]["point"]["tokens"], r["norm"], float(r["lr"]))
        if math.isfinite(final_loss(r)):
            stable[key] = min(stable.get(key, math.inf), final_loss(r))
    cells: dict[tuple, dict[str, dict[int, dict]]] = {}
    runs = []
    for r in records:
        depth, tokens, recipe, lr = cell_key(r)
        ref = stable.get((depth, tokens, r["norm"], lr))
        why = unstable(r, ref) if ref is not None else "diverged"
        runs.append({"name": r["name"], "depth": depth, "tokens": tokens, "recipe": recipe, "lr": lr,
                     "norm": r["norm"], "seed": int(r["seed"]), "final": final_loss(r), "unstable": why,
                     "curse": curse_metric(r), "compiled": r["job"].get("compile") is not False,
                     "code_version": r.get("code_version"), "wall_s": r.get("wall_s")})
        cells.setdefault((depth, tokens, recipe, lr), {}).setdefault(r["norm"], {})[int(r["seed"])] = runs[-1]
    return {"runs": runs, "cells": [_cell(k, v) for k, v in sorted(cells.items())],
            "best_vs_best": _best_vs_best(cells)}


def _cell(key: tuple, by_norm: dict[str, dict[int, dict]]) -> dict:
    depth, tokens, recipe, lr = key
    arms = {}
    for norm, seeds in by_norm.items():
        finals = [r["final"] for r in seeds.values()]
        curse = [r["curse"] for r in seeds.values() if r["curse"]]
        arms[norm] = {"n": len(seeds), "seeds": sorted(seeds), "mean": _mean_sd(finals)[0], "sd": _mean_sd(finals)[1],
                      "unstable": sum(r["unstable"] is not None for r in seeds.values()),
                      "deep_skip": float(np.mean([c["deep"] for c in curse])) if curse else None,
                      "deep_over_shallow": float(np.mean([c["ratio"] for c in curse if c["ratio"] is not None]))
                      if any(c["ratio"] is not None for c in curse) else None}
    gaps = {}
    for norm in ("lns", "peri"):
        if norm in by_norm and "pre" in by_norm:
            gap = _gap("pre", norm, by_norm["pre"], by_norm[norm])
            if gap:
                gaps[f"{norm}-pre"] = gap
    return {"depth": depth, "tokens": tokens, "recipe": recipe, "lr": lr, "arms": arms, "gaps": gaps,
            "complete": all(arms.get(n, {}).get("n", 0) >= 3 for n in NORMS)}


def _gap(a: str, b: str, runs_a: dict[int, dict], runs_b: dict[int, dict]) -> dict | None:
    la = {s: r["final"] for s, r in runs_a.items()}
    lb = {s: r["final"] for s, r in runs_b.items()}
    if sum(1 for s in la if s in lb and math.isfinite(la[s]) and math.isfinite(lb[s])) < 2:
        return None
    return paired(a, b, la, lb).to_dict()


def _best_vs_best(cells: dict[tuple, dict[str, dict[int, dict]]]) -> list[dict]:
    """Per depth x tokens x recipe: each norm at its own best lr (lowest mean final loss, >= 2 seeds) vs Pre-LN's."""
    out = []
    groups = sorted({(d, t, rc) for d, t, rc, _ in cells})
    for d, t, rc in groups:
        best = {}
        for (d2, t2, rc2, lr), by_norm in cells.items():
            if (d2, t2, rc2) != (d, t, rc):
                continue
            for norm, seeds in by_norm.items():
                mean = _mean_sd([r["final"] for r in seeds.values()])[0]
                if mean is not None and len(seeds) >= 2 and (norm not in best or mean < best[norm][1]):
                    best[norm] = (lr, mean, seeds)
        lrs_tried = {n: sorted({k[3] for k, v in cells.items() if k[:3] == (d, t, rc) and n in v}) for n in best}
        row = {"depth": d, "tokens": t, "recipe": rc, "best_lr": {n: b[0] for n, b in best.items()},
               "lrs_tried": lrs_tried, "gaps": {}}
        for norm in ("lns", "peri"):
            if norm in best and "pre" in best:
                gap = _gap("pre", norm, best["pre"][2], best[norm][2])
                if gap:
                    row["gaps"][f"{norm}-pre"] = gap
        out.append(row)
    return out


def missing(records: list[dict], min_seeds: int = 3) -> list[dict]:
    """The recipe grid's runs not in ``records``: ``[{"cell", "norm", "seeds"}]``, in the grid's priority order."""
    have = {(cell_key(r), r["norm"], int(r["seed"])) for r in records}
    out = []
    for p in recipe_grid():
        for arm in p.arms:
            key = (p.n_layers, p.tokens, arm.recipe, float(arm.lr))
            todo = [s for s in p.seeds[:min_seeds] if (key, arm.norm, s) not in have]
            if todo:
                out.append({"depth": p.n_layers, "tokens": p.tokens, "recipe": arm.recipe, "lr": arm.lr,
                            "norm": arm.norm, "seeds": todo})
    return out


def gap_line(label: str, gap: dict) -> str:
    """One verdict line for a stored paired gap (counts and the test's decision; no measured float)."""
    a, b = NORM_NAMES.get(gap["a"], gap["a"]), NORM_NAMES.get(gap["b"], gap["b"])
    counts = f"{gap['n']} paired seeds: {gap['b_better']} favour {b}, {gap['a_better']} favour {a}"
    if gap["winner"] is None:
        return f"{label}: no clear difference between {a} and {b} ({counts}; paired t-test p >= {gap['alpha']:g})"
    win, lose = (b, a) if gap["winner"] == gap["b"] else (a, b)
    return f"{label}: {win} ahead of {lose} ({counts}; paired t-test p < {gap['alpha']:g})"


def collect(folders: list[Path], command: str, name: str = "recipe_map", results_dir: Path | None = None,
            note: str = "") -> Path:
    """Summarize the run JSONs in ``folders`` and store them as the results pack's ``recipe_map``."""
    from . import results

    records = [r for f in folders for r in load_records(f)]
    thin = []
    for r in records:  # the per-step curve is summarized by the instability rule; keep every 5th step for plots
        run = dict(r["run"])
        run["train_steps"], run["train_loss"] = run["train_steps"][::5], run["train_loss"][::5]
        thin.append({**r, "run": run})
    data = {"recipes": {k: v.to_dict() for k, v in RECIPES.items()},
            "rule": {"spike_nats": SPIKE_NATS, "behind_nats": BEHIND_NATS, "spike_window": SPIKE_WINDOW,
                     "spike_from_step": SPIKE_FROM_STEP, "text": unstable.__doc__.split("\n\n", 1)[1].strip()},
            **summarize(records), "missing": missing(records), "raw_runs": thin}
    prov = results.provenance(seeds=sorted({int(r["seed"]) for r in records}),
                              wall_s=sum(r.get("wall_s") or 0.0 for r in records), command=command,
                              run_hardware=sorted({r.get("hardware", "") for r in records}),
                              run_code_versions=sorted({r.get("code_version", "") for r in records}),
                              note=note or None)
    return results.save(name, data, prov, folder=results_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.workshop.recipe_map", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="folders of run JSONs")
    parser.add_argument("--command", required=True, help="the device commands that made the runs (provenance)")
    parser.add_argument("--note", default="")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(collect(args.runs, args.command, results_dir=args.results_dir, note=args.note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
