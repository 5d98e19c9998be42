"""Checkers for notebook 07 (the recipe map). Solutions: notebooks/solutions/07_scale_map.ipynb.

Exercise 7.1 computes a paired gap and its verdict by hand from per-seed final losses; exercise 7.2
reads one point off the recipe map and states its conditions (a small dict). Both checkers take
their expected answers from the stored runs (``results.load("recipe_map")``, re-summarized from the
raw runs), never from numbers typed here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np

from ...stats import ALPHA, paired
from . import Verdict, attempt, correct, wrong

# Exercise 7.2's question: the kit's recipe, depth 48, 32M characters, each norm at its best lr (there
# the best lrs differ, so the shared-lr cells are distinct mistakes).
QUESTION = {"depth": 48, "tokens": 32_000_000, "recipe": "kit"}
KEYS = ("depth", "tokens", "recipe", "lr", "winner", "n_seeds")
_TIE = {"tie", "none", "no clear difference", "no difference", "neither", ""}
_NAMES = {
    "pre": "pre",
    "pre-ln": "pre",
    "preln": "pre",
    "lns": "lns",
    "pre-ln + lns": "lns",
    "layernorm scaling": "lns",
    "peri": "peri",
    "peri-ln": "peri",
}


@cache
def _summary():
    from .. import recipe_map, results

    return recipe_map.summarize(results.load("recipe_map")["data"]["raw_runs"])


def _best(summary: dict, depth: int, tokens: int, recipe: str) -> dict:
    return next(
        b
        for b in summary["best_vs_best"]
        if (b["depth"], b["tokens"], b["recipe"]) == (depth, tokens, recipe)
    )


def _shared_cell(summary: dict, depth: int, tokens: int, recipe: str, lr: float) -> dict | None:
    return next(
        (
            c
            for c in summary["cells"]
            if (c["depth"], c["tokens"], c["recipe"]) == (depth, tokens, recipe)
            and math.isclose(c["lr"], lr)
        ),
        None,
    )


def _winner(value) -> str | None | bool:
    """'pre', 'lns', 'peri', None (a tie), or False (unreadable)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _TIE:
        return None
    return _NAMES.get(text, False)


def _lrs(value) -> dict[str, float] | None:
    if isinstance(value, Mapping):
        try:
            return {_NAMES.get(str(k).strip().lower(), str(k)): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
    try:
        return {"pre": float(value), "lns": float(value)}
    except (TypeError, ValueError):
        return None


def _fmt_lr(lr: float) -> str:
    return f"{lr:g}"


def _check_where(ex: str, answer: Mapping, d: int, t: int) -> Verdict | None:
    """Depth, token budget and recipe of the answer."""
    if answer["depth"] != d:
        return wrong(ex, f"depth {answer['depth']} is not the point asked about",
                     f"the point is depth {d}")
    try:
        tokens = float(answer["tokens"])
    except (TypeError, ValueError):
        tokens = math.nan
    if tokens == t / 1e6:
        return wrong(ex, "tokens in millions", f"write the number of tokens (characters): {t:_}")
    if tokens != t:
        return wrong(ex, f"{answer['tokens']} tokens is another budget",
                     f"the recipe map's runs are {t / 1e6:g}M characters (977 steps); the 8M "
                     "points are the older scale map's")
    recipe = str(answer["recipe"]).strip().lower()
    if recipe.startswith("paper"):
        return wrong(ex, f"wrong recipe: '{answer['recipe']}' is the paper's recipe (Adam, no "
                         "weight decay, β2 0.999, no clipping)",
                     "the question is about the kit's recipe (AdamW, weight decay 0.1, β2 0.95, "
                     "clipping 1.0): read the rows marked kit")
    if recipe != "kit":
        return wrong(ex, f"unknown recipe {answer['recipe']!r}",
                     "the recipes are 'kit', 'paper' and 'paper+clip'")
    return None


def _check_lrs(ex: str, answer: Mapping, s: dict, best: dict) -> Verdict | None:
    """The learning rates: each norm's best, not the shared lr."""
    want = {n: best["best_lr"][n] for n in ("pre", "lns")}
    lrs = _lrs(answer["lr"])
    if lrs is None or not {"pre", "lns"} <= set(lrs):
        return wrong(ex, "give each norm's learning rate", "'lr': {'pre': ..., 'lns': ...}")
    same = math.isclose(lrs["pre"], lrs["lns"])
    if same and not all(math.isclose(lrs[n], want[n]) for n in want):
        shared = lrs["pre"]
        cell = _shared_cell(s, best["depth"], best["tokens"], "kit", shared)
        g = cell["gaps"].get("lns-pre") if cell else None
        said = f" (there the verdict is {g['winner'] or 'a tie'})" if g else ""
        return wrong(ex, f"shared-lr vs best-vs-best: lr {_fmt_lr(shared)} for both is the "
                         f"shared-lr cell{said}",
                     "best-vs-best compares each norm at the lr where its mean final loss was "
                     "lowest: read the best-vs-best line")
    if not all(math.isclose(lrs[n], want[n]) for n in want):
        tried = ", ".join(f"{n}: {[_fmt_lr(x) for x in best['lrs_tried'][n]]}" for n in want)
        return wrong(ex, f"not the best learning rates ({lrs['pre']:g} / {lrs['lns']:g})",
                     f"the lrs tried at this point were {tried}; take each norm's lr with the "
                     "lowest mean loss")
    return None


def _check_verdict(ex: str, answer: Mapping, gap: dict) -> Verdict | None:
    """The winner (a tie unless the paired t-test rejects) and the number of paired seeds."""
    win = _winner(answer["winner"])
    if win is False:
        return wrong(ex, f"unreadable winner {answer['winner']!r}", "write 'pre', 'lns' or 'tie'")
    if win != gap["winner"] and gap["winner"] is None:
        side = "Pre-LN" if gap["mean"] > 0 else "LNS"
        return wrong(ex, f"reading a tie as a win: the mean gap leans to {side}, but the paired "
                         f"t-test does not reject 'no difference' (p ≥ {ALPHA:g}; "
                         f"{gap['b_better']} of {gap['n']} seeds favour LNS, {gap['a_better']} Pre-LN)",
                     "'ahead' needs p < 0.05; otherwise the verdict is a tie")
    if win != gap["winner"]:
        return wrong(ex, f"the verdict at this point is {gap['winner']}, not "
                         f"{answer['winner']!r}", "read the verdict line of this point")
    if answer["n_seeds"] != gap["n"]:
        return wrong(ex, f"{answer['n_seeds']} seeds: not the number of paired seeds",
                     "n is how many seeds both arms share, not how many favour one side")
    return None


def check_read_point(my_reading) -> Verdict:
    """Exercise 7.2: ``my_reading()`` returns ``{"depth", "tokens", "recipe", "lr": {"pre": ..,
    "lns": ..}, "winner", "n_seeds"}`` for LNS vs Pre-LN at ``QUESTION`` (depth 48, 32M characters,
    the kit's recipe), each norm at its own best learning rate."""
    ex = "7.2"
    answer, stop = attempt(ex, my_reading)
    if stop:
        return stop
    if not isinstance(answer, Mapping):
        return wrong(ex, f"the answer is a {type(answer).__name__}, not a dict",
                     f"return a dict with the keys {', '.join(KEYS)}")
    lacking = [k for k in KEYS if k not in answer]
    if lacking:
        return wrong(ex, f"the answer lacks {', '.join(lacking)}",
                     f"return a dict with the keys {', '.join(KEYS)}")
    s = _summary()
    d, t = QUESTION["depth"], QUESTION["tokens"]
    best = _best(s, d, t, "kit")
    gap = best["gaps"]["lns-pre"]
    stop = (_check_where(ex, answer, d, t) or _check_lrs(ex, answer, s, best)
            or _check_verdict(ex, answer, gap))
    if stop:
        return stop
    verdict = "a tie" if gap["winner"] is None else gap["winner"] + " ahead"
    return correct(ex, f"depth {d}, {t / 1e6:g}M characters, the kit's recipe, Pre-LN at lr "
                       f"{_fmt_lr(best['best_lr']['pre'])} vs LNS at "
                       f"{_fmt_lr(best['best_lr']['lns'])}: {verdict} over {gap['n']} paired seeds")


# ------------------------------------------------------------------------------------- exercise 7.1


def stored_finals(
    depth: int, recipe: str, lr: float = 3e-3, tokens: int = 32_000_000
) -> tuple[dict, dict]:
    """``({seed: final loss} of Pre-LN, of LNS)`` at one cell of the stored recipe map (from the raw
    runs)."""
    s = _summary()
    out = {"pre": {}, "lns": {}}
    for r in s["runs"]:
        same_cell = (r["depth"], r["tokens"], r["recipe"]) == (
            depth,
            tokens,
            recipe,
        ) and math.isclose(r["lr"], lr)
        if same_cell and r["norm"] in out:
            out[r["norm"]][r["seed"]] = r["final"]
    return out["pre"], out["lns"]


def _cases() -> list[tuple[str, dict, dict]]:
    """The stored paper-recipe cells at depth 12 (a win) and 24 (a tie), and a synthetic case where
    the arms spread widely but every seed moves the same way (paired and unpaired disagree), its
    seeds listed in another order."""
    cases = [
        ("paper recipe, depth 12", *stored_finals(12, "paper")),
        ("paper recipe, depth 24", *stored_finals(24, "paper")),
    ]
    pre = {0: 1.10, 1: 1.32, 2: 1.05, 3: 1.21}
    lns = {3: 1.185, 1: 1.296, 0: 1.072, 2: 1.027}  # the same 4 seeds, another order
    cases.append(("4 seeds listed in another order", pre, lns))
    return cases


def _reference(pre: dict, lns: dict) -> dict:
    g = paired("pre", "lns", pre, lns)
    return {"mean": g.mean, "sd": g.sd, "n": g.n, "p": g.p, "winner": g.winner}


def _t_p(mean: float, sd: float, n: int) -> float:
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(mean / (sd / math.sqrt(n))), df=n - 1)) if sd > 0 else 0.0


def _mistakes(pre: dict, lns: dict) -> dict[str, dict]:
    """What each classic mistake computes on this case (mean, sd, p)."""
    from scipy.stats import ttest_ind

    seeds = sorted(set(pre) & set(lns))
    a, b = np.array([pre[s] for s in seeds]), np.array([lns[s] for s in seeds])
    d = b - a
    n = len(d)
    pos = np.array(list(lns.values())[:n]) - np.array(
        list(pre.values())[:n]
    )  # zipped in listed order
    unpaired_sd = float(np.sqrt(a.var(ddof=1) + b.var(ddof=1)))
    return {
        "population": {"sd": float(d.std(ddof=0)), "p": _t_p(d.mean(), d.std(ddof=0), n)},
        "position": {"sd": float(pos.std(ddof=1)), "p": _t_p(pos.mean(), pos.std(ddof=1), n)},
        "unpaired": {
            "sd": unpaired_sd,
            "p": float(ttest_ind(b, a).pvalue),
            "p_welch": float(ttest_ind(b, a, equal_var=False).pvalue),
            "sd_pooled": float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)),
        },
    }


def _near(x, y, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    try:
        return math.isclose(float(x), float(y), rel_tol=rel, abs_tol=abs_)
    except (TypeError, ValueError):
        return False


def _diagnose_gap(
    ex: str, label: str, out: Mapping, ref: dict, pre: dict, lns: dict
) -> Verdict | None:
    m = _mistakes(pre, lns)
    if not _near(out["mean"], ref["mean"]):
        if _near(out["mean"], -ref["mean"]):
            return wrong(
                ex,
                f"wrong sign convention ({label}): you computed Pre-LN − LNS",
                "the gap is LNS − Pre-LN per seed: negative means LNS reached the lower loss",
            )
        return wrong(
            ex, f"the mean gap is off ({label})", "average the per-seed differences lns[s] − pre[s]"
        )
    if not _near(out["sd"], ref["sd"]):
        if _near(out["sd"], m["population"]["sd"]):
            return wrong(
                ex,
                f"population sd ({label}): you divided by n",
                "the sample sd divides by n − 1 (np.std(d, ddof=1), statistics.stdev)",
            )
        if _near(out["sd"], m["position"]["sd"]) and not _near(m["position"]["sd"], ref["sd"]):
            return wrong(
                ex,
                f"paired by position, not by seed ({label})",
                "the two dicts list their seeds in different orders: pair lns[s] with pre[s] for "
                "each seed s",
            )
        if any(_near(out["sd"], m["unpaired"][k]) for k in ("sd", "sd_pooled")):
            return wrong(
                ex,
                f"unpaired ({label}): that sd is the two arms' spread, not the per-seed "
                "differences'",
                "take d[s] = lns[s] − pre[s] for each seed and the sd of d: the spread both arms "
                "share cancels",
            )
        return wrong(
            ex, f"the sd is off ({label})", "sample sd of the per-seed differences (ddof=1)"
        )
    if out["n"] != ref["n"]:
        return wrong(ex, f"n = {out['n']} ({label})", "n is the number of seeds both arms share")
    if not _near(out["p"], ref["p"], rel=1e-2):
        if any(_near(out["p"], m["unpaired"][k], rel=1e-2) for k in ("p", "p_welch")):
            return wrong(
                ex,
                f"unpaired test ({label}): a two-sample t-test ignores the pairing",
                "use the paired t-test: t = mean / (sd / sqrt(n)), n − 1 degrees of freedom "
                "(scipy.stats.ttest_rel)",
            )
        if _near(out["p"], ref["p"] / 2, rel=1e-2):
            return wrong(
                ex,
                f"one-sided p ({label})",
                "the verdict uses the two-sided p: 2 * t.sf(|t|, n − 1)",
            )
        return wrong(
            ex, f"the p-value is off ({label})", "two-sided paired t-test: 2 * t.sf(|t|, df=n − 1)"
        )
    win = _winner(out["winner"])
    if win != ref["winner"]:
        if ref["winner"] is None:
            return wrong(
                ex,
                f"reading a tie as a win ({label}): p = {ref['p']:.2f} ≥ {ALPHA:g}",
                "'ahead' needs p < 0.05: otherwise the winner is None, whatever the mean's sign",
            )
        return wrong(
            ex,
            f"the winner is {ref['winner']} ({label})",
            "p < 0.05: the side with the lower mean loss wins (negative gap: LNS)",
        )
    return None


def check_paired_gap(paired_gap) -> Verdict:
    """Exercise 7.1: ``paired_gap(loss_pre, loss_lns)`` (``{seed: final loss}`` each) returns
    ``{"mean", "sd", "n", "p", "winner"}`` of LNS − Pre-LN paired by seed, the verdict at the
    paired t-test's 0.05."""
    ex = "7.1"
    for label, pre, lns in _cases():
        out, stop = attempt(ex, paired_gap, dict(pre), dict(lns))
        if stop:
            return stop
        if not isinstance(out, Mapping) or not {"mean", "sd", "n", "p", "winner"} <= set(out):
            return wrong(
                ex,
                "the answer is not a dict with mean, sd, n, p and winner",
                "return {'mean': ..., 'sd': ..., 'n': ..., 'p': ..., 'winner': 'lns' | 'pre' | "
                "None}",
            )
        stop = _diagnose_gap(ex, label, out, _reference(pre, lns), pre, lns)
        if stop:
            return stop
    return correct(
        ex,
        "mean ± sd of the per-seed differences, n, the paired t-test's p and the verdict, on two "
        "stored cells and a case whose seeds are listed in another order",
    )


__all__ = ["QUESTION", "check_paired_gap", "check_read_point", "stored_finals"]
