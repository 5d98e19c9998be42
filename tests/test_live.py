"""Band comparison, paired gaps and the claim conditions of notebooks 03 and 04: each can go either way."""

import math
import re

import numpy as np
import pytest
import torch

from curse_of_depth.live import (
    Band,
    Snapshots,
    attention_logit_std,
    band_from_runs,
    band_position,
    band_statement,
    bands_from_data,
    count_cheap_blocks,
    deep_half_share,
    gap_statement,
    grows_more,
    paired_gap,
    val_curve,
    variance_growth,
)
from curse_of_depth.model import ModelConfig, build_model

STEPS = [10, 20, 30]


def run(losses, seed, steps=STEPS):
    return {"val_steps": list(steps), "val_loss": list(losses), "seed": seed, "diverged": False}


def band(norm, finals, start=3.3):
    # curves that fall from `start` to each seed's final value
    return band_from_runs(norm, [run([start, (start + f) / 2, f], s) for s, f in enumerate(finals)])


def test_val_curve_accepts_both_layouts_and_rejects_others():
    s1, l1 = val_curve({"val_steps": [1, 2], "val_loss": [3.0, 2.0]})
    s2, l2 = val_curve({"val": [[1, 3.0], [2, 2.0]]})
    assert np.array_equal(s1, s2) and np.array_equal(l1, l2)
    with pytest.raises(ValueError, match="no validation curve"):
        val_curve({"train_loss": [1.0]})
    with pytest.raises(ValueError, match="equal-length"):
        val_curve({"val_steps": [1, 2], "val_loss": [3.0]})


def test_band_statistics_and_seed_lookup():
    b = band("pre", [2.0, 2.2, 2.4])
    assert b.n == 3 and b.seeds == [0, 1, 2]
    assert np.allclose(b.final, [2.0, 2.2, 2.4])
    assert b.lo[-1] == pytest.approx(2.0) and b.hi[-1] == pytest.approx(2.4)
    assert b.mean[-1] == pytest.approx(2.2) and b.sd[-1] == pytest.approx(0.2)
    assert np.allclose(b.seed_curve(1), [3.3, 2.75, 2.2])
    with pytest.raises(ValueError, match="seed 7"):
        b.seed_curve(7)


def test_band_refuses_mismatched_schedules_and_empty_runs():
    with pytest.raises(ValueError, match="other steps"):
        band_from_runs("pre", [run([3, 2, 1], 0), run([3, 2, 1], 1, steps=[10, 20, 40])])
    with pytest.raises(ValueError, match="at least one seed"):
        band_from_runs("pre", [])
    with pytest.raises(ValueError, match="'runs'"):
        bands_from_data({"pre": []})


def test_bands_from_data_reads_every_norm():
    data = {"runs": {"pre": [run([3, 2.5, 2], 0)], "lns": [run([3, 2.4, 1.9], 0)], "post": []}}
    bands = bands_from_data(data)
    assert sorted(bands) == ["lns", "pre"]


def test_paired_gap_sign_threshold_and_counts_flip_with_the_data():
    pre, lns = band("pre", [2.9, 3.0, 3.1, 2.95, 3.05]), band("lns", [2.68, 2.69, 2.70, 2.67, 2.71])
    gap = paired_gap(pre, lns)
    assert gap.mean < 0 and gap.b_better == 5 and gap.winner == "lns" and gap.in_seed_sd > 2
    assert "LNS reaches a lower validation loss than Pre-LN" in gap_statement("d64 L24", gap)
    assert "5/5 paired seeds favour LNS" in gap_statement("d64 L24", gap)

    # swap the roles: Pre-LN ahead
    gap = paired_gap(band("pre", [1.82, 1.83, 1.84]), band("lns", [1.94, 1.95, 1.93]))
    assert gap.winner == "pre" and gap.b_better == 0
    assert "Pre-LN reaches a lower validation loss than LNS" in gap_statement("x", gap)

    # overlapping seeds: a tie, even though LNS is ahead on average
    gap = paired_gap(band("pre", [2.0, 2.3, 2.6]), band("lns", [1.95, 2.28, 2.5]))
    assert gap.winner is None and gap.mean < 0
    assert "tie within 2 seed-sd (LNS ahead on average; 3/3" in gap_statement("x", gap)


def test_gap_statement_has_no_float():
    gap = paired_gap(band("pre", [2.9, 3.0, 3.1]), band("lns", [2.6, 2.7, 2.65]))
    text = gap_statement("d64 L24, 80-step schedule", gap)
    assert re.search(r"\d\.\d", text) is None


def test_paired_gap_needs_common_seeds():
    a = band_from_runs("pre", [run([3, 2, 1], 0)])
    b = band_from_runs("lns", [run([3, 2, 1], 5)])
    with pytest.raises(ValueError, match="share no seed"):
        paired_gap(a, b)


def test_band_position_inside_above_below():
    b = band("pre", [2.0, 2.2, 2.4])
    inside = band_position(STEPS, [3.3, 2.7, 2.1], b, seed=0)
    assert inside.inside_final and inside.side == "inside" and inside.fraction_inside == 1.0
    assert np.allclose(inside.matched, b.seed_curve(0))
    above = band_position(STEPS, [3.3, 2.7, 2.5], b)
    assert above.side == "above" and not above.inside_final
    below = band_position(STEPS, [3.3, 2.7, 1.9], b)
    assert below.side == "below"
    assert band_position(STEPS, [3.3, 2.7, 1.9], b, tolerance=0.2).side == "inside"
    assert band_statement(inside, 5) == "live Pre-LN run ends inside the precomputed 5-seed band of its configuration"
    assert "above (worse than)" in band_statement(above, 5)


def test_band_position_uses_the_band_steps_and_rejects_missing_ones():
    b = band("lns", [2.0, 2.2, 2.4])
    # a live run evaluated more often still compares at the band's steps
    pos = band_position([0, 10, 15, 20, 30], [3.4, 3.3, 3.0, 2.7, 2.1], b)
    assert pos.live.tolist() == [3.3, 2.7, 2.1]
    with pytest.raises(ValueError, match="no evaluation at steps"):
        band_position([10, 20], [3.3, 2.7], b)
    with pytest.raises(ValueError, match="tolerance"):
        band_position(STEPS, [3.3, 2.7, 2.1], b, tolerance=-1)


def test_variance_growth_and_grows_more_flip():
    linear, flat = [1.0, 2.0, 3.0, 4.0], [1.0, 1.2, 1.3, 1.4]
    assert variance_growth(linear) == pytest.approx(4.0)
    assert grows_more(linear, flat) and not grows_more(flat, linear)
    with pytest.raises(ValueError, match="at least two"):
        variance_growth([1.0])
    with pytest.raises(ValueError, match="finite"):
        variance_growth([1.0, math.nan])


def test_cheap_blocks_and_deep_half_share():
    lazy_deep = [2.0, 0.2, 0.1, 0.001, 0.0005]
    busy_deep = [2.0, 0.01, 0.02, 0.1, 0.2]
    assert count_cheap_blocks(lazy_deep) == 2 and count_cheap_blocks(busy_deep) == 0
    assert deep_half_share(lazy_deep) < 0.1 < 0.5 < deep_half_share(busy_deep)
    with pytest.raises(ValueError):
        deep_half_share([1.0, 0.0, 0.0])


def test_attention_logits_shrink_as_one_over_l_under_lns():
    idx = torch.randint(0, 37, (2, 16), generator=torch.Generator().manual_seed(0))
    cfg = dict(vocab_size=37, d_model=32, n_layers=6, n_heads=4, seq_len=16)
    pre = attention_logit_std(build_model(ModelConfig(**cfg, norm="pre"), seed=0), idx)
    lns_model = build_model(ModelConfig(**cfg, norm="lns"), seed=0)
    lns = attention_logit_std(lns_model, idx)
    assert len(pre) == len(lns) == 6
    assert lns[0] == pytest.approx(pre[0], rel=1e-5)  # block 1: 1/sqrt(1) = 1, same weights, same input
    # every later block: the RMS-normalised input is the same up to the norm, so the logits scale exactly by 1/l
    for layer in range(2, 7):
        block = lns_model.blocks[layer - 1]
        block.scale = 1.0
        unscaled = attention_logit_std(lns_model, idx)[layer - 1]
        block.scale = 1 / math.sqrt(layer)
        assert lns[layer - 1] == pytest.approx(unscaled / layer, rel=1e-4)


def test_snapshots_record_only_requested_steps_and_restore_mode():
    model = build_model(ModelConfig(vocab_size=37, d_model=32, n_layers=2, n_heads=4, seq_len=16), seed=0)
    model.train()
    calls = []

    def measure(m):
        calls.append(m.training)
        m.eval()
        return [1.0, 2.0]

    snaps = Snapshots(measure, at_steps=[0, 5, 10])
    snaps.record(0, model)
    for step in range(1, 12):
        snaps(step, model, None)
    assert sorted(snaps.as_dict()) == [0, 5, 10] and len(calls) == 3
    assert model.training  # restored after measure() switched it to eval
    with pytest.raises(ValueError):
        Snapshots(measure, at_steps=[-1])


def test_band_dataclass_single_seed_sd_is_zero():
    b = Band("pre", np.array([1.0, 2.0]), np.array([[3.0, 2.0]]), [0])
    assert np.all(b.sd == 0)
