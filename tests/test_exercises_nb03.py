"""Notebook 03's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import dataclasses

import numpy as np
import pytest

from curse_of_depth.workshop.exercises import nb03


def shallower(model_cfg, train_cfg):
    return dataclasses.replace(model_cfg, n_layers=model_cfg.n_layers // 2), train_cfg


def test_experiment_correct_blank_and_error():
    v = nb03.check_experiment(shallower, "lower")
    assert v.ok and "n_layers 24 → 12" in str(v), str(v)
    assert nb03.check_experiment(lambda m, t: (m, dataclasses.replace(t, lr=1e-2)), "higher").ok

    def blank(model_cfg, train_cfg):
        ...
    assert nb03.check_experiment(blank).status == "not attempted"
    v = nb03.check_experiment(lambda m, t: m.nope, "lower")
    assert v.status == "error" and "AttributeError" in str(v)


def _in_place(m, t):
    t.lr = 1e-2
    return m, t


@pytest.mark.parametrize("fn,prediction,words", [
    (lambda m, t: (m, t), "lower", "nothing changed"),
    (lambda m, t: (dataclasses.replace(m, n_layers=12), dataclasses.replace(t, lr=1e-2)), "lower",
     "2 things changed at once (n_layers, lr)"),
    (lambda m, t: (dataclasses.replace(m, n_layers=12), dataclasses.replace(t, seed=1)), "lower", "breaks the pairing"),
    (lambda m, t: (dataclasses.replace(m, n_layers=12), dataclasses.replace(t, seed=0)), "lower", "breaks the pairing"),
    (lambda m, t: (m, dataclasses.replace(t, lr=0.1)), "higher", "above the stable range"),
    (lambda m, t: (m, dataclasses.replace(t, lr=1e-4)), "higher", "too small to leave the unigram plateau"),
    (lambda m, t: (m, dataclasses.replace(t, seq_len=256)), "higher", "longer than the model's context"),
    (lambda m, t: (dataclasses.replace(m, d_model=128), t), "higher", "you changed d_model"),
    (lambda m, t: (dataclasses.replace(m, n_layers=96), t), "higher", "pick at most 48 blocks"),
    (_in_place, "higher", "in place"),
    (lambda m, t: dataclasses.replace(m, n_layers=12), "lower", "return the pair"),
    (shallower, None, "no prediction yet"),
    (shallower, "better", "no prediction yet"),
])
def test_each_experiment_mistake_gets_its_own_message(fn, prediction, words):
    v = nb03.check_experiment(fn, prediction)
    assert v.status == "wrong" and words in str(v), str(v)


def test_same_is_a_prediction_judged_by_one_seed_sd():
    assert nb03.check_experiment(shallower, "same").ok
    line = nb03.experiment_outcome(2.90, 2.88, "same", seed_sd=0.035)
    assert ": same; you predicted same (right)" in line and "within one seed-sd" in line, line
    line = nb03.experiment_outcome(2.70, 2.88, "same", seed_sd=0.035)
    assert ": lower; you predicted same (not this time)" in line and "more than one seed-sd" in line, line
    assert ": higher;" in nb03.experiment_outcome(3.00, 2.88, "higher", seed_sd=0.035)
    assert ": lower;" in nb03.experiment_outcome(2.87, 2.88, "lower", seed_sd=None)


def test_train_experiment_waits_for_a_fair_design(capsys):
    nb03.train_experiment(lambda m, t: (m, t), "lower", None, None)
    assert "nothing trained yet" in capsys.readouterr().out


def by_hand(pre, lns, ddof=1, sign=1, pair="seed", t_kind="paired"):
    seeds = sorted(pre)
    if pair == "seed":
        d = np.array([lns[s] - pre[s] for s in seeds]) * sign
    else:
        d = (np.array(list(lns.values())) - np.array(list(pre.values()))) * sign
    sd = d.std(ddof=ddof)
    if pair == "unpaired":
        a, b = np.array(list(pre.values())), np.array(list(lns.values()))
        sd = np.sqrt(a.var(ddof=1) + b.var(ddof=1))
    t = {"paired": d.mean() / (sd / np.sqrt(len(d))), "no_sqrt": d.mean() / sd}[t_kind]
    return d.mean(), sd, t


def test_paired_gap_correct_blank_and_error():
    v = nb03.check_paired_gap(by_hand)
    assert v.ok and "+0.119 ± 0.030" in str(v), str(v)

    def blank(pre, lns):
        ...
    assert nb03.check_paired_gap(blank).status == "not attempted"
    v = nb03.check_paired_gap(lambda pre, lns: pre[9])
    assert v.status == "error" and "KeyError" in str(v)


@pytest.mark.parametrize("kw,words", [
    ({"ddof": 0}, "population sd"),
    ({"sign": -1}, "sign convention"),
    ({"pair": "position"}, "paired the runs by position"),
    ({"pair": "unpaired"}, "unpaired spread"),
    ({"t_kind": "no_sqrt"}, "t without √n"),
])
def test_each_paired_gap_mistake_gets_its_own_message(kw, words):
    v = nb03.check_paired_gap(lambda pre, lns: by_hand(pre, lns, **kw))
    assert v.status == "wrong" and words in str(v), str(v)


def test_the_paired_gap_agrees_with_stats():
    from curse_of_depth import stats

    pre, lns = nb03._CASES[0]
    gap = stats.paired("pre", "lns", pre, lns)
    ref, _ = nb03._gap_mistakes(pre, lns)
    assert np.allclose(ref, (gap.mean, gap.sd, gap.t))


def test_the_learning_rate_range_rests_on_the_stored_runs():
    """Exercise 3.1's bounds (nb03.LR_RANGE) quote the results pack's live_variants: at lr 3e-4 the live run is still
    above the unigram plateau at step 80 and at lr 0.1 it ends near it, while 1e-3 and 3e-2 leave it."""
    from curse_of_depth.workshop import plots, results

    runs = {(r["norm"], r["field"], r["value"]): r for r in results.load("live_variants")["data"]["runs"]}
    lo, hi = nb03.LR_RANGE
    assert runs["pre", "lr", 3e-4]["final_val"] > plots.UNIGRAM_NATS
    assert runs["pre", "lr", lo]["final_val"] < plots.UNIGRAM_NATS - 0.2
    assert runs["pre", "lr", hi]["final_val"] < plots.UNIGRAM_NATS - 0.2
    assert abs(runs["pre", "lr", 0.1]["final_val"] - plots.UNIGRAM_NATS) < 0.2
    assert runs["pre", "n_layers", 12]["final_val"] < 2.8  # the solution's prediction: lower than 24 blocks (2.88)
