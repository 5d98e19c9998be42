"""Notebook 06's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name.

Exercise 6.1 is measured here with a stand-in for the model (the loss of a drop = the full loss plus the stored
single-layer costs): the classic mistakes are caught before anything is measured, and the verdict's arithmetic
against the stored angular-distance run is what is tested.
"""

import pytest
import torch

from curse_of_depth.workshop.exercises import nb06

STATS = nb06.layer_stats()


def additive(drop):
    return nb06._angular_losses()[0] + sum(STATS["cost"][i] for i in drop)


def by(key, lo=1, hi=29):
    return lambda s: sorted(range(lo, hi), key=lambda i: s[key][i])


def blank(*args):
    ...


def test_stats_are_the_stored_scan():
    assert STATS["n_layers"] == 30 and all(len(STATS[k]) == 30 for k in nb06.STATS)


def test_drop_order_correct_blank_and_error():
    v = nb06.check_drop_order(by("cost"), loss_of=additive)
    assert v.ok and "beats angular distance by" in str(v) and "\n" not in str(v)
    assert nb06.check_drop_order(blank, loss_of=additive).status == "not attempted"
    v = nb06.check_drop_order(lambda s: s["nope"], loss_of=additive)
    assert v.status == "error" and "KeyError" in str(v)


def test_a_valid_order_that_loses_says_so():
    costly_middle = lambda s: [2, 3, 8, 11, 9, 10, 7, 6, 5, 4]  # noqa: E731
    v = nb06.check_drop_order(costly_middle, loss_of=additive)
    assert v.status == "wrong" and "does not beat angular distance" in str(v)


def test_without_the_model_it_asks_for_it():
    assert "needs the model" in str(nb06.check_drop_order(by("cost")))


@pytest.mark.parametrize("fn,words", [
    (lambda s: [i + 1 for i in by("cost")(s)], "1-based"),
    (lambda s: [i + 1 for i in sorted(range(30), key=lambda i: s["cost"][i])], "1-based"),
    (lambda s: sorted(range(30), key=lambda i: -s["cost"][i]), "descending"),
    (lambda s: sorted(range(30), key=lambda i: -s["angular"][i]), "descending"),
    (lambda s: list(range(29, -1, -1)), "the last layer"),
    (lambda s: [0] + by("cost")(s), "the first layer"),
    (lambda s: by("cost")(s)[:4], "the checker drops up to 8"),
    (lambda s: [14, 14, 12, 17, 13, 5, 4, 25], "appear twice"),
    (lambda s: [14, 12, 17, 13, 5, 4, 25, -1], "must lie in 0..29"),
    (lambda s: "14, 12", "not a list of layer numbers"),
])
def test_each_drop_mistake_gets_its_own_message(fn, words):
    v = nb06.check_drop_order(fn, loss_of=additive)
    assert v.status == "wrong" and words in str(v), str(v)


def prune_ok(w, s):
    k = round(s * w.numel())
    thr = w.abs().flatten().kthvalue(k).values
    return w * (w.abs() > thr)


def test_magnitude_prune_correct_blank_and_error():
    assert nb06.check_magnitude_prune(prune_ok).ok
    assert nb06.check_magnitude_prune(blank).status == "not attempted"
    assert nb06.check_magnitude_prune(lambda w, s: w.nope()).status == "error"


def per_row(w, s):
    k = round(s * w.shape[1])
    thr = w.abs().kthvalue(k, dim=1, keepdim=True).values
    return w * (w.abs() > thr)


@pytest.mark.parametrize("fn,words", [
    (lambda w, s: w * (w.abs() < w.abs().flatten().kthvalue(w.numel() - round(s * w.numel()) + 1).values),
     "pruned the largest"),
    (lambda w, s: w * (w.abs() <= w.abs().flatten().kthvalue(round(s * w.numel())).values), "kept only the smallest"),
    (lambda w, s: prune_ok(w, 1 - s), "sparsity inverted"),
    (per_row, "each row separately"),
    (lambda w, s: per_row(w.T, s).T, "each column separately"),
    (lambda w, s: w * (w > w.flatten().kthvalue(round(s * w.numel())).values), "most negative"),
    (lambda w, s: (w.abs() > w.abs().flatten().kthvalue(round(s * w.numel())).values), "the mask"),
    (lambda w, s: w.clone(), "nothing was zeroed"),
    (lambda w, s: torch.zeros(3), "tensor of W's shape"),
])
def test_each_prune_mistake_gets_its_own_message(fn, words):
    v = nb06.check_magnitude_prune(fn)
    assert v.status == "wrong" and words in str(v), str(v)
