"""Notebook 07's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import numpy as np
import pytest
from scipy import stats as st

from curse_of_depth.workshop.exercises import nb07


def reading(**change):
    """The solution of exercise 7.2, with ``change`` applied (a mistake)."""
    answer = {"depth": 48, "tokens": 32_000_000, "recipe": "kit", "lr": {"pre": 3e-3, "lns": 1e-2}, "winner": "tie",
              "n_seeds": 3}
    return lambda: {**answer, **change}


def test_read_point_correct_blank_and_error():
    v = nb07.check_read_point(reading())
    assert v.ok and "a tie over 3 paired seeds" in str(v), str(v)
    assert nb07.check_read_point(reading(winner=None)).ok
    assert nb07.check_read_point(reading(winner="no clear difference", recipe="Kit")).ok

    def blank():
        ...
    assert nb07.check_read_point(blank).status == "not attempted"
    v = nb07.check_read_point(lambda: {}["depth"])
    assert v.status == "error" and "KeyError" in str(v)


@pytest.mark.parametrize("change,words", [
    (dict(recipe="paper"), "wrong recipe"),
    (dict(recipe="paper+clip"), "wrong recipe"),
    (dict(lr=3e-3), "shared-lr vs best-vs-best"),
    (dict(lr={"pre": 1e-2, "lns": 1e-2}), "the verdict is lns"),
    (dict(lr={"pre": 3e-3, "lns": 3e-3}), "the verdict is pre"),
    (dict(lr={"pre": 1e-2, "lns": 3e-3}), "not the best learning rates"),
    (dict(winner="pre"), "reading a tie as a win"),
    (dict(winner="LNS"), "reading a tie as a win"),
    (dict(n_seeds=2), "not the number of paired seeds"),
    (dict(tokens=8_000_000), "another budget"),
    (dict(tokens=32), "tokens in millions"),
    (dict(depth=24), "not the point asked about"),
])
def test_each_reading_mistake_gets_its_own_message(change, words):
    v = nb07.check_read_point(reading(**change))
    assert v.status == "wrong" and words in str(v), str(v)


def test_read_point_wants_a_dict_with_every_key():
    assert "not a dict" in str(nb07.check_read_point(lambda: (24, "kit")))
    assert "lacks winner" in str(nb07.check_read_point(lambda: {k: 1 for k in nb07.KEYS if k != "winner"}))


def _t(d):
    return 2 * st.t.sf(abs(d.mean() / (d.std(ddof=1) / np.sqrt(d.size))), d.size - 1)


def gap(pre, lns, ddof=1, sign=1, by="seed", winner_rule="p"):
    """The solution of exercise 7.1 and, through its options, its classic mistakes."""
    seeds = sorted(set(pre) & set(lns))
    if by == "seed":
        d = np.array([lns[s] - pre[s] for s in seeds]) * sign
    else:  # zipped in the order the dicts list their seeds
        d = (np.array(list(lns.values())) - np.array(list(pre.values()))) * sign
    sd = d.std(ddof=ddof)
    p = 2 * st.t.sf(abs(d.mean() / (sd / np.sqrt(d.size))), d.size - 1)
    side = "lns" if d.mean() * sign < 0 else "pre"
    return {"mean": d.mean(), "sd": sd, "n": d.size, "p": p,
            "winner": side if (p < 0.05 or winner_rule == "mean") else None}


def unpaired(pre, lns):
    a, b = np.array(list(pre.values())), np.array(list(lns.values()))
    return {"mean": b.mean() - a.mean(), "sd": np.sqrt(a.var(ddof=1) + b.var(ddof=1)), "n": a.size,
            "p": st.ttest_ind(b, a).pvalue, "winner": None}


def unpaired_test_only(pre, lns):
    out = gap(pre, lns)
    seeds = sorted(pre)
    out["p"] = st.ttest_ind([lns[s] for s in seeds], [pre[s] for s in seeds]).pvalue
    return out


def one_sided(pre, lns):
    out = gap(pre, lns)
    out["p"] /= 2
    return out


def test_paired_gap_correct_blank_and_error():
    assert nb07.check_paired_gap(gap).ok

    def with_scipy(pre, lns):
        seeds = sorted(pre)
        d = np.array([lns[s] - pre[s] for s in seeds])
        p = st.ttest_rel([lns[s] for s in seeds], [pre[s] for s in seeds]).pvalue
        return {"mean": d.mean(), "sd": d.std(ddof=1), "n": len(d), "p": p,
                "winner": ("lns" if d.mean() < 0 else "pre") if p < 0.05 else None}
    assert nb07.check_paired_gap(with_scipy).ok

    def blank(loss_pre, loss_lns):
        ...
    assert nb07.check_paired_gap(blank).status == "not attempted"
    v = nb07.check_paired_gap(lambda pre, lns: pre[99])
    assert v.status == "error" and "KeyError" in str(v)


@pytest.mark.parametrize("fn,words", [
    (lambda pre, lns: gap(pre, lns, sign=-1), "wrong sign convention"),
    (lambda pre, lns: gap(pre, lns, ddof=0), "population sd"),
    (unpaired, "unpaired"),
    (unpaired_test_only, "unpaired test"),
    (lambda pre, lns: gap(pre, lns, by="position"), "paired by position, not by seed"),
    (lambda pre, lns: gap(pre, lns, winner_rule="mean"), "reading a tie as a win"),
    (one_sided, "one-sided p"),
    (lambda pre, lns: {**gap(pre, lns), "n": 2 * gap(pre, lns)["n"]}, "n = "),
    (lambda pre, lns: [1, 2], "not a dict"),
])
def test_each_paired_gap_mistake_gets_its_own_message(fn, words):
    v = nb07.check_paired_gap(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_stored_cases_are_what_the_exercise_says():
    pre, lns = nb07.stored_finals(12, "paper")
    assert sorted(pre) == sorted(lns) == [0, 1, 2]
    assert gap(pre, lns)["winner"] == "lns"  # the stored depth-12 cell is a win, the depth-24 one a tie
    assert gap(*nb07.stored_finals(24, "paper"))["winner"] is None


def test_verdicts_are_one_line():
    for v in (nb07.check_read_point(reading(recipe="paper")), nb07.check_paired_gap(unpaired)):
        assert "\n" not in repr(v) and repr(v) == str(v) and str(v).startswith("✗ Exercise 7.")
