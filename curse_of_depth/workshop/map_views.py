"""Notebook 07's tables, verdict lines and figures, from the stored recipe map and scale map (data
in, text or a figure out). Every number comes from the raw runs:
``recipe_map.summarize(data["raw_runs"])`` and ``sweep.summarize(grid, runs)`` recompute the
cells, gaps and instability counts the notebook shows.

Conventions: a gap is ``norm − Pre-LN`` in final validation loss (negative: the norm reached the
lower loss), paired by seed (``stats.paired``); a verdict names the depth, token budget, optimizer
recipe and learning rates it holds at."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..model import NORM_LABELS
from ..stats import PairedGap, gap_statement
from . import plots

M = 1_000_000
TOKENS = 32 * M
SHARED_LR = 3e-3
DEPTHS = (24, 48)  # the recipe map's complete depths (depth 12 has one lr, depth 96 none yet)
RECIPES_SHOWN = ("kit", "paper", "paper+clip")
RECIPE_NAMES = {
    "kit": "kit recipe",
    "paper": "paper recipe",
    "paper+clip": "paper recipe + clipping",
}
OTHER_NORMS = ("lns", "peri")
NORMS = ("pre", "lns", "peri")


def lr_text(lr: float) -> str:
    """3e-3, 1e-2: the way the notebooks write a learning rate."""
    exp = math.floor(math.log10(lr) + 1e-9)
    mant = lr / 10**exp
    return f"{mant:g}e{exp}"


def recipe_lines(recipes: dict) -> str:
    """One line per optimizer recipe with every hyperparameter (the results pack's ``recipes``)."""
    out = []
    for name, r in recipes.items():
        clip = f"clip {r['grad_clip']:g}" if r["grad_clip"] else "no clipping"
        out.append(
            f"{name:11s} {r['optimizer']:5s} weight decay {r['weight_decay']:g}, betas "
            f"{r['betas'][0]:g}/{r['betas'][1]:g}, {clip}, warmup {r['warmup_frac']:.0%}, cosine "
            "to "
            f"{r['min_lr_frac']:g} x peak lr"
        )
    return "\n".join(out)


def condition(
    depth: int,
    recipe: str,
    lr: float,
    other_lr: float | None = None,
    other: str = "lns",
    tokens: int = TOKENS,
) -> str:
    """The conditions a verdict holds at, e.g. "depth 24, 32M characters, kit recipe, lr 3e-3 for
    both"."""
    lrs = (
        f"lr {lr_text(lr)} for both"
        if other_lr is None or math.isclose(other_lr, lr)
        else f"Pre-LN at lr {lr_text(lr)}, {NORM_LABELS[other]} at lr {lr_text(other_lr)}"
    )
    return f"depth {depth}, {tokens / M:g}M characters, {RECIPE_NAMES.get(recipe, recipe)}, {lrs}"


def cell(summary: dict, depth: int, recipe: str, lr: float, tokens: int = TOKENS) -> dict | None:
    return next(
        (
            c
            for c in summary["cells"]
            if (c["depth"], c["tokens"], c["recipe"]) == (depth, tokens, recipe)
            and math.isclose(c["lr"], lr)
        ),
        None,
    )


def cells_of(
    summary: dict,
    recipes: Iterable[str] = RECIPES_SHOWN,
    depths: Iterable[int] = DEPTHS,
    lr: float | None = None,
    tokens: int = TOKENS,
) -> list[dict]:
    """The summary's cells at ``tokens`` for these recipes and depths, at ``lr`` (None: every lr
    tried), ordered by recipe, depth and lr."""
    recipes, depths = list(recipes), list(depths)
    out = [
        c
        for c in summary["cells"]
        if c["recipe"] in recipes
        and c["depth"] in depths
        and c["tokens"] == tokens
        and (lr is None or math.isclose(c["lr"], lr))
    ]
    return sorted(out, key=lambda c: (recipes.index(c["recipe"]), depths.index(c["depth"]), c["lr"]))


def _arm(a: dict | None) -> str:
    if not a or a["mean"] is None:
        return f"{'not run':>14s}"
    return f"{a['mean']:.3f} ({a['n']}) u{a['unstable']}"


def _gap(g: dict | None) -> str:
    if not g:
        return f"{'—':>26s}"
    return f"{g['mean']:+.3f} ± {g['sd']:.3f} {g['b_better']}/{g['n']} p={g['p']:.3f}"


def cell_table(
    summary: dict,
    lr: float | None = None,
    recipes: Iterable[str] = RECIPES_SHOWN,
    depths: Iterable[int] = DEPTHS,
) -> str:
    """One row per cell (recipe, depth, lr): each norm's mean final validation loss, (seeds) and
    uK = K runs unstable by the map's rule; the paired gaps vs Pre-LN (mean ± sd of the per-seed
    differences, k/n seeds in which the norm beat Pre-LN, paired t-test p)."""
    lines = [
        f"{'recipe':10s}{'depth':>6s} {'lr':>5s}  {'Pre-LN':>14s} {'LNS':>14s} {'Peri-LN':>14s}   "
        f"{'LNS − Pre-LN':>26s}   {'Peri-LN − Pre-LN':>26s}"
    ]
    for c in cells_of(summary, recipes, depths, lr):
        arms, gaps = c["arms"], c["gaps"]
        lines.append(
            f"{c['recipe']:10s}{c['depth']:6d} {lr_text(c['lr']):>5s}  {_arm(arms.get('pre')):>14s} "
            f"{_arm(arms.get('lns')):>14s} {_arm(arms.get('peri')):>14s}   "
            f"{_gap(gaps.get('lns-pre')):>26s}   {_gap(gaps.get('peri-pre')):>26s}"
        )
    return "\n".join(lines)


def verdicts(
    summary: dict,
    lr: float | None = None,
    recipes: Iterable[str] = RECIPES_SHOWN,
    depths: Iterable[int] = DEPTHS,
    norms: Iterable[str] = ("lns",),
) -> list[str]:
    """``stats.gap_statement`` of each norm vs Pre-LN in every cell (at ``lr``, or every lr), labelled
    with its conditions (cells with fewer than 2 paired seeds say so)."""
    out = []
    for c in cells_of(summary, recipes, depths, lr):
        for norm in norms:
            label = f"{NORM_LABELS[norm]} vs Pre-LN, {condition(c['depth'], c['recipe'], c['lr'])}"
            g = c["gaps"].get(f"{norm}-pre")
            if g:
                out.append(gap_statement(label, PairedGap.from_dict(g)))
            elif norm in c["arms"] and "pre" in c["arms"]:
                out.append(f"{label}: fewer than 2 paired seeds, no verdict")
    return out


def peri_record(summary: dict, recipes: Iterable[str] = RECIPES_SHOWN, depths: Iterable[int] = DEPTHS) -> dict:
    """Peri-LN vs Pre-LN over the cells with >= 2 paired seeds: how many cells, in how many Peri-LN's
    mean was lower, and in how many each side won the paired t-test."""
    gaps = [c["gaps"]["peri-pre"] for c in cells_of(summary, recipes, depths) if "peri-pre" in c["gaps"]]
    return {
        "cells": len(gaps),
        "peri_lower_mean": sum(g["mean"] < 0 for g in gaps),
        "peri_won": sum(g["winner"] == "peri" for g in gaps),
        "pre_won": sum(g["winner"] == "pre" for g in gaps),
    }


def arm_gap(summary: dict, a: tuple, b: tuple, tokens: int = TOKENS) -> PairedGap | None:
    """Paired gap of two arms of possibly different cells, each ``(depth, recipe, lr, norm)``, e.g.
    Pre-LN with and without clipping: ``b`` − ``a`` over the seeds both ran (None below 2)."""
    from ..stats import paired

    def finals(depth, recipe, lr, norm):
        return {
            r["seed"]: r["final"]
            for r in summary["runs"]
            if (r["depth"], r["tokens"], r["recipe"], r["norm"]) == (depth, tokens, recipe, norm)
            and math.isclose(r["lr"], lr)
        }

    fa, fb = finals(*a), finals(*b)
    if len(set(fa) & set(fb)) < 2:
        return None
    return paired(a[3], b[3], fa, fb)


def arm_label(arm: tuple) -> str:
    """ "Pre-LN, paper recipe + clipping, lr 3e-3" for ``(depth, recipe, lr, norm)``."""
    depth, recipe, lr, norm = arm
    return f"{NORM_LABELS[norm]}, {RECIPE_NAMES.get(recipe, recipe)}, lr {lr_text(lr)}"


def arm_gap_line(summary: dict, a: tuple, b: tuple, tokens: int = TOKENS) -> str:
    """ "depth 24: Pre-LN, paper recipe + clipping, lr 3e-3 − Pre-LN, paper recipe, lr 3e-3: -0.081 ±
    0.121 nats, 3/3 seeds favour the first, p = 0.365"; with one common seed, the two losses."""
    g = arm_gap(summary, a, b, tokens)
    head = f"depth {a[0]}: {arm_label(b)} − {arm_label(a)}"
    if g is not None:
        return (f"{head}: {g.mean:+.3f} ± {g.sd:.3f} nats, {g.b_better}/{g.n} seeds favour the first, "
                f"p = {g.p:.3f}")
    fin = [{r["seed"]: r["final"] for r in summary["runs"] if (r["depth"], r["tokens"], r["recipe"], r["norm"])
            == (x[0], tokens, x[1], x[3]) and math.isclose(r["lr"], x[2])} for x in (a, b)]
    common = sorted(set(fin[0]) & set(fin[1]))
    per = "; ".join(f"seed {s_}: {fin[1][s_]:.3f} vs {fin[0][s_]:.3f}" for s_ in common)
    return f"{head}: {len(common)} common seed{'s' * (len(common) != 1)}, no test ({per or 'none'})"


def relabel(summary: dict, runs: list[dict]) -> dict:
    """``summary`` with each run's instability label taken from ``runs`` (the labels stored with the map,
    made on every logged step; the stored curves keep one point in five, which can miss a short spike)
    and the cells' unstable counts recounted."""
    label = {r["name"]: r["unstable"] for r in runs}
    new_runs = [{**r, "unstable": label.get(r["name"], r["unstable"])} for r in summary["runs"]]
    by = {r["name"]: r for r in new_runs}
    cells = []
    for c in summary["cells"]:
        arms = {}
        for norm, a in c["arms"].items():
            here = [by[n] for n in by if by[n]["norm"] == norm and (by[n]["depth"], by[n]["tokens"], by[n]["recipe"])
                    == (c["depth"], c["tokens"], c["recipe"]) and math.isclose(by[n]["lr"], c["lr"])]
            arms[norm] = {**a, "unstable": sum(r["unstable"] is not None for r in here)}
        cells.append({**c, "arms": arms})
    return {**summary, "runs": new_runs, "cells": cells}


def best_lines(
    summary: dict,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
    tuned_only: bool = True,
) -> list[str]:
    """Best-vs-best: each norm at its own best lr among those tried (lowest mean final loss), as
    verdict lines with the lrs tried. ``tuned_only``: only where a norm was tried at more than
    one lr (elsewhere "best" is the one lr tried, and the line would repeat the shared-lr
    verdict)."""
    out = []
    for b in summary["best_vs_best"]:
        if b["recipe"] not in recipes or b["depth"] not in depths or "lns-pre" not in b["gaps"]:
            continue
        if tuned_only and all(len(v) < 2 for v in b["lrs_tried"].values()):
            continue
        lr_pre, lr_lns = b["best_lr"]["pre"], b["best_lr"]["lns"]
        tried = "; ".join(
            f"{NORM_LABELS[n]} tried at {', '.join(lr_text(x) for x in b['lrs_tried'][n])}"
            for n in ("pre", "lns")
        )
        label = f"best vs best, {condition(b['depth'], b['recipe'], lr_pre, lr_lns)} ({tried})"
        out.append(gap_statement(label, PairedGap.from_dict(b["gaps"]["lns-pre"])))
    return out


def at_edge(best: dict, norm: str) -> bool:
    """Whether ``norm``'s best lr in a best-vs-best entry is the lowest or the highest lr tried for
    it (its real best may lie outside the range tried)."""
    tried = best["lrs_tried"][norm]
    x = best["best_lr"][norm]
    return len(tried) > 0 and (math.isclose(x, min(tried)) or math.isclose(x, max(tried)))


def best_table(summary: dict, recipes: Iterable[str] = ("kit", "paper"), depths: Iterable[int] = DEPTHS) -> str:
    """Best-vs-best with its numbers: per recipe and depth, each norm's best lr among those tried and
    its mean final loss, and LNS − Pre-LN there (mean ± sd of the per-seed differences, k/n seeds
    favouring LNS, paired t-test p); ``*``: the best lr is the lowest or highest tried (``at_edge``)."""
    lines = [f"{'recipe':7s}{'depth':>6s}   {'Pre-LN best':>17s}   {'LNS best':>17s}   {'LNS − Pre-LN':>26s}   lrs tried"]
    for b in summary["best_vs_best"]:
        if b["recipe"] not in recipes or b["depth"] not in depths or b["tokens"] != TOKENS:
            continue
        if "lns-pre" not in b["gaps"]:
            continue
        c = {n: cell(summary, b["depth"], b["recipe"], b["best_lr"][n])["arms"][n] for n in ("pre", "lns")}
        arm = {n: f"{c[n]['mean']:.3f} @ {lr_text(b['best_lr'][n])}{'*' if at_edge(b, n) else ' '}" for n in c}
        tried = ", ".join(lr_text(x) for x in sorted(set(b["lrs_tried"]["pre"]) | set(b["lrs_tried"]["lns"])))
        lines.append(
            f"{b['recipe']:7s}{b['depth']:6d}   {arm['pre']:>17s}   {arm['lns']:>17s}   "
            f"{_gap(b['gaps']['lns-pre']):>26s}   {tried}"
        )
    return "\n".join(lines)


def gap_numbers(g: dict | PairedGap) -> str:
    """ "+0.051 ± 0.008 nats, 0/3 seeds favour LNS, p = 0.007" (mean ± sd of the per-seed
    differences)."""
    g = g.to_dict() if isinstance(g, PairedGap) else g
    return (
        f"{g['mean']:+.3f} ± {g['sd']:.3f} nats, {g['b_better']}/{g['n']} seeds favour "
        f"{NORM_LABELS.get(g['b'], g['b'])}, p = {g['p']:.3f}"
    )


def lr_raise_lines(
    scale_data: dict,
    points: Iterable[str] = (
        "gcide_d128_L12_T8M",
        "gcide_d128_L24_T8M",
        "gcide_d128_L48_T8M",
        "gcide_d128_L96_T8M",
        "gcide_d128_L24_T32M",
    ),
) -> list[str]:
    """The scale map (kit recipe): what raising LNS's lr 3x (3e-3 -> 1e-2) did at each point that
    has both, paired by seed: LNS at 1e-2 minus LNS at 3e-3, and minus Pre-LN at 3e-3."""
    from ..stats import paired
    from .sweep import arm_table, final_loss

    table = arm_table(scale_data["runs"])
    out = []
    for key in points:
        arms = table.get(key, {})
        if not {"pre@0.003", "lns@0.003", "lns@0.01"} <= set(arms):
            continue
        loss = {
            a: {s: final_loss(r) for s, r in arms[a].items()}
            for a in ("pre@0.003", "lns@0.003", "lns@0.01")
        }
        own = paired("lns", "lns", loss["lns@0.003"], loss["lns@0.01"])
        vs_pre = paired("pre", "lns", loss["pre@0.003"], loss["lns@0.01"])
        pt = (
            next(p for p in scale_data["points"] if p["key"] == key)
            if "points" in scale_data
            else None
        )
        where = (
            f"depth {pt['n_layers']}, {pt['tokens'] / M:g}M characters ({pt['steps']} steps)"
            if pt
            else key
        )
        out.append(
            f"{where}: LNS 1e-2 − LNS 3e-3 {own.mean:+.3f} ± {own.sd:.3f} ({own.b_better}/{own.n} "
            "seeds "
            f"better at 1e-2, p = {own.p:.3f}); LNS 1e-2 − Pre-LN 3e-3 {gap_numbers(vs_pre)}"
        )
    return out


# ------------------------------------------------------------------------------------- instability


def instability_lines(
    runs: list[dict],
    lr: float | None = None,
    recipes: Iterable[str] = RECIPES_SHOWN,
    depths: Iterable[int] = DEPTHS,
) -> list[str]:
    """Per recipe, depth and lr (``lr``, or every lr run): how many ``runs`` (the summary's per-run
    rows) of each norm the map's rule calls unstable, and why."""
    cells = sorted(
        {(r["recipe"], r["depth"], r["lr"]) for r in runs if r["tokens"] == TOKENS
         and r["recipe"] in recipes and r["depth"] in depths and (lr is None or math.isclose(r["lr"], lr))},
        key=lambda k: (list(recipes).index(k[0]), k[1], k[2]),
    )
    out = []
    for rc, d, x in cells:
        parts = []
        for norm in ("pre", "lns", "peri"):
            here = [r for r in runs if (r["depth"], r["tokens"], r["recipe"], r["norm"]) == (d, TOKENS, rc, norm)
                    and math.isclose(r["lr"], x)]
            if not here:
                parts.append(f"{NORM_LABELS[norm]} not run")
                continue
            bad = sorted((r for r in here if r["unstable"]), key=lambda r: r["seed"])
            why = "; ".join(f"seed {r['seed']} {_short(r['unstable'])}" for r in bad)
            parts.append(f"{NORM_LABELS[norm]} {len(bad)}/{len(here)}" + (f" ({why})" if why else ""))
        out.append(f"{rc:10s} depth {d:2d} lr {lr_text(x):5s}| " + " | ".join(parts))
    return out


def _short(reason: str) -> str:
    """ "ended 0.24 nats above its stable value" -> "+0.24 at the end"; "loss spike of 0.18 nats" ->
    "spike 0.18"."""
    words = reason.split()
    if reason.startswith("ended"):
        return f"+{words[1]} at the end"
    if reason.startswith("loss spike"):
        return f"spike {words[3]}"
    return reason


def unstable_counts(
    summary: dict, recipe: str, norm: str, lr: float | None = None, depths: Iterable[int] | None = None
) -> dict[tuple[int, float], tuple[int, int]]:
    """{(depth, lr): (unstable runs, runs)} of one norm under one recipe (at ``lr``, or every lr)."""
    out: dict[tuple[int, float], list[int]] = {}
    for r in summary["runs"]:
        if (
            r["recipe"] == recipe
            and r["norm"] == norm
            and r["tokens"] == TOKENS
            and (lr is None or math.isclose(r["lr"], lr))
            and (depths is None or r["depth"] in depths)
        ):
            k = out.setdefault((r["depth"], r["lr"]), [0, 0])
            k[0] += r["unstable"] is not None
            k[1] += 1
    return {key: tuple(v) for key, v in sorted(out.items())}


def unstable_total(counts: dict) -> tuple[int, int]:
    """(unstable runs, runs) summed over the cells of ``unstable_counts``."""
    return sum(k for k, _ in counts.values()), sum(n for _, n in counts.values())


# ------------------------------------------------------------------------------------ curse metric


def curse_rows(
    summary: dict,
    lr: float | None = None,
    recipes: Iterable[str] = RECIPES_SHOWN,
    depths: Iterable[int] = DEPTHS,
) -> list[dict]:
    """Per cell with both Pre-LN and LNS: the deepest third's mean skip cost per block (nats) of
    each, their ratio, whether every paired seed has LNS's below Pre-LN's, and the deep/shallow
    ratios where measured."""
    rows = []
    for c in cells_of(summary, recipes, depths, lr):
        if not {"pre", "lns"} <= set(c["arms"]):
            continue
        seeds = {
            n: {
                r["seed"]: r["curse"]
                for r in summary["runs"]
                if r["norm"] == n
                and (r["depth"], r["tokens"], r["recipe"]) == (c["depth"], TOKENS, c["recipe"])
                and math.isclose(r["lr"], c["lr"])
                and r["curse"]
            }
            for n in ("pre", "lns")
        }
        common = sorted(set(seeds["pre"]) & set(seeds["lns"]))
        pre, lns = c["arms"]["pre"], c["arms"]["lns"]
        rows.append(
            {
                "recipe": c["recipe"],
                "depth": c["depth"],
                "lr": c["lr"],
                "pre": pre["deep_skip"],
                "lns": lns["deep_skip"],
                "ratio": pre["deep_skip"] / lns["deep_skip"],
                "seeds": len(common),
                "lns_below_every_seed": bool(common)
                and all(seeds["lns"][s]["deep"] < seeds["pre"][s]["deep"] for s in common),
                "pre_deep_over_shallow": pre["deep_over_shallow"],
                "lns_deep_over_shallow": lns["deep_over_shallow"],
            }
        )
    return rows


def curse_exceptions(summary: dict, recipes: Iterable[str] = RECIPES_SHOWN, depths: Iterable[int] = DEPTHS) -> list[str]:
    """The single runs that go against the cell means' pattern: a Pre-LN run whose deep/shallow ratio
    is not above 1, an LNS run whose ratio is 1 or more (one line each, with the ratio)."""
    out = []
    for r in sorted(summary["runs"], key=lambda r: (r["norm"] != "pre", r["recipe"], r["depth"], r["lr"], r["seed"])):
        ratio = (r.get("curse") or {}).get("ratio")
        if ratio is None or r["tokens"] != TOKENS or r["recipe"] not in recipes or r["depth"] not in depths:
            continue
        if (r["norm"] == "pre" and ratio <= 1.005) or (r["norm"] == "lns" and ratio >= 1):
            out.append(f"{NORM_LABELS[r['norm']]}, {RECIPE_NAMES.get(r['recipe'], r['recipe'])}, depth {r['depth']}, "
                       f"lr {lr_text(r['lr'])}, seed {r['seed']}: deep/shallow {ratio:.2f}"
                       + (" (unstable)" if r["unstable"] else ""))
    return out


def curse_table(rows: list[dict]) -> str:
    def r(v):
        return f"{v:6.2f}" if v is not None else "     —"

    lines = [
        f"{'recipe':10s}{'depth':>6s} {'lr':>5s} {'Pre-LN':>8s} {'LNS':>8s} {'Pre/LNS':>8s}   deep/shallow: "
        "Pre-LN    LNS"
    ]
    for x in rows:
        lines.append(
            f"{x['recipe']:10s}{x['depth']:6d} {lr_text(x['lr']):>5s} {x['pre']:8.4f} {x['lns']:8.4f} "
            f"{x['ratio']:7.1f}x   {'':14s}{r(x['pre_deep_over_shallow'])} {r(x['lns_deep_over_shallow'])}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- missing


def missing_lines(missing: list[dict]) -> list[str]:
    """The recipe grid's missing runs, one line per depth: per recipe and lr, which norms (all seeds
    unless the seeds are named); a cell with every norm and seed missing is named by its lr alone."""
    by_depth: dict[int, dict[tuple, list[dict]]] = {}
    for m in missing:
        by_depth.setdefault(m["depth"], {}).setdefault((m["recipe"], m["lr"]), []).append(m)
    out = []
    for d in sorted(by_depth):
        parts = []
        for (rc, lr), ms in by_depth[d].items():
            whole = len(ms) == 3 and all(len(m["seeds"]) == 3 for m in ms)
            what = "" if whole else " [" + "; ".join(
                NORM_LABELS[m["norm"]] + ("" if len(m["seeds"]) == 3 else " seed" + ("s " if len(m["seeds"]) > 1 else " ") + ",".join(map(str, m["seeds"])))
                for m in ms) + "]"
            parts.append(f"{rc} {lr_text(lr)}{what}")
        n = sum(len(m["seeds"]) for ms in by_depth[d].values() for m in ms)
        out.append(f"depth {d} ({n} runs): " + ", ".join(parts))
    return out


# ----------------------------------------------------------------------------------------- figures


def _seed_points(ax, x: float, diffs: list[float], color: str, marker: str = "o",
                 significant: bool | None = None) -> None:
    """Per-seed differences (points) and their mean (bar); with ``significant`` given, the mean also
    gets a square, filled when the paired t-test rejects (p < 0.05), hollow when not."""
    jitter = np.linspace(-0.04, 0.04, len(diffs)) if len(diffs) > 1 else [0.0]
    ax.scatter(
        x + np.asarray(jitter), diffs, s=28, color=color, marker=marker, alpha=0.85, zorder=3
    )
    ax.hlines(float(np.mean(diffs)), x - 0.1, x + 0.1, color="k", lw=2, zorder=4)
    if significant is not None:
        ax.scatter([x + 0.18], [float(np.mean(diffs))], s=40, marker="s", edgecolors="k",
                   facecolors="k" if significant else "none", zorder=5)


def _legend_below(fig, handles: list, ncol: int = 3) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize="small")


def _handles(norms: Iterable[str], what: str = " − Pre-LN, one seed") -> list:
    from matplotlib.lines import Line2D

    hs = [
        Line2D(
            [], [], ls="", marker="o", color=plots.NORM_COLORS[n], label=f"{NORM_LABELS[n]}{what}"
        )
        for n in norms
    ]
    return hs + [Line2D([], [], color="k", lw=2, label="mean over seeds")]


LRS = (1e-3, 3e-3, 1e-2)


def _lr_axis(ax) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(LRS, [lr_text(x) for x in LRS])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(LRS[0] / 1.6, LRS[-1] * 1.6)


def plot_lr_map(
    summary: dict,
    depths: Iterable[int] = DEPTHS,
    recipes: Iterable[str] = ("kit", "paper"),
    ymax: float = 1.4,
):
    """Final validation loss against learning rate, one panel per recipe (rows) and depth (columns):
    each norm's seeds (points; hollow: unstable by the map's rule) and mean (line); the paper-recipe
    panels add the paper recipe + clipping runs (crosses, drawn right of their lr). Points above
    ``ymax`` sit on the top edge as triangles, off-scale means are written there; an lr a norm was
    not run at says "not run" at the bottom."""
    from matplotlib.lines import Line2D

    recipes, depths = list(recipes), list(depths)
    fig, axes = plots.subplots(len(recipes), len(depths), sharex=True, sharey=True, squeeze=False,
                               figsize=(11, 3.4 * len(recipes) + 0.8))
    for (i, rc), (j, d) in ((a, b) for a in enumerate(recipes) for b in enumerate(depths)):
        ax = axes[i][j]
        for src in [rc] + (["paper+clip"] if rc == "paper" else []):
            for k, norm in enumerate(NORMS):
                runs = [r for r in summary["runs"] if (r["recipe"], r["depth"], r["tokens"], r["norm"])
                        == (src, d, TOKENS, norm) and math.isfinite(r["final"])]
                col, shift = plots.NORM_COLORS[norm], 1.12 ** (k - 1) * (1.45 if src == "paper+clip" else 1)
                for r in runs:
                    y, top = min(r["final"], ymax), r["final"] > ymax
                    face = "none" if r["unstable"] else col
                    marker = "^" if top else ("x" if src == "paper+clip" else "o")
                    style = {"color": col, "linewidths": 2} if marker == "x" else {"edgecolors": col, "facecolors": face}
                    ax.scatter(r["lr"] * shift, y, s=55 if marker == "x" else 30, marker=marker, clip_on=False,
                               zorder=3, **style)
                lrs = sorted({r["lr"] for r in runs})
                for x in lrs:
                    above = sum(r["final"] > ymax for r in runs if r["lr"] == x)
                    if above:
                        ax.annotate(f"{above} off", (x * shift, ymax), xytext=(4, -10), textcoords="offset points",
                                    fontsize=7, color=col)
                if src == rc and lrs:
                    means = [np.mean([r["final"] for r in runs if r["lr"] == x]) for x in lrs]
                    ax.plot([x * shift for x in lrs], np.minimum(means, ymax), color=col, lw=1.2)
                    for x, m in zip(lrs, means):
                        if m > ymax:  # an off-scale mean: its value, written at the top edge
                            ax.annotate(f"mean {m:.2f}", (x * shift, ymax), xytext=(-14, -22 - 9 * k),
                                        textcoords="offset points", fontsize=7, color=col)
                if src == rc:
                    for x in sorted(set(LRS) - {r["lr"] for r in runs}, key=float):
                        ax.annotate("not run", (x * shift, 0), xycoords=("data", "axes fraction"),
                                    xytext=(0, 4 + 9 * k), textcoords="offset points", fontsize=7, color=col,
                                    ha="center")
        _lr_axis(ax)
        ax.set_ylim(top=ymax)
        ax.set_title(f"{RECIPE_NAMES.get(rc, rc)}, depth {d}", fontsize="medium")
        ax.set(xlabel="peak learning rate" if i == len(recipes) - 1 else "",
               ylabel="final val loss (nats per character)" if j == 0 else "")
    handles = [Line2D([], [], color=plots.NORM_COLORS[n], marker="o", label=NORM_LABELS[n]) for n in NORMS]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", color="gray", label="unstable run (map's rule)"),
        Line2D([], [], ls="", marker="x", mew=2, color="gray", label="paper recipe + clipping (right of its lr)"),
        Line2D([], [], ls="", marker="^", color="gray", label=f"above {ymax:g} (off the scale)"),
    ]
    _legend_below(fig, handles, ncol=6)
    fig.suptitle(f"{TOKENS / M:g}M characters, width 128 · one point per seed, line: mean over seeds",
                 fontsize="medium")
    return fig


def plot_gap_map(summary: dict, depths: Iterable[int] = DEPTHS, recipes: Iterable[str] = ("kit", "paper")):
    """LNS − Pre-LN per seed (points) and mean (bar), one panel per depth: at each shared lr of each
    recipe, then best vs best (each norm at its own best lr, black)."""
    recipes, depths = list(recipes), list(depths)
    fig, axes = plots.subplots(1, len(depths), squeeze=False, sharey=True, figsize=(11, 4.4))
    for ax, d in zip(axes[0], depths):
        ticks = []
        for rc in recipes:
            for c in cells_of(summary, [rc], [d]):
                if "lns-pre" in c["gaps"]:
                    g = c["gaps"]["lns-pre"]
                    _seed_points(ax, len(ticks), g["diffs"], plots.NORM_COLORS["lns"], significant=g["winner"] is not None)
                    ticks.append(f"{lr_text(c['lr'])}\n{rc}")
            best = next((b for b in summary["best_vs_best"] if (b["depth"], b["tokens"], b["recipe"])
                         == (d, TOKENS, rc) and "lns-pre" in b["gaps"]), None)
            if best:
                g = best["gaps"]["lns-pre"]
                _seed_points(ax, len(ticks), g["diffs"], "k", marker="D", significant=g["winner"] is not None)
                ticks.append(f"best vs\nbest, {rc}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(range(len(ticks)), ticks, fontsize="small")
        ax.set_xlim(-0.5, max(len(ticks), 2) - 0.5)
        ax.set(title=f"depth {d}", xlabel="shared lr (both norms), or each norm at its best lr; recipe")
    axes[0][0].set_ylabel("LNS − Pre-LN final val loss (nats per character)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=plots.NORM_COLORS["lns"], label="one seed, same lr"),
               Line2D([], [], ls="", marker="D", color="k", label="one seed, each norm at its best lr"),
               Line2D([], [], color="k", lw=2, label="mean over seeds"),
               Line2D([], [], ls="", marker="s", color="k", label="mean: paired t-test p < 0.05"),
               Line2D([], [], ls="", marker="s", mfc="none", color="k", label="mean: no clear difference")]
    _legend_below(fig, handles)
    fig.suptitle(f"{TOKENS / M:g}M characters · below 0: LNS ahead", fontsize="medium")
    return fig


def plot_curves(
    raw_runs: list[dict],
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
):
    """Training loss against step of every run at ``lr`` (rows: recipes, columns: depths); dashed: a
    run the map's rule calls unstable."""
    from matplotlib.lines import Line2D

    from .recipe_map import recipe_of

    recipes, depths = list(recipes), list(depths)
    why = {r["name"]: r["unstable"] for r in summary["runs"]}
    fig, axes = plots.subplots(
        len(recipes), len(depths), sharex=True, sharey=True, squeeze=False,
        figsize=(4 * len(depths) + 1, 2.9 * len(recipes) + 0.8),
    )
    for r in raw_runs:
        p = r["job"]["point"]
        rc, d = recipe_of(r), p["n_layers"]
        if (
            rc not in recipes
            or d not in depths
            or not math.isclose(float(r["lr"]), lr)
            or p["tokens"] != TOKENS
        ):
            continue
        ax = axes[recipes.index(rc)][depths.index(d)]
        ax.plot(
            r["run"]["train_steps"],
            r["run"]["train_loss"],
            color=plots.NORM_COLORS[r["norm"]],
            lw=1,
            ls="--" if why.get(r["name"]) else "-",
            alpha=0.85,
        )
    for i, rc in enumerate(recipes):
        for j, d in enumerate(depths):
            ax = axes[i][j]
            ax.set_ylim(0.9, 3.8)
            ax.set_title(f"{RECIPE_NAMES.get(rc, rc)}, depth {d}", fontsize="medium")
            if i == len(recipes) - 1:
                ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel("training loss (nats per character)")
    handles = [
        Line2D([], [], color=plots.NORM_COLORS[n], label=NORM_LABELS[n])
        for n in ("pre", "lns", "peri")
    ]
    handles.append(Line2D([], [], color="gray", ls="--", label="unstable by the map's rule"))
    _legend_below(fig, handles, ncol=4)
    fig.suptitle(
        f"every run at lr {lr_text(lr)}, {TOKENS / M:g}M characters (one line per seed)",
        fontsize="medium",
    )
    return fig


def plot_curse(summary: dict, recipes: Iterable[str] = ("kit", "paper"), depths: Iterable[int] = DEPTHS):
    """The curse metric per cell (one panel per recipe; x: depth and lr): the deepest third's skip
    cost over that of blocks 2..L/3 (log scale), per seed (points) and mean (bar), per norm; 1 = deep
    blocks matter as much as shallow ones. "not measured": runs that skipped the deepest third only."""
    recipes = list(recipes)
    fig, axes = plots.subplots(1, len(recipes), squeeze=False, sharey=True, figsize=(11, 4.4))
    for ax, rc in zip(axes[0], recipes):
        cells = cells_of(summary, [rc], depths)
        for i, c in enumerate(cells):
            for k, norm in enumerate(NORMS):
                vals = [max(r["curse"]["ratio"], 1e-3) for r in summary["runs"] if r["curse"]
                        and r["curse"]["ratio"] is not None and r["norm"] == norm
                        and (r["depth"], r["tokens"], r["recipe"]) == (c["depth"], TOKENS, rc)
                        and math.isclose(r["lr"], c["lr"])]
                if vals:
                    _seed_points(ax, i + (k - 1) * 0.25, vals, plots.NORM_COLORS[norm])
                elif norm in c["arms"]:
                    ax.text(i + (k - 1) * 0.25, 1.3e-3, "not measured", rotation=90, ha="center", va="bottom",
                            fontsize=7, color=plots.NORM_COLORS[norm])
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 50)
        ax.axhline(1, color="gray", lw=0.8, ls=":")
        ax.set_xlim(-0.5, len(cells) - 0.5)
        ax.set_xticks(range(len(cells)), [f"{c['depth']}, {lr_text(c['lr'])}" for c in cells], fontsize="small")
        ax.set(xlabel="depth, learning rate", title=RECIPE_NAMES.get(rc, rc))
    axes[0][0].set_ylabel("skip cost: deepest third / blocks 2..L/3")
    _legend_below(fig, _handles(NORMS, ", one seed"), ncol=4)
    fig.suptitle(f"{TOKENS / M:g}M characters · above 1: deep blocks matter more than shallow ones", fontsize="medium")
    return fig


def plot_scale_gaps(rows: list[dict], corpus: str = "gcide", width: int = 128):
    """The scale map (kit recipe): LNS − Pre-LN per seed (points) and mean (line), against depth,
    one colour per token budget; left LNS at the shared lr 3e-3, right LNS at 1e-2 (Pre-LN at
    3e-3 in both). Character-level points only: a BPE gap is in other units (nats per token) and
    is not drawn on this axis."""
    fig, axes = plots.subplots(1, 2, sharey=True, figsize=(11, 4.2))
    from matplotlib.lines import Line2D

    handles = []
    for ax, key, title in (
        (axes[0], "gap_same_lr", "LNS at lr 3e-3 (same as Pre-LN)"),
        (axes[1], "gap_own_lr", "LNS at lr 1e-2 (Pre-LN at 3e-3)"),
    ):
        budgets = sorted({r["point"]["tokens"] for r in rows if r.get(key)})
        for k, tokens in enumerate(budgets):
            pts = sorted(
                (r["point"]["n_layers"], r[key])
                for r in rows
                if r.get(key)
                and r["complete"]
                and (r["point"]["corpus"], r["point"]["d_model"], r["point"]["tokens"])
                == (corpus, width, tokens)
            )
            if not pts:
                continue
            color = f"C{k}"
            xs = np.log2([d for d, _ in pts])
            for x, (_, g) in zip(xs, pts):
                ax.scatter(
                    x + np.linspace(-0.06, 0.06, len(g["diffs"])),
                    g["diffs"],
                    s=24,
                    color=color,
                    alpha=0.8,
                )
            ax.plot(xs, [g["mean"] for _, g in pts], color=color, marker="_", ms=14, lw=1.2)
            label = f"{tokens / M:g}M characters ({pts[0][1]['n']} seeds each)"
            if label not in [h.get_label() for h in handles]:
                handles.append(Line2D([], [], color=color, marker="o", label=label))
        ax.axhline(0, color="gray", lw=0.8)
        ticks = [12, 24, 48, 96]
        ax.set_xticks(np.log2(ticks), [str(t) for t in ticks])
        ax.set(xlabel="depth (blocks)", title=title)
    axes[0].set_ylabel("LNS − Pre-LN final val loss (nats per character)")
    handles.append(Line2D([], [], color="k", label="mean over seeds"))
    _legend_below(fig, handles)
    fig.suptitle(
        f"scale map, kit recipe, width {width}, characters · below 0: LNS ahead", fontsize="medium"
    )
    return fig


__all__ = [
    "arm_gap",
    "arm_gap_line",
    "arm_label",
    "best_lines",
    "at_edge",
    "best_table",
    "cell",
    "cell_table",
    "cells_of",
    "condition",
    "curse_exceptions",
    "curse_rows",
    "curse_table",
    "gap_numbers",
    "instability_lines",
    "lr_raise_lines",
    "lr_text",
    "missing_lines",
    "peri_record",
    "plot_curse",
    "plot_curves",
    "plot_gap_map",
    "plot_lr_map",
    "plot_scale_gaps",
    "recipe_lines",
    "relabel",
    "unstable_counts",
    "unstable_total",
    "verdicts",
]
