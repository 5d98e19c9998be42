"""Notebook 01's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import math

import pytest
import torch
import torch.nn.functional as F

from curse_of_depth.workshop.exercises import nb01


def rms_ok(h):
    return h[:, 1:].pow(2).mean(dim=-1).sqrt().median()


def blank(*args):
    ...


def broken(*args):
    raise KeyError("oops")


def test_median_token_rms_correct_blank_and_error():
    assert nb01.check_median_token_rms(rms_ok).ok
    assert nb01.check_median_token_rms(lambda h: float(rms_ok(h))).ok  # a float is fine too
    assert nb01.check_median_token_rms(blank).status == "not attempted"
    v = nb01.check_median_token_rms(broken)
    assert v.status == "error" and "KeyError" in str(v)


@pytest.mark.parametrize("fn,words", [
    (lambda h: h[:, 1:].pow(2).mean().sqrt(), "pooled RMS (one mean"),
    (lambda h: h.pow(2).mean().sqrt(), "pooled RMS, with position 0"),
    (lambda h: h.pow(2).mean(-1).sqrt().median(), "position 0 is included"),
    (lambda h: h.pow(2).mean(-1).sqrt().flatten().quantile(0.5), "position 0 is included"),
    (lambda h: h[:, 1:].pow(2).mean(-1).sqrt().mean(), "the mean token, not the median"),
    (lambda h: h[:, 1:].std(-1).median(), "standard deviation, not its RMS"),
    (lambda h: h[:, 1:].pow(2).mean(-1).median(), "the root is missing"),
    (lambda h: h[:, 1:].norm(dim=-1).median(), "L2 norm"),
    (lambda h: h[:, 1:].pow(2).mean(-1).sqrt(), "finish with .median()"),
])
def test_each_rms_mistake_gets_its_own_message(fn, words):
    v = nb01.check_median_token_rms(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def ang_ok(a, b):
    return F.cosine_similarity(a[:, 1:], b[:, 1:], dim=-1).clamp(-1, 1).arccos().mean() / math.pi


def cos(a, b):
    return F.cosine_similarity(a, b, dim=-1)


def test_angular_distance_correct_blank_and_error():
    assert nb01.check_angular_distance(ang_ok).ok
    assert "analysis.angular_distance_matrix" in str(nb01.check_angular_distance(ang_ok))
    assert nb01.check_angular_distance(blank).status == "not attempted"
    assert nb01.check_angular_distance(broken).status == "error"


@pytest.mark.parametrize("fn,words", [
    (lambda a, b: cos(a, b)[:, 1:].arccos().mean(), "radians"),
    (lambda a, b: torch.rad2deg(cos(a, b)[:, 1:].arccos()).mean(), "degrees"),
    (lambda a, b: cos(a, b)[:, 1:].mean(), "cosine similarity, not a distance"),
    (lambda a, b: 1 - cos(a, b)[:, 1:].mean(), "Block Influence"),
    (lambda a, b: cos(a, b).arccos().mean() / math.pi, "position 0 is included"),
    (lambda a, b: cos(a, b)[:, -1].arccos().mean() / math.pi, "only the last token"),
    (lambda a, b: cos(a, b)[:, 1:].mean().arccos() / math.pi, "arccos of the mean cosine"),
    (lambda a, b: 1 - ang_ok(a, b), "1 − distance"),
    (lambda a, b: cos(a, b)[:, 1:].arccos() / math.pi, "average them"),
])
def test_each_angular_mistake_gets_its_own_message(fn, words):
    v = nb01.check_angular_distance(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_the_reference_is_the_kit():
    from curse_of_depth import analysis

    a, b = nb01._pair()
    assert math.isclose(float(ang_ok(a, b)), float(analysis.angular_distance_matrix(torch.stack([a, b]))[0, 1]),
                        rel_tol=1e-5)
    h = nb01._hidden()
    q = analysis.residual_rms_quantiles(h.unsqueeze(0), quantiles=(0.5,))
    assert math.isclose(float(rms_ok(h)), q["values"][0][0], rel_tol=1e-5)
