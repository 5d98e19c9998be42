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
DEPTHS = (12, 24, 48)
RECIPE_NAMES = {
    "kit": "kit recipe",
    "paper": "paper recipe",
    "paper+clip": "paper recipe + clipping",
}
OTHER_NORMS = ("lns", "peri")


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


def _arm(a: dict | None) -> str:
    if not a or a["mean"] is None:
        return f"{'not run':>15s}"
    sd = f"{a['sd']:.3f}" if a["sd"] is not None else "  —  "
    return f"{a['mean']:.3f} ± {sd} ({a['n']})"


def _gap(g: dict | None) -> str:
    if not g:
        return f"{'—':>24s}"
    return f"{g['mean']:+.3f} ± {g['sd']:.3f} {g['b_better']}/{g['n']} p={g['p']:.3f}"


def cell_table(
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
) -> str:
    """Final validation loss (mean ± sd (seeds)) per norm and the paired gaps vs Pre-LN, per recipe
    and depth, at one shared lr. ``k/n``: seeds in which the norm beat Pre-LN; p: paired t-test."""
    head = (
        f"{'recipe':7s}{'depth':>6s} {'Pre-LN':>19s} {'LNS':>19s} {'Peri-LN':>19s}   "
        f"{'LNS − Pre-LN':>24s}   {'Peri-LN − Pre-LN':>24s}"
    )
    lines = [head]
    for rc in recipes:
        for d in depths:
            c = cell(summary, d, rc, lr)
            arms, gaps = (c["arms"], c["gaps"]) if c else ({}, {})
            lines.append(
                f"{rc:7s}{d:6d} {_arm(arms.get('pre')):>19s} {_arm(arms.get('lns')):>19s} "
                f"{_arm(arms.get('peri')):>19s}   {_gap(gaps.get('lns-pre')):>24s}   "
                f"{_gap(gaps.get('peri-pre')):>24s}"
            )
    return "\n".join(lines)


def verdicts(
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
    norms: Iterable[str] = OTHER_NORMS,
) -> list[str]:
    """``stats.gap_statement`` of every norm vs Pre-LN at the shared lr, labelled with its
    conditions (cells with fewer than 2 paired seeds say so)."""
    out = []
    for rc in recipes:
        for d in depths:
            c = cell(summary, d, rc, lr)
            for norm in norms:
                label = f"{NORM_LABELS[norm]} vs Pre-LN, {condition(d, rc, lr)}"
                g = c["gaps"].get(f"{norm}-pre") if c else None
                if g:
                    out.append(gap_statement(label, PairedGap.from_dict(g)))
                elif c and norm in c["arms"]:
                    out.append(f"{label}: fewer than 2 paired seeds, no verdict")
    return out


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
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
) -> list[str]:
    """Per recipe, depth and norm: how many ``runs`` (the summary's per-run rows) the map's rule
    calls unstable, and why."""
    out = []
    for rc in recipes:
        for d in depths:
            parts = []
            for norm in ("pre", "lns", "peri"):
                here = [
                    r
                    for r in runs
                    if (r["depth"], r["tokens"], r["recipe"], r["norm"]) == (d, TOKENS, rc, norm)
                    and math.isclose(r["lr"], lr)
                ]
                if not here:
                    parts.append(f"{NORM_LABELS[norm]} not run")
                    continue
                bad = sorted((r for r in here if r["unstable"]), key=lambda r: r["seed"])
                why = "; ".join(f"s{r['seed']} {_short(r['unstable'])}" for r in bad)
                parts.append(
                    f"{NORM_LABELS[norm]} {len(bad)}/{len(here)}" + (f" ({why})" if why else "")
                )
            out.append(f"{rc:6s} depth {d:2d} | " + " | ".join(parts))
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
    summary: dict, recipe: str, norm: str, lr: float = SHARED_LR
) -> dict[int, tuple[int, int]]:
    """{depth: (unstable runs, runs)} of one norm under one recipe at ``lr``."""
    out: dict[int, list[int]] = {}
    for r in summary["runs"]:
        if (
            r["recipe"] == recipe
            and r["norm"] == norm
            and r["tokens"] == TOKENS
            and math.isclose(r["lr"], lr)
        ):
            k = out.setdefault(r["depth"], [0, 0])
            k[0] += r["unstable"] is not None
            k[1] += 1
    return {d: tuple(v) for d, v in sorted(out.items())}


# ------------------------------------------------------------------------------------ curse metric


def curse_rows(
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
) -> list[dict]:
    """Per cell with both Pre-LN and LNS: the deepest third's mean skip cost per block (nats) of
    each, their ratio, whether every paired seed has LNS's below Pre-LN's, and the deep/shallow
    ratios where measured."""
    rows = []
    for rc in recipes:
        for d in depths:
            c = cell(summary, d, rc, lr)
            if not c or not {"pre", "lns"} <= set(c["arms"]):
                continue
            seeds = {
                n: {
                    r["seed"]: r["curse"]
                    for r in summary["runs"]
                    if r["norm"] == n
                    and (r["depth"], r["tokens"], r["recipe"]) == (d, TOKENS, rc)
                    and math.isclose(r["lr"], lr)
                    and r["curse"]
                }
                for n in ("pre", "lns")
            }
            common = sorted(set(seeds["pre"]) & set(seeds["lns"]))
            pre, lns = c["arms"]["pre"], c["arms"]["lns"]
            rows.append(
                {
                    "recipe": rc,
                    "depth": d,
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


def curse_table(rows: list[dict]) -> str:
    def r(v):
        return f"{v:6.2f}" if v is not None else "     —"

    lines = [
        f"{'recipe':7s}{'depth':>6s} {'Pre-LN':>8s} {'LNS':>8s} {'Pre/LNS':>8s}   deep/shallow: "
        "Pre-LN    LNS"
    ]
    for x in rows:
        lines.append(
            f"{x['recipe']:7s}{x['depth']:6d} {x['pre']:8.4f} {x['lns']:8.4f} {x['ratio']:7.1f}x   "
            f"{'':14s}{r(x['pre_deep_over_shallow'])} {r(x['lns_deep_over_shallow'])}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- missing


def missing_lines(missing: list[dict]) -> list[str]:
    """The recipe grid's missing runs, one line per depth x recipe x lr (norms and seeds), in
    priority order."""
    groups: dict[tuple, list[str]] = {}
    for m in missing:
        key = (m["depth"], m["recipe"], m["lr"])
        seeds = ",".join(str(s) for s in m["seeds"])
        groups.setdefault(key, []).append(f"{NORM_LABELS[m['norm']]} (seeds {seeds})")
    return [
        f"depth {d:2d}, {rc:10s} lr {lr_text(lr):5s}: {', '.join(v)}"
        for (d, rc, lr), v in groups.items()
    ]


# ----------------------------------------------------------------------------------------- figures


def _seed_points(ax, x: float, diffs: list[float], color: str, marker: str = "o") -> None:
    jitter = np.linspace(-0.04, 0.04, len(diffs)) if len(diffs) > 1 else [0.0]
    ax.scatter(
        x + np.asarray(jitter), diffs, s=28, color=color, marker=marker, alpha=0.85, zorder=3
    )
    ax.hlines(float(np.mean(diffs)), x - 0.1, x + 0.1, color="k", lw=2, zorder=4)


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


def plot_gaps(
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
):
    """Per recipe (one panel each, its own y axis): each norm's final validation loss minus Pre-LN's
    at the same shared lr, per seed (points) and their mean (bar), against depth; "not run" where
    a cell is missing."""
    recipes, depths = list(recipes), list(depths)
    fig, axes = plots.subplots(1, len(recipes), squeeze=False, figsize=(11, 4.2))
    for ax, rc in zip(axes[0], recipes):
        for i, d in enumerate(depths):
            c = cell(summary, d, rc, lr)
            for k, norm in enumerate(OTHER_NORMS):
                x = i + (k - 0.5) * 0.3
                g = c["gaps"].get(f"{norm}-pre") if c else None
                if g:
                    _seed_points(ax, x, g["diffs"], plots.NORM_COLORS[norm])
                else:
                    ax.text(
                        x,
                        0,
                        "not run" if not c or norm not in c["arms"] else "1 seed",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="gray",
                    )
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlim(-0.5, len(depths) - 0.5)
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set(
            xlabel="depth (blocks)",
            ylabel="final val loss − Pre-LN's (nats per character)",
            title=f"{RECIPE_NAMES.get(rc, rc)}, lr {lr_text(lr)} for all",
        )
    _legend_below(fig, _handles(OTHER_NORMS))
    fig.suptitle(
        f"{TOKENS / M:g}M characters, 977 steps · below 0: the norm beat Pre-LN", fontsize="medium"
    )
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
        len(recipes), len(depths), sharex=True, sharey=True, squeeze=False, figsize=(12, 6.4)
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


def plot_curse(
    summary: dict,
    lr: float = SHARED_LR,
    recipes: Iterable[str] = ("kit", "paper"),
    depths: Iterable[int] = DEPTHS,
):
    """The deepest third's mean skip-one-block cost per block (log scale), per seed (points) and
    mean (bar), for each norm, depth and recipe (one panel per recipe)."""
    recipes, depths = list(recipes), list(depths)
    norms = ("pre", "lns", "peri")
    fig, axes = plots.subplots(1, len(recipes), squeeze=False, sharey=True, figsize=(11, 4.2))
    for ax, rc in zip(axes[0], recipes):
        for i, d in enumerate(depths):
            for k, norm in enumerate(norms):
                vals = [
                    max(r["curse"]["deep"], 1e-5)
                    for r in summary["runs"]
                    if r["curse"]
                    and r["norm"] == norm
                    and (r["depth"], r["tokens"], r["recipe"]) == (d, TOKENS, rc)
                    and math.isclose(r["lr"], lr)
                ]
                if vals:
                    _seed_points(ax, i + (k - 1) * 0.25, vals, plots.NORM_COLORS[norm])
        ax.set_yscale("log")
        ax.set_xlim(-0.5, len(depths) - 0.5)
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set(
            xlabel="depth (blocks)",
            ylabel="loss increase when one block is skipped (nats)",
            title=f"deepest third, {RECIPE_NAMES.get(rc, rc)}, lr {lr_text(lr)}",
        )
    _legend_below(fig, _handles(norms, ", one seed"), ncol=4)
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
    "best_lines",
    "cell",
    "cell_table",
    "condition",
    "curse_rows",
    "curse_table",
    "gap_numbers",
    "instability_lines",
    "lr_raise_lines",
    "lr_text",
    "missing_lines",
    "plot_curse",
    "plot_curves",
    "plot_gaps",
    "plot_scale_gaps",
    "recipe_lines",
    "unstable_counts",
    "verdicts",
]
