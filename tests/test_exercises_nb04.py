"""Notebook 04's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import math

import pytest
import torch

from curse_of_depth import analysis
from curse_of_depth.workshop.exercises import nb04


def removable(model, x, y, first=2, index="block", pick=min, cost="nats", targets="same"):
    base = analysis.loss(model, x, y if targets == "same" else None)
    n = model.cfg.n_layers
    costs = {i: analysis.loss(model, x, y, drop=[i]) - base for i in range(first - 1, n)}
    i = pick(costs, key=costs.get)
    c = {"nats": costs[i], "sign": -costs[i], "ratio": math.exp(costs[i])}[cost]
    return (i + 1 if index == "block" else i), c


def test_most_removable_correct_blank_and_error():
    v = nb04.check_most_removable(removable)
    assert v.ok and "block 4" in str(v), str(v)

    def blank(model, x, y):
        ...
    assert nb04.check_most_removable(blank).status == "not attempted"
    v = nb04.check_most_removable(lambda model, x, y: analysis.loss(model, x, y, drop=[99]))
    assert v.status == "error" and "ValueError" in str(v)


@pytest.mark.parametrize("kw,words", [
    ({"first": 1}, "block 1 counted"),
    ({"index": "python"}, "0-based index"),
    ({"pick": max}, "largest cost"),
    ({"cost": "sign"}, "sign"),
    ({"cost": "ratio"}, "perplexity ratio"),
    ({"targets": "none"}, "different tokens"),
])
def test_each_removable_mistake_gets_its_own_message(kw, words):
    v = nb04.check_most_removable(lambda model, x, y: removable(model, x, y, **kw))
    assert v.status == "wrong" and words in str(v), str(v)


def rel(hs, how="right"):
    h = hs.double()
    d, a, b = h[1:] - h[:-1], h[:-1], h[1:]
    return {
        "right": (d.norm(dim=-1) / a.norm(dim=-1)).mean(dim=(1, 2)),
        "ratio_of_means": d.norm(dim=-1).mean(dim=(1, 2)) / a.norm(dim=-1).mean(dim=(1, 2)),
        "frobenius": d.flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1),
        "output": (d.norm(dim=-1) / b.norm(dim=-1)).mean(dim=(1, 2)),
        "squared": (d.norm(dim=-1) ** 2 / a.norm(dim=-1) ** 2).mean(dim=(1, 2)),
        "positions": (d.norm(dim=-2) / a.norm(dim=-2)).mean(dim=(1, 2)),
        "skip_first": (d[:, :, 1:].norm(dim=-1) / a[:, :, 1:].norm(dim=-1)).mean(dim=(1, 2)),
        "per_token": d.norm(dim=-1) / a.norm(dim=-1),
    }[how]


def test_relative_update_correct_blank_and_error():
    v = nb04.check_relative_update(rel)
    assert v.ok, str(v)
    assert nb04.check_relative_update(lambda hs: rel(hs).tolist()).ok

    def blank(hs):
        ...
    assert nb04.check_relative_update(blank).status == "not attempted"
    assert nb04.check_relative_update(lambda hs: hs.nope()).status == "error"


@pytest.mark.parametrize("how,words", [
    ("ratio_of_means", "ratio of means"),
    ("frobenius", "one norm over all tokens"),
    ("output", "block's output"),
    ("squared", "squared norms"),
    ("positions", "over the positions"),
    ("skip_first", "position 0 left out"),
    ("per_token", "shape"),
])
def test_each_relative_update_mistake_gets_its_own_message(how, words):
    v = nb04.check_relative_update(lambda hs: rel(hs, how))
    assert v.status == "wrong" and words in str(v), str(v)


def test_the_planted_case_separates_the_answers():
    _, _, _, _, costs = nb04._case()
    rest = costs[1:]
    assert costs[0] == pytest.approx(0, abs=1e-6) and min(rest) == costs[nb04._TRUE_BLOCK - 1]
    assert sorted(rest)[1] > 10 * min(rest) and torch.isfinite(torch.tensor(costs)).all()
